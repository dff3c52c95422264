"""Where alerts go (A4): a signed webhook, e-mail over SMTP, the log. Configured by the
operator (config `[[alerts.sinks]]`, monitoring.settings).

Each sink sends at most `alerts.rate_per_hour` alerts per hour (a sliding hour, per process):
past it, alerts to that sink are dropped and counted (sealflow_alert_sends{outcome=
"rate_limited"}), so an attack cannot turn the alerting into a mail bomb. A sink that fails
is logged and counted; the others still get the alert."""

from __future__ import annotations

import asyncio
import json
import logging
import smtplib
import ssl
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from email.message import EmailMessage
from typing import Any

import httpx

from sealflow.audit.records import format_time
from sealflow.clock import Clock
from sealflow.connectors.ssrf import build_client, build_ssl_context
from sealflow.monitoring.metrics import metrics
from sealflow.monitoring.settings import AlertSink, EmailAlertSink, WebhookAlertSink
from sealflow.siem.transport import DeliveryFailed, post_signed

log = logging.getLogger("sealflow.alerts")
HOUR_S = 3600.0


@dataclass(frozen=True)
class Alert:
    rule: str
    key: str  # what it is about: a region, a target id, a pseudonym; never clear PII
    region: str | None
    summary: str
    at: datetime
    details: dict[str, Any] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return {"type": "sealflow.alert", "rule": self.rule, "key": self.key,
                "region": self.region, "summary": self.summary, "at": format_time(self.at),
                "details": self.details}


class RateLimit:
    """At most `per_hour` sends per sliding hour (monotonic clock)."""

    def __init__(self, per_hour: int) -> None:
        self.per_hour = per_hour
        self._sent: deque[float] = deque()

    def take(self, now: float) -> bool:
        while self._sent and now - self._sent[0] >= HOUR_S:
            self._sent.popleft()
        if len(self._sent) >= self.per_hour:
            return False
        self._sent.append(now)
        return True


def _send_mail(sink: EmailAlertSink, context: ssl.SSLContext, message: EmailMessage) -> None:
    with smtplib.SMTP(sink.host, sink.port, timeout=sink.timeout_s) as smtp:
        smtp.ehlo()
        if sink.starttls:
            smtp.starttls(context=context)
            smtp.ehlo()
        if sink.username:
            smtp.login(sink.username, sink.password.get_secret_value())
        smtp.send_message(message)


class Dispatcher:
    def __init__(self, sinks: Sequence[AlertSink], *, clock: Clock, rate_per_hour: int,
                 ssrf_allow: Sequence[str] = (), ca_bundle: str | None = None) -> None:
        self.sinks = tuple(sinks)
        self.clock = clock
        self._limits = {i: RateLimit(rate_per_hour) for i in range(len(self.sinks))}
        self._allow = tuple(ssrf_allow)
        self._ca = ca_bundle
        self._client: httpx.AsyncClient | None = None
        self._context: ssl.SSLContext | None = None

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def send(self, alert: Alert) -> dict[str, str]:
        """Send to every sink; returns each sink's outcome (sent, failed, rate_limited)."""
        outcomes: dict[str, str] = {}
        for i, sink in enumerate(self.sinks):
            if not self._limits[i].take(self.clock.monotonic()):
                outcome = "rate_limited"
            else:
                try:
                    await self._send_one(sink, alert)
                    outcome = "sent"
                except (DeliveryFailed, OSError, smtplib.SMTPException) as exc:
                    log.warning("alert %s not delivered to sink %s (%s): %s", alert.rule,
                                sink.name, sink.kind, getattr(exc, "code", type(exc).__name__))
                    outcome = "failed"
            metrics().alert_sends.labels(sink.kind, outcome).inc()
            outcomes[sink.name] = outcome
        return outcomes

    async def _send_one(self, sink: AlertSink, alert: Alert) -> None:
        body = alert.as_json()
        if isinstance(sink, WebhookAlertSink):
            if self._client is None:
                self._client = build_client(allow=self._allow, ca_bundle=self._ca,
                                            timeout=sink.timeout_s)
            await post_signed(self._client, sink.url, sink.secret.get_secret_value().encode(),
                              json.dumps(body, sort_keys=True).encode(),
                              timestamp=int(self.clock.now().timestamp()),
                              timeout_s=sink.timeout_s, content_type="application/json")
        elif isinstance(sink, EmailAlertSink):
            if self._context is None:
                self._context = build_ssl_context(self._ca)
            message = EmailMessage()
            message["Subject"] = f"[sealflow alert] {alert.rule}: {alert.summary}"[:200]
            message["From"] = sink.sender
            message["To"] = ", ".join(sink.recipients)
            message.set_content(json.dumps(body, indent=2, sort_keys=True))
            await asyncio.to_thread(_send_mail, sink, self._context, message)
        else:
            log.warning("ALERT %s", json.dumps(body, sort_keys=True))
