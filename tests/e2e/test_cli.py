"""The `sealflow` CLI, run for real (`python -m sealflow.cli --data-dir … …` in a subprocess)
against real SQLite files, and a local HTTP server as the third party of `sealflow run`."""

from __future__ import annotations

import json
import os
import sqlite3
import stat
import subprocess
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from sealflow.bootstrap import build_cells
from sealflow.config import Settings
from sealflow.services.accounts import authenticate


class Cli:
    def __init__(self, data_dir: Path, **env: str) -> None:
        self.data_dir = data_dir
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("SEALFLOW_")}
        self.env.update({"SEALFLOW_LOG_LEVEL": "warning", **env})

    def __call__(self, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "sealflow.cli", "--data-dir", str(self.data_dir), *args],
            env={**self.env, **env}, capture_output=True, text=True, timeout=120, check=False,
        )

    def ok(self, *args: str, **env: str) -> str:
        done = self(*args, **env)
        assert done.returncode == 0, done.stderr
        assert "Traceback" not in done.stderr
        return done.stdout

    def json(self, *args: str, **env: str) -> Any:
        return json.loads(self.ok(*args, **env))


def one_error_line(done: subprocess.CompletedProcess[str]) -> str:
    """A user's mistake: a non-zero exit and one clear line on stderr, never a traceback."""
    assert done.returncode != 0, done.stdout
    assert "Traceback" not in done.stderr and "Traceback" not in done.stdout
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("error: "), done.stderr
    return lines[0]


@pytest.fixture(scope="module")
def cli(tmp_path_factory: pytest.TempPathFactory) -> Cli:
    """One data directory for the module, set up by `sealflow init`."""
    c = Cli(tmp_path_factory.mktemp("cli") / "data")
    c.ok("init", "--name", "Acme")
    return c


@pytest.fixture(scope="module")
def account_id(cli: Cli) -> str:
    return str(cli.json("accounts", "create", "--name", "Builders")["id"])


def write(path: Path, content: Any) -> Path:
    if isinstance(content, str):
        path.write_text(content)
    elif path.suffix == ".json":
        path.write_text(json.dumps(content))
    else:
        path.write_text(yaml.safe_dump(content, sort_keys=False))
    return path


ECHO = {
    "name": "Greet",
    "description": "Shapes a greeting",
    "trigger": {"type": "manual"},
    "steps": [{"name": "shape", "connector": "transform",
               "input": {"expression": '{"hello": $.trigger.body.name}'}}],
}


def test_init_creates_the_first_account_and_shows_its_token_once(tmp_path: Path) -> None:
    c = Cli(tmp_path / "data")
    first = c.ok("init", "--name", "First Co")
    assert "Created account" in first and "(First Co) in region us" in first
    tokens = [w for w in first.split() if w.startswith("sf_us_")]
    assert len(tokens) == 1
    assert "dev-ca.pem" in first

    cells = build_cells(Settings(data_dir=tmp_path / "data"))
    try:
        caller = authenticate(cells, tokens[0])  # the printed token is the account's
        assert caller.region == "us"
    finally:
        cells.dispose()
    assert (tmp_path / "data" / "tls" / "dev-ca.pem").is_file()
    operator = tmp_path / "data" / "operator.token"
    assert stat.S_IMODE(operator.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "data").stat().st_mode) == 0o700

    second = c.ok("init", "--name", "Second Co")
    assert "sf_" not in second  # no new account, no token shown again
    assert "1 account(s) exist" in second
    with sqlite3.connect(tmp_path / "data" / "us.db") as db:
        assert db.execute("SELECT name FROM accounts").fetchall() == [("First Co",)]


def test_accounts_create_in_a_region_writes_only_into_that_region(cli: Cli) -> None:
    created = cli.json("accounts", "create", "--name", "Euro GmbH", "--region", "eu")
    assert created["region"] == "eu"
    assert created["token"].startswith("sf_eu_")
    for region, expected in (("eu", 1), ("us", 0), ("apac", 0)):
        with sqlite3.connect(cli.data_dir / f"{region}.db") as db:
            found = db.execute("SELECT count(*) FROM accounts WHERE id = ?",
                               (created["id"],)).fetchone()
        assert found == (expected,), region
    token = cli.ok("accounts", "token", "--account", created["id"]).strip()
    assert token.startswith("sf_eu_") and token != created["token"]

    one_error_line(cli("accounts", "create", "--name", "Mars", "--region", "mars"))


def test_import_yaml_and_json_and_a_new_version(cli: Cli, account_id: str, tmp_path: Path) -> None:
    from_yaml = cli.json("workflows", "import", str(write(tmp_path / "greet.yaml", ECHO)),
                         "--account", account_id)
    assert (from_yaml["name"], from_yaml["version"], from_yaml["region"]) == ("Greet", 1, "us")
    from_json = cli.json("workflows", "import", str(write(tmp_path / "greet.json", ECHO)),
                         "--account", account_id)
    assert from_json["version"] == 1 and from_json["id"] != from_yaml["id"]

    renamed = write(tmp_path / "v2.yaml", dict(ECHO, name="Greet v2"))
    v2 = cli.json("workflows", "import", str(renamed), "--account", account_id,
                  "--id", from_yaml["id"])
    assert (v2["id"], v2["version"], v2["name"]) == (from_yaml["id"], 2, "Greet v2")

    hook = cli.json("workflows", "import",
                    str(write(tmp_path / "hook.yaml", dict(ECHO, trigger={"type": "webhook"}))),
                    "--account", account_id)
    assert hook["webhook_url"].startswith("https://127.0.0.1:8443/hooks/us/")


def test_an_invalid_file_lists_every_issue_with_its_path(
    cli: Cli, account_id: str, tmp_path: Path
) -> None:
    bad = write(tmp_path / "bad.yaml", """
name: ""
trigger: {type: sometimes}
steps:
  - name: Fetch
    connector: nosuch
  - name: check
    connector: transform
    input: {expression: "1"}
    next: nowhere
""")
    done = cli("workflows", "import", str(bad), "--account", account_id)
    assert done.returncode != 0
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert lines[0].startswith("error: invalid workflow")
    paths = {line.strip().split(":")[0] for line in lines[1:]}
    assert paths == {"$.name", "$.trigger.type", "$.steps[0].name", "$.steps[0].connector",
                     "$.steps[1].next"}, done.stderr

    syntax = write(tmp_path / "syntax.json", '{"name": "x",')
    done = cli("workflows", "import", str(syntax), "--account", account_id)
    assert done.returncode != 0 and "Traceback" not in done.stderr
    assert "$: invalid JSON at line 1" in done.stderr

    huge = write(tmp_path / "huge.yaml", yaml.safe_dump(dict(ECHO, steps=[dict(
        ECHO["steps"][0], input={"expression": "1", "x": 2**70})])))
    done = cli("workflows", "import", str(huge), "--account", account_id)
    assert done.returncode != 0 and "Traceback" not in done.stderr
    assert "$.steps[0].input.x" in done.stderr


@pytest.mark.parametrize("fmt", ["json", "yaml"])
def test_export_round_trips(cli: Cli, account_id: str, tmp_path: Path, fmt: str) -> None:
    doc = dict(ECHO, name=f"Round trip {fmt}", trigger={
        "type": "schedule", "cron": "*/5 * * * *", "timezone": "Europe/Paris"})
    saved = cli.json("workflows", "import", str(write(tmp_path / "in.yaml", doc)),
                     "--account", account_id)
    exported = cli.ok("workflows", "export", saved["id"], "--format", fmt)
    parsed = json.loads(exported) if fmt == "json" else yaml.safe_load(exported)
    assert parsed["name"] == f"Round trip {fmt}"
    assert parsed["trigger"] == doc["trigger"]
    assert parsed["steps"][0]["input"] == ECHO["steps"][0]["input"]

    again = cli.json("workflows", "import", str(write(tmp_path / f"out.{fmt}", exported)),
                     "--account", account_id)
    assert again["id"] != saved["id"]
    assert cli.ok("workflows", "export", again["id"], "--format", fmt) == exported
    # Both formats describe the same document; a version can be asked for by number.
    other = "yaml" if fmt == "json" else "json"
    text = cli.ok("workflows", "export", saved["id"], "--format", other, "--version", "1")
    assert (json.loads(text) if other == "json" else yaml.safe_load(text)) == parsed


def test_run_executes_in_process_and_prints_the_execution(
    cli: Cli, account_id: str, target, tmp_path: Path
) -> None:
    target.script("/users/7", (200, {}, {"id": 7, "name": "Ada"}))
    doc = {
        "name": "Fetch and shape",
        "trigger": {"type": "manual"},
        "steps": [
            {"name": "fetch", "connector": "http",
             "input": {"method": "GET", "url": f"{target.url}/users/{{{{ $.trigger.body.id }}}}",
                       "query": {"source": "cli"}}},
            {"name": "shape", "connector": "transform",
             "input": {"expression": '{"greeting": "Hello " & $.steps.fetch.body.name}'}},
        ],
    }
    wf = cli.json("workflows", "import", str(write(tmp_path / "fetch.yaml", doc)),
                  "--account", account_id)
    payload = write(tmp_path / "input.json", {"id": 7})
    detail = cli.json("run", wf["id"], "--input", str(payload),
                      SEALFLOW_SSRF_ALLOW="127.0.0.1/32")
    assert detail["status"] == "succeeded", detail
    assert detail["workflow_id"] == wf["id"] and detail["workflow_version"] == 1
    assert detail["trigger_type"] == "manual"
    assert detail["trigger"]["body"] == {"id": 7}
    assert [s["name"] for s in detail["steps"]] == ["fetch", "shape"]
    fetch, shape = detail["steps"]
    assert fetch["status"] == "succeeded" and fetch["attempts"] == 1
    assert fetch["output"]["status"] == 200 and fetch["output"]["body"]["name"] == "Ada"
    assert shape["output"] == {"greeting": "Hello Ada"}
    assert detail["result"] == {"greeting": "Hello Ada"}
    # Timestamps are ISO 8601, as the API writes them.
    assert "T" in detail["created_at"] and datetime.fromisoformat(detail["finished_at"])
    hits = target.hits("/users/7")
    assert len(hits) == 1 and hits[0].query == {"source": "cli"}

    # YAML input, and without the allow-list the SSRF guard refuses the loopback target:
    # the run fails, is printed all the same, and the exit code says so.
    refused = cli("run", wf["id"], "--input", str(write(tmp_path / "input.yaml", "id: 7\n")))
    assert refused.returncode == 1, refused.stderr
    failed = json.loads(refused.stdout)
    assert failed["status"] == "failed"
    assert failed["steps"][0]["status"] == "failed"
    assert len(target.hits("/users/7")) == 1


def test_migrate_is_repeatable(cli: Cli) -> None:
    for _ in range(2):
        assert cli.ok("migrate").strip() == "migrated regions: us, eu, apac"
    for region in ("us", "eu", "apac"):
        with sqlite3.connect(cli.data_dir / f"{region}.db") as db:
            assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)


def test_check_deploy_names_its_warnings_and_fails_on_them(cli: Cli) -> None:
    plain = cli("check")
    assert plain.returncode == 0, plain.stderr
    assert "sealflow.W001" in plain.stdout  # the development certificate
    deploy = cli("check", "--deploy")
    assert deploy.returncode == 1
    assert "sealflow.W001 [warning]" in deploy.stdout
    assert "sealflow.I001 [info]" in deploy.stdout
    assert "1 warning(s), 1 note(s)" in deploy.stdout
    opened = cli("check", "--deploy", SEALFLOW_SSRF_ALLOW="10.0.0.0/8")
    assert opened.returncode == 1
    assert "sealflow.W006 [warning]" in opened.stdout
    assert "2 warning(s)" in opened.stdout


def test_bad_input_gives_one_clear_line(cli: Cli, account_id: str, tmp_path: Path) -> None:
    missing = str(tmp_path / "missing.yaml")
    assert "missing.yaml" in one_error_line(
        cli("workflows", "import", missing, "--account", account_id))
    wf = cli.json("workflows", "import", str(write(tmp_path / "wf.yaml", ECHO)),
                  "--account", account_id)
    assert "--input" in one_error_line(cli("run", wf["id"], "--input", missing))
    bad_json = write(tmp_path / "bad.json", '{"id": 7,')
    assert "not valid JSON" in one_error_line(cli("run", wf["id"], "--input", str(bad_json)))
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(b"\xff\xfe\x00")
    assert "UTF-8" in one_error_line(cli("run", wf["id"], "--input", str(binary)))
    unknown = "00000000-0000-4000-8000-000000000000"
    assert unknown in one_error_line(cli("run", unknown))
    assert unknown in one_error_line(cli("workflows", "export", unknown))
    assert unknown in one_error_line(
        cli("workflows", "import", str(tmp_path / "wf.yaml"), "--account", unknown))
    assert "--format" in one_error_line(cli("workflows", "export", wf["id"], "--format", "xml"))
    assert "invalid settings" in one_error_line(cli("migrate", SEALFLOW_PORT="https"))
