"""Monitoring (A3): Prometheus metrics, health and readiness."""
