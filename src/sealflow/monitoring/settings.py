"""Operator settings of monitoring (A3), alerts (A4) and SIEM delivery: part of config.Settings
(`[metrics]`, `[alerts]`, `[siem]` in the config file; `SEALFLOW_ALERTS__...` in the env)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class MetricsSettings(_Frozen):
    """`/metrics` answers only a request carrying `Authorization: Bearer <token>`; with no
    token configured it answers 404 (off), so it is never public by default."""

    token: SecretStr = SecretStr("")


class WebhookAlertSink(_Frozen):
    """POST of the alert as JSON, signed like SIEM webhooks (X-Sealflow-Signature:
    t=<unix time>,v1=<hex HMAC-SHA256 of "<t>.<body>">)."""

    kind: Literal["webhook"]
    name: str = Field("webhook", min_length=1, max_length=64)
    url: str = Field(pattern=r"^https?://")
    secret: SecretStr = Field(description="HMAC-SHA256 key, 16 characters or more")
    timeout_s: float = Field(10.0, gt=0)

    @field_validator("secret")
    @classmethod
    def _long_enough(cls, v: SecretStr) -> SecretStr:
        if len(v.get_secret_value()) < 16:
            raise ValueError("the alert webhook's secret must be 16 characters or more")
        return v


class EmailAlertSink(_Frozen):
    """Mail through an SMTP relay (STARTTLS verified against the public roots and
    outbound_ca_bundle when `starttls`)."""

    kind: Literal["email"]
    name: str = Field("email", min_length=1, max_length=64)
    host: str
    port: int = Field(587, ge=1, le=65535)
    starttls: bool = True
    username: str = ""
    password: SecretStr = SecretStr("")
    sender: str = Field(min_length=3)
    recipients: tuple[str, ...] = Field(min_length=1)
    timeout_s: float = Field(10.0, gt=0)

    @model_validator(mode="after")
    def _no_password_in_clear(self) -> EmailAlertSink:
        # A login without STARTTLS would send the relay's password in clear (T1).
        if self.username and not self.starttls:
            raise ValueError("an e-mail alert sink with a username needs starttls = true "
                             "(the password would cross the network in clear)")
        return self


class LogAlertSink(_Frozen):
    """A WARNING line on the `sealflow.alerts` logger (JSON, through the redaction processor)."""

    kind: Literal["log"]
    name: str = Field("log", min_length=1, max_length=64)


AlertSink = Annotated[WebhookAlertSink | EmailAlertSink | LogAlertSink,
                      Field(discriminator="kind")]


class AlertRules(_Frozen):
    """Thresholds (A4). A rule fires once per (rule, key) per `AlertSettings.dedup_window_s`."""

    brute_force_failures: int = Field(10, ge=1)  # login.failed records for one target or IP
    brute_force_window_s: float = Field(900.0, gt=0)
    staff_access: bool = True  # every staff.access_granted / staff.access_used
    decryption_failures: int = Field(5, ge=1)  # new failures since the last evaluation
    audit_chain: bool = True  # incremental chain check of new records; full verify below
    audit_full_verify_every_s: float = Field(86_400.0, gt=0)
    purge_backlog: int = Field(10_000, ge=1)  # executions past their retention
    failure_rate: float = Field(0.5, gt=0, le=1)  # failed / finished executions in the window
    failure_rate_min_executions: int = Field(20, ge=1)
    failure_rate_window_s: float = Field(900.0, gt=0)


class AlertSettings(_Frozen):
    enabled: bool = True
    interval_s: float = Field(60.0, gt=0)  # how often the rules are evaluated
    dedup_window_s: float = Field(3600.0, gt=0)
    rate_per_hour: int = Field(20, ge=1)  # alerts per sink per hour (per process)
    sinks: tuple[AlertSink, ...] = (LogAlertSink(kind="log"),)
    rules: AlertRules = AlertRules()


class SiemSettings(_Frozen):
    """Delivery of customers' audit sinks (siem/). Batches of `batch_size` records; a failed
    batch is retried after retry_min_s, doubling up to retry_max_s."""

    enabled: bool = True
    interval_s: float = Field(2.0, gt=0)
    batch_size: int = Field(200, ge=1, le=5000)
    timeout_s: float = Field(10.0, gt=0)
    retry_min_s: float = Field(1.0, gt=0)
    retry_max_s: float = Field(300.0, gt=0)
    max_sinks_per_account: int = Field(5, ge=1)
