"""Settings (config.py): defaults, SEALFLOW_* environment, the config file, precedence,
frozen values, and errors that name the setting at fault."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from pydantic import ValidationError

from sealflow.config import REGIONS, Settings, load_settings


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No SEALFLOW_* from the outer environment; the working directory is a fresh one (the
    default data directory, .sealflow, is relative to it)."""
    for name in list(os.environ):
        if name.startswith("SEALFLOW_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


def assert_names(error: ValidationError, field: str) -> None:
    locs = [".".join(str(p) for p in e["loc"]) for e in error.errors()]
    assert any(loc == field or loc.startswith(field + ".") for loc in locs), error
    assert field in str(error)


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_defaults(tmp_path: Path) -> None:
    s = load_settings()
    assert s.data_dir == Path(".sealflow")
    assert (s.host, s.port, s.default_region) == ("127.0.0.1", 8443, "us")
    assert REGIONS == ("us", "eu", "apac")
    assert list(s.regions) == ["us", "eu", "apac"]
    assert s.ssrf_allow == ()
    assert s.tls_profile == "intermediate"
    assert s.base_url() == "https://127.0.0.1:8443"
    # W5 defaults
    assert s.limits.webhook_payload_bytes == 1_000_000
    assert s.limits.webhook_multipart_bytes == 10_000_000
    assert s.limits.connector_timeout_s == 45
    assert s.limits.http_timeout_max_s == 900
    assert s.limits.webhook_reply_timeout_s == 300
    assert (s.limits.api_rate_per_s, s.limits.api_burst) == (30, 50)
    assert s.worker.platform_retries == 15
    assert s.core_limits().max_loop_iterations == s.limits.max_loop_iterations


def test_one_sqlite_file_per_region_under_the_data_dir(tmp_path: Path) -> None:
    s = load_settings({"data_dir": tmp_path / "data"})
    urls = {r: s.database_url(r) for r in s.regions}
    assert urls == {r: f"sqlite:///{(tmp_path / 'data' / f'{r}.db').resolve()}" for r in REGIONS}
    assert len(set(urls.values())) == 3
    assert s.tls().dev_dir == tmp_path / "data" / "tls"


def test_environment_variables(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SEALFLOW_DATA_DIR", str(tmp_path / "env-data"))
    monkeypatch.setenv("SEALFLOW_PORT", "9443")
    monkeypatch.setenv("SEALFLOW_HOST", "0.0.0.0")
    monkeypatch.setenv("SEALFLOW_TLS_PROFILE", "modern")
    monkeypatch.setenv("SEALFLOW_LIMITS__MAX_LOOP_ITERATIONS", "200")
    monkeypatch.setenv("SEALFLOW_WORKER__CONCURRENCY", "4")
    monkeypatch.setenv("SEALFLOW_PUBLIC_URL", "https://flows.example.test/")
    s = load_settings()
    assert s.data_dir == tmp_path / "env-data"
    assert (s.port, s.host, s.tls_profile) == (9443, "0.0.0.0", "modern")
    assert s.limits.max_loop_iterations == 200
    assert s.limits.api_burst == 50  # the other limits keep their defaults
    assert s.worker.concurrency == 4
    assert s.core_limits().max_loop_iterations == 200
    assert s.base_url() == "https://flows.example.test"


def test_ssrf_allow_is_comma_separated_in_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SEALFLOW_SSRF_ALLOW", "127.0.0.1/32, 10.1.2.0/24,,")
    assert load_settings().ssrf_allow == ("127.0.0.1/32", "10.1.2.0/24")
    monkeypatch.setenv("SEALFLOW_SSRF_ALLOW", "")
    assert load_settings().ssrf_allow == ()


def test_toml_file_in_the_data_dir(tmp_path: Path) -> None:
    data = tmp_path / "data"
    write(data / "sealflow.toml", """
port = 9001
ssrf_allow = ["127.0.0.1/32"]
[limits]
max_loop_iterations = 7
api_burst = 9
[worker]
lease_s = 12.5
""")
    s = load_settings({"data_dir": data})
    assert s.port == 9001
    assert s.ssrf_allow == ("127.0.0.1/32",)
    assert (s.limits.max_loop_iterations, s.limits.api_burst) == (7, 9)
    assert s.limits.api_rate_per_s == 30
    assert s.worker.lease_s == 12.5


def test_data_dir_from_the_environment_locates_the_file(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    write(tmp_path / "d" / "sealflow.toml", "port = 9002\n")
    monkeypatch.setenv("SEALFLOW_DATA_DIR", str(tmp_path / "d"))
    assert load_settings().port == 9002


def test_sealflow_config_names_the_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    data = tmp_path / "data"
    write(data / "sealflow.toml", "port = 9001\n")
    elsewhere = write(tmp_path / "etc" / "production.toml", "port = 9003\nhost = '::1'\n")
    monkeypatch.setenv("SEALFLOW_CONFIG", str(elsewhere))
    s = load_settings({"data_dir": data})
    assert (s.port, s.host) == (9003, "::1")  # SEALFLOW_CONFIG wins; the data-dir file is unused

    yaml_file = write(tmp_path / "etc" / "sealflow.yaml", "port: 9004\nlimits: {api_burst: 3}\n")
    monkeypatch.setenv("SEALFLOW_CONFIG", str(yaml_file))
    s = load_settings({"data_dir": data})
    assert (s.port, s.limits.api_burst) == (9004, 3)


def test_a_missing_sealflow_config_file_is_an_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("SEALFLOW_CONFIG", str(tmp_path / "nope.toml"))
    with pytest.raises(FileNotFoundError, match=r"nope\.toml"):
        load_settings()


def test_precedence_overrides_then_env_then_file_then_defaults(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    write(data / "sealflow.toml", """
port = 9001
host = "127.0.0.2"
log_level = "debug"
[limits]
max_loop_iterations = 7
api_burst = 9
""")
    monkeypatch.setenv("SEALFLOW_PORT", "9100")
    monkeypatch.setenv("SEALFLOW_HOST", "127.0.0.3")
    monkeypatch.setenv("SEALFLOW_LIMITS__MAX_LOOP_ITERATIONS", "5")
    s = load_settings({"data_dir": data, "port": 9999, "host": None})
    assert s.port == 9999  # override > env > file
    assert s.host == "127.0.0.3"  # env > file (a None override is no override)
    assert s.log_level == "debug"  # file > default
    assert s.limits.max_loop_iterations == 5  # env > file, for one nested field ...
    assert s.limits.api_burst == 9  # ... while the file's other [limits] stay
    assert s.limits.api_rate_per_s == 30  # default
    assert s.tls_profile == "intermediate"  # default


def test_settings_are_frozen() -> None:
    s = load_settings()
    with pytest.raises(ValidationError, match="frozen"):
        s.port = 1  # type: ignore[misc]
    with pytest.raises(ValidationError, match="frozen"):
        s.limits.api_burst = 1  # type: ignore[misc]
    with pytest.raises(ValidationError, match="frozen"):
        s.regions["us"].database_url = "sqlite://"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("env", "field"),
    [
        ({"SEALFLOW_PORT": "70000"}, "port"),
        ({"SEALFLOW_PORT": "https"}, "port"),
        ({"SEALFLOW_LIMITS__MAX_LOOP_ITERATIONS": "0"}, "limits.max_loop_iterations"),
        ({"SEALFLOW_LIMITS__API_RATE_PER_S": "fast"}, "limits.api_rate_per_s"),
        ({"SEALFLOW_WORKER__CONCURRENCY": "1000"}, "worker.concurrency"),
        ({"SEALFLOW_TLS_PROFILE": "old"}, "tls_profile"),
        ({"SEALFLOW_DEFAULT_REGION": "mars"}, "default_region"),
        ({"SEALFLOW_REGIONS": '{"mars": {}}'}, "regions.mars"),
    ],
)
def test_invalid_environment_values_name_the_field(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], field: str
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError) as err:
        load_settings()
    assert_names(err.value, field)


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ("port = 0\n", "port"),
        ("prot = 8443\n", "prot"),  # a misspelt setting is refused, not ignored
        ("[limits]\nmax_loops = 3\n", "limits.max_loops"),
        ("[limits]\nwebhook_payload_bytes = -1\n", "limits.webhook_payload_bytes"),
        ("[regions.us]\ndatabase = 'x'\n", "regions.us.database"),
    ],
)
def test_invalid_file_values_name_the_field(tmp_path: Path, text: str, field: str) -> None:
    write(tmp_path / "data" / "sealflow.toml", text)
    with pytest.raises(ValidationError) as err:
        load_settings({"data_dir": tmp_path / "data"})
    assert_names(err.value, field)


def test_a_config_file_that_is_not_a_mapping_is_refused(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("SEALFLOW_CONFIG", str(write(tmp_path / "c.yaml", "- port\n")))
    with pytest.raises(ValueError, match="mapping"):
        load_settings()


def test_per_region_database_url(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    data = tmp_path / "data"
    write(data / "sealflow.toml", """
[regions.us]
[regions.eu]
database_url = "postgresql://sealflow@db-eu.internal/sealflow"
""")
    s = load_settings({"data_dir": data})
    # Listing regions chooses the ones this deployment serves (apac is not listed).
    assert list(s.regions) == ["us", "eu"]
    assert s.database_url("eu") == "postgresql://sealflow@db-eu.internal/sealflow"
    assert s.database_url("us") == f"sqlite:///{(data / 'us.db').resolve()}"

    # The environment overrides one region's URL and keeps the file's list of regions.
    monkeypatch.setenv("SEALFLOW_REGIONS__US__DATABASE_URL", "postgresql://sealflow@db-us/sf")
    s = load_settings({"data_dir": data})
    assert list(s.regions) == ["us", "eu"]
    assert s.database_url("us") == "postgresql://sealflow@db-us/sf"
    assert s.database_url("eu") == "postgresql://sealflow@db-eu.internal/sealflow"


def test_settings_built_directly_read_the_environment_too(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("SEALFLOW_PORT", "9500")
    assert Settings(data_dir=tmp_path).port == 9500
    assert Settings(data_dir=tmp_path, port=9600).port == 9600
