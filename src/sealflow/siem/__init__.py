"""SIEM streaming of a customer's audit trail (A1): syslog over TLS and signed webhooks."""
