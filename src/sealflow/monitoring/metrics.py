"""The process's Prometheus metrics (A3), in one registry of sealflow's own (not the
library's global one, so nothing else registers into what /metrics shows).

Built on first use (`metrics()`), never at import: the engine, the vault, the login service
and the audit trail call `metrics().<family>...` where the thing happens. Labels are bounded
sets only: an execution status, a connector name (the installed connectors), a region, a
failure kind. Never an account id (unbounded, and it tells who uses what) or anything a
customer typed.

Gauges that describe the database (queue depth, purge backlog) are not kept in memory: they
are read when /metrics is scraped (monitoring.collect), so every node reports the truth."""

from __future__ import annotations

import functools

from prometheus_client import CollectorRegistry, Counter, Histogram

# Steps run from sub-millisecond transforms to 15-minute HTTP calls.
STEP_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
                60.0, 300.0, 900.0)
# An audit append is two statements inside an open transaction: tens of microseconds.
APPEND_BUCKETS = (0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1)


class Metrics:
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry(auto_describe=True)
        self.executions = Counter(
            "sealflow_executions", "Executions that ended, by final status", ["status"],
            registry=r)
        self.step_seconds = Histogram(
            "sealflow_step_duration_seconds",
            "Wall time of a finished step (all its attempts), by connector", ["connector"],
            buckets=STEP_BUCKETS, registry=r)
        self.decryption_failures = Counter(
            "sealflow_decryption_failures",
            "Values or keysets the vault could not decrypt (altered, moved, retired key)",
            ["what"], registry=r)
        self.login_failures = Counter(
            "sealflow_login_failures", "Refused logins, by the factor that failed", ["factor"],
            registry=r)
        self.audit_append_seconds = Histogram(
            "sealflow_audit_append_duration_seconds",
            "Time to append one audit record inside its transaction",
            buckets=APPEND_BUCKETS, registry=r)
        self.siem_records = Counter(
            "sealflow_siem_records_delivered", "Audit records delivered to customers' SIEM "
            "sinks, by sink kind", ["kind"], registry=r)
        self.siem_failures = Counter(
            "sealflow_siem_delivery_failures", "Failed SIEM delivery attempts, by sink kind",
            ["kind"], registry=r)
        self.alerts = Counter(
            "sealflow_alerts_fired", "Alerts fired (after deduplication), by rule", ["rule"],
            registry=r)
        self.alert_sends = Counter(
            "sealflow_alert_sends", "Alert deliveries by sink kind and outcome "
            "(sent, failed, rate_limited)", ["sink", "outcome"], registry=r)

    def decryption_failed(self, what: str) -> None:
        self.decryption_failures.labels(what).inc()

    def decryption_failure_total(self) -> float:
        """Every decryption failure counted by this process so far (the alert's delta)."""
        return sum(s.value for family in self.decryption_failures.collect()
                   for s in family.samples if s.name.endswith("_total"))


@functools.cache
def metrics() -> Metrics:
    """The process's metrics, built on first use."""
    return Metrics()
