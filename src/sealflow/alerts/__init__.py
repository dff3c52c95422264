"""Alerts (A4): rules over the audit trail, metrics and executions; sinks; dedup and rate limit."""
