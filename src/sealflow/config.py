"""Typed, frozen settings, read once at start-up and passed in (never read at import time).

Sources, highest priority first: explicit overrides (the CLI's --data-dir/--host/--port),
`SEALFLOW_*` environment variables (nested with `__`, e.g. `SEALFLOW_LIMITS__MAX_LOOP_ITERATIONS`),
an optional TOML/JSON/YAML config file (`SEALFLOW_CONFIG` or `<data_dir>/sealflow.toml`), then
the defaults below.
"""

from __future__ import annotations

import json
import os
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from sealflow.core.limits import Limits
from sealflow.monitoring.settings import AlertSettings, MetricsSettings, SiemSettings
from sealflow.tls import TlsSettings
from sealflow.vault.keystore import default_keystore_url

REGIONS: tuple[str, ...] = ("us", "eu", "apac")
Region = Literal["us", "eu", "apac"]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class RegionSettings(_Frozen):
    # Empty: one SQLite file per region under the data directory.
    database_url: str = ""
    # The region's key store (wrapped account keysets, tombstones), apart from the data.
    # Empty: vault.keystore.default_keystore_url (`<data_dir>/keys/<region>.keys.db`).
    keystore_url: str = ""


class TransitSettings(_Frozen):
    """HashiCorp Vault / OpenBao Transit as the KEK provider. The token is a secret type: it
    prints as '**********' and only bootstrap reads it, to build the provider."""

    address: str = ""
    token: SecretStr = SecretStr("")
    key_name: str = ""  # empty: sealflow-<region>
    mount: str = "transit"
    namespace: str | None = None
    ca_bundle: Path | None = None
    timeout_s: float = Field(10.0, gt=0)


class KeySettings(_Frozen):
    """The vault (S3): where each region's key-encryption key lives. Key material is never
    stored in the cell database: the local key file is `<data_dir>/keys/<region>.kek.json`
    (created 0600 on first run; sealflow refuses to start when others can read it)."""

    provider: Literal["local_file", "transit"] = "local_file"
    transit: TransitSettings = TransitSettings()
    cache_size: int = Field(1024, ge=1)
    cache_ttl_s: float = Field(30.0, gt=0)


class LimitSettings(_Frozen):
    """W5. Field names match core.limits.Limits, so an error naming a limit names a setting."""

    webhook_payload_bytes: int = Field(1_000_000, gt=0)
    webhook_multipart_bytes: int = Field(10_000_000, gt=0)
    connector_timeout_s: float = Field(45.0, gt=0)
    http_timeout_max_s: float = Field(900.0, gt=0)
    webhook_reply_timeout_s: float = Field(300.0, gt=0)
    max_steps_per_workflow: int = Field(200, gt=0)
    max_steps_per_execution: int = Field(10_000, gt=0)
    max_loop_iterations: int = Field(1_000, gt=0)
    max_step_output_bytes: int = Field(1_000_000, gt=0)
    execution_wall_time_s: float = Field(3_600.0, gt=0)
    max_call_depth: int = Field(8, gt=0)
    api_rate_per_s: float = Field(30.0, gt=0)
    api_burst: int = Field(50, gt=0)
    storage_value_bytes: int = Field(400_000, gt=0)
    storage_key_length: int = Field(512, gt=0)

    def to_core(self) -> Limits:
        return Limits(**self.model_dump())


class WorkerSettings(_Frozen):
    concurrency: int = Field(16, ge=1, le=256)
    lease_s: float = Field(30.0, gt=1)
    poll_interval_s: float = Field(1.0, gt=0)
    # Platform faults (W6): growing waits from platform_retry_min_s to platform_retry_max_s.
    platform_retries: int = Field(15, ge=0)
    platform_retry_min_s: float = Field(30.0, gt=0)
    platform_retry_max_s: float = Field(1800.0, gt=0)
    shutdown_grace_s: float = Field(30.0, ge=0)


class SessionSettings(_Frozen):
    """Login sessions (I5): a session ends after `idle_timeout_s` without a request, and
    `absolute_timeout_s` after its login whatever happens."""

    idle_timeout_s: float = Field(1800.0, gt=0)
    absolute_timeout_s: float = Field(43_200.0, gt=0)


class BackupSettings(_Frozen):
    """Encrypted backups (D6, services.backups): one taken by housekeeping when the newest is
    older than `every_hours`; backups older than `keep_days` deleted (at most 14 days, the
    promise). `directory` empty: `<data_dir>/backups` (one folder per region)."""

    directory: Path | None = None
    scheduled: bool = True
    every_hours: float = Field(24.0, gt=0)
    keep_days: float = Field(14.0, gt=0, le=14)
    chunk_bytes: int = Field(1024 * 1024, ge=4096, le=64 * 1024 * 1024)
    pg_dump: str = "pg_dump"  # PostgreSQL cells: the client programs to run
    pg_restore: str = "pg_restore"


class LogFileSettings(_Frozen):
    """Server log files (D3, sealflow.logs): `sealflow serve` and `sealflow worker` write
    every log line (the access log included, redacted as on stderr) to
    `<directory>/sealflow-YYYY-MM-DD.jsonl` (UTC day) when `enabled`; `directory` empty:
    `<data_dir>/logs` (Settings.log_dir()). The purge deletes files older than `keep_days`
    (at most 30, the promise), whether or not writing is enabled."""

    enabled: bool = True
    directory: Path | None = None
    keep_days: int = Field(30, ge=1, le=30)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="SEALFLOW_", env_nested_delimiter="__", frozen=True, extra="forbid"
    )

    data_dir: Path = Path(".sealflow")
    host: str = "127.0.0.1"
    port: int = Field(8443, ge=1, le=65535)
    public_url: str = ""  # base of webhook URLs shown to users; default https://host:port
    default_region: Region = "us"
    regions: dict[Region, RegionSettings] = Field(
        default_factory=lambda: {r: RegionSettings() for r in ("us", "eu", "apac")}
    )
    tls_profile: Literal["intermediate", "modern"] = "intermediate"
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None
    # Operator allow-list for the SSRF guard (T2): CIDRs that connectors may reach anyway.
    ssrf_allow: Annotated[tuple[str, ...], NoDecode] = ()  # comma-separated in the env
    outbound_ca_bundle: Path | None = None
    limits: LimitSettings = LimitSettings()
    worker: WorkerSettings = WorkerSettings()
    keys: KeySettings = KeySettings()
    sessions: SessionSettings = SessionSettings()
    # A3/A4: /metrics (bearer token), alert rules and sinks, SIEM delivery (monitoring/).
    metrics: MetricsSettings = MetricsSettings()
    alerts: AlertSettings = AlertSettings()
    siem: SiemSettings = SiemSettings()
    backups: BackupSettings = BackupSettings()
    # Runs the embedded worker pool and scheduler inside `sealflow serve`.
    embedded_workers: bool = True
    log_level: str = "info"
    log_files: LogFileSettings = LogFileSettings()

    @field_validator("ssrf_allow", mode="before")
    @classmethod
    def _split_allow(cls, v: Any) -> Any:
        if isinstance(v, str):
            return tuple(s.strip() for s in v.split(",") if s.strip())
        return v

    @field_validator("regions")
    @classmethod
    def _known_regions(cls, v: dict[str, RegionSettings]) -> dict[str, RegionSettings]:
        return {r: v.get(r, RegionSettings()) for r in REGIONS if r in v} or {
            r: RegionSettings() for r in REGIONS
        }

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings)

    # Derived values, computed from the fields (nothing stored twice).
    def database_url(self, region: str) -> str:
        configured = self.regions[region].database_url if region in self.regions else ""
        if configured:
            return configured
        return f"sqlite:///{(self.data_dir / f'{region}.db').resolve()}"

    def keystore_url(self, region: str) -> str:
        configured = self.regions[region].keystore_url if region in self.regions else ""
        return configured or default_keystore_url(self.data_dir, region)

    def log_dir(self) -> Path:
        """Where the server log files are (sealflow.logs.log_file_name names them)."""
        return self.log_files.directory or self.data_dir / "logs"

    def access_log_key_file(self) -> Path:
        """The key that pseudonymises client addresses in the access log (api/access_log)."""
        return self.data_dir / "keys" / "access-log.key"

    def backup_dir(self, region: str) -> Path:
        return (self.backups.directory or self.data_dir / "backups") / region

    def backup_key_file(self, region: str) -> Path:
        """The region's backup key: a key of its own (D6), never a data key or the KEK."""
        return self.data_dir / "keys" / f"backup-{region}.key"

    def key_file(self, region: str) -> Path:
        return self.data_dir / "keys" / f"{region}.kek.json"

    def transit_key_name(self, region: str) -> str:
        return self.keys.transit.key_name or f"sealflow-{region}"

    def tls(self) -> TlsSettings:
        return TlsSettings(
            profile=self.tls_profile,
            cert_file=self.tls_cert_file,
            key_file=self.tls_key_file,
            dev_dir=self.data_dir / "tls",
        )

    def base_url(self) -> str:
        return self.public_url.rstrip("/") or f"https://{self.host}:{self.port}"

    def core_limits(self) -> Limits:
        return self.limits.to_core()


def _read_config_file(path: Path) -> dict[str, Any]:
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".toml":
        data: Any = tomllib.loads(text)
    elif path.suffix == ".json":
        data = json.loads(text)
    else:
        data = yaml.safe_load(text)
    if not isinstance(data, dict):
        raise ValueError(f"config file {path} must hold a mapping of settings")
    return data


def load_settings(overrides: dict[str, Any] | None = None) -> Settings:
    """Build the settings once. `overrides` (the CLI flags) win over the environment, which
    wins over the config file."""
    overrides = {k: v for k, v in (overrides or {}).items() if v is not None}
    data_dir = Path(overrides.get("data_dir") or os.environ.get("SEALFLOW_DATA_DIR") or ".sealflow")
    config_path = os.environ.get("SEALFLOW_CONFIG")
    candidate = Path(config_path) if config_path else data_dir / "sealflow.toml"
    file_values: dict[str, Any] = {}
    if candidate.is_file():
        file_values = _read_config_file(candidate)
    elif config_path:
        raise FileNotFoundError(f"SEALFLOW_CONFIG names {candidate}, which does not exist")
    # Init values outrank the environment in pydantic-settings, so the file's values are merged
    # under the environment's here, key by key: SEALFLOW_LIMITS__API_BURST replaces only
    # limits.api_burst of the file, not its whole [limits] table.
    env_values = EnvSettingsSource(Settings)()
    return Settings(**_deep_merge(_deep_merge(file_values, env_values), overrides))


def _deep_merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged
