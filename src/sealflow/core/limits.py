"""Technical limits (SPEC W5). Every one is configurable (config.py builds this from the
settings) and every violation raises LimitExceeded naming the field below."""

from __future__ import annotations

from dataclasses import dataclass

from sealflow.core.errors import LimitExceeded


@dataclass(frozen=True)
class Limits:
    webhook_payload_bytes: int = 1_000_000
    webhook_multipart_bytes: int = 10_000_000
    connector_timeout_s: float = 45.0
    http_timeout_max_s: float = 900.0
    webhook_reply_timeout_s: float = 300.0
    max_steps_per_workflow: int = 200
    max_steps_per_execution: int = 10_000
    max_loop_iterations: int = 1_000
    max_step_output_bytes: int = 1_000_000
    execution_wall_time_s: float = 3_600.0
    max_call_depth: int = 8
    api_rate_per_s: float = 30.0
    api_burst: int = 50
    # Data storage (D1): one stored value (or list element) as JSON, and a key's length.
    storage_value_bytes: int = 400_000
    storage_key_length: int = 512

    def __post_init__(self) -> None:
        for name, value in self.__dict__.items():
            if value <= 0:
                raise ValueError(f"limit {name} must be positive, got {value!r}")
        if self.connector_timeout_s > self.http_timeout_max_s:
            raise ValueError("limit connector_timeout_s must not exceed http_timeout_max_s")

    def check(self, name: str, value: float, what: str) -> None:
        """Raise LimitExceeded when `value` is above the limit `name`."""
        limit = getattr(self, name)
        if value > limit:
            raise LimitExceeded(name, limit, f"{what}: {value} is over the limit")
