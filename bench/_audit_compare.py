"""bench/webhook.py --compare-audit: what the audit trail costs on the webhook path.

The audited action there is the decryption of a stored authentication: every step naming one
gets an `authentication.decrypted` record, in its own write transaction, before the secret
reaches the connector (services/credentials.py). So the workflow here starts with an `http`
step using an `api_key` authentication (made through the API before the load) that calls a
tiny local API (bench/_auth_target.py, on the client's core; it answers 401 unless the key
came injected), then the usual transform -> branch -> respond. Its two variants:

- `audited`: sealflow as it is, one audit record per execution;
- `unaudited`: the same CLI through bench/_unaudited_server.py, AuditTrail.record a no-op.
  The write transaction around the record still opens and commits (it also carries
  last_used_at, once a minute): what differs is the record itself (head read, hashing,
  insert, a signed checkpoint every 1,000 records).

After each run the bench checks in us.db that the `authentication.decrypted` records equal
the http step's attempts and the calls the local API accepted (audited), or that there are
none (unaudited). With --no-auth the default workflow runs instead (no record per execution:
the two variants should not differ).
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import secrets
import sqlite3
import ssl
import sys
import time
from pathlib import Path
from typing import Any

from webhook import (
    BENCH_DIR,
    HOST,
    STEPS_PER_EXECUTION,
    WORKFLOW,
    Bench,
    Comparison,
    Load,
    Setup,
    _verdict,
    compare,
    free_port,
    report_compare,
    request,
)

# executions/s with the audit trail at most this much lower than without (issue 7).
TARGET_AUDIT_COST = 0.10
AUTH_STEP = "lookup"
KEY_HEADER = "X-Api-Key"


# ------------------------------------------------------------------------------ the local API
def start_target(bench: Bench, key: str) -> int:
    """Starts bench/_auth_target.py on a free port; it inherits the bench's (client's) core."""
    port = free_port()
    log = bench.tmp / "auth-target.log"
    cmd = [sys.executable, str(BENCH_DIR / "_auth_target.py"), "--port", str(port),
           "--header", KEY_HEADER]
    proc = bench.procs.start(cmd, log=log, env={**bench.env, "BENCH_TARGET_KEY": key},
                             cpu=None)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the local API exited ({proc.returncode}):\n{log.read_text()}")
        with contextlib.suppress(OSError):
            target_stats(port)
            return port
        time.sleep(0.1)
    raise SystemExit(f"the local API did not start:\n{log.read_text()}")


def target_stats(port: int) -> dict[str, int]:
    conn = http.client.HTTPConnection(HOST, port, timeout=10)
    try:
        conn.request("GET", "/stats")
        return dict(json.loads(conn.getresponse().read()))
    finally:
        conn.close()


def auth_setup(target_port: int, key: str) -> Setup:
    def setup(port: int, ca: ssl.SSLContext, token: str) -> tuple[dict[str, Any], int]:
        status, auth = request(port, ca, "POST", "/v1/authentications", {
            "name": "bench api key", "type": "api_key", "shared": True,
            "settings": {"in": "header", "param": KEY_HEADER}, "secret": {"key": key},
        }, token=token)
        if status != 201:
            raise SystemExit(f"cannot create the authentication: {status} {auth}")
        lookup = {"name": AUTH_STEP, "connector": "http", "auth": auth["id"],
                  "input": {"method": "GET", "url": f"http://{HOST}:{target_port}/rate"}}
        return {**WORKFLOW, "name": "bench: webhook http(api key)-transform-branch-respond",
                "steps": [lookup, *WORKFLOW["steps"]]}, STEPS_PER_EXECUTION + 1
    return setup


# ------------------------------------------------------------------------------ the checks
def audit_counts(db: Path) -> dict[str, int]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    try:
        decrypted = conn.execute(
            "SELECT count(*) FROM audit_records "
            "WHERE json_extract(record, '$.action') = 'authentication.decrypted'").fetchone()[0]
        records = conn.execute("SELECT count(*) FROM audit_records").fetchone()[0]
        checkpoints = conn.execute("SELECT count(*) FROM audit_checkpoints").fetchone()[0]
        runs, attempts = conn.execute(
            "SELECT count(*), coalesce(sum(attempts), 0) FROM step_runs WHERE step_name = ?",
            (AUTH_STEP,)).fetchone()
        executions = conn.execute("SELECT count(*) FROM executions").fetchone()[0]
    finally:
        conn.close()
    return {"decrypted": decrypted, "records": records, "checkpoints": checkpoints,
            "auth_step_runs": runs, "auth_attempts": attempts, "executions": executions}


def audit_check(variant: str, check: dict[str, Any]) -> tuple[bool, str]:
    """Whole database (the set-up request and the warm-up included)."""
    a = check["audit"]
    called, refused = a["target_ok"], a["target_refused"]
    if variant == "audited":
        ok = a["decrypted"] == a["auth_attempts"] == called and refused == 0
        want = "expected = http step attempts = calls the API accepted"
    else:
        ok = a["decrypted"] == 0 and a["auth_attempts"] == called and refused == 0
        want = "expected 0"
    return ok, (f"{a['decrypted']} authentication.decrypted records ({want}: "
                f"{a['auth_attempts']} attempts in {a['auth_step_runs']} step runs of "
                f"{a['executions']} executions, API calls {called} accepted, {refused} refused "
                f"over {a['target_connections']} connections; "
                f"{a['records']} audit records, {a['checkpoints']} checkpoints) "
                f"-> {_verdict(ok)}")


AUDIT = Comparison(
    "auditing", "audited", "unaudited",
    "audited: sealflow as it is; unaudited: the same server with AuditTrail.record a no-op "
    "(bench/_unaudited_server.py)", TARGET_AUDIT_COST, audit_check)


# ------------------------------------------------------------------------------ the mode
def main(bench: Bench, args: argparse.Namespace, client: str) -> bool:
    key = f"bench-{secrets.token_hex(16)}"  # generated for this run, never printed
    target = start_target(bench, key)
    bench.env["SEALFLOW_SSRF_ALLOW"] = f"{HOST}/32"  # the http step's calls to the local API
    setup = None if args.no_auth else auth_setup(target, key)
    if args.no_auth:
        print("--no-auth: the default workflow, no authentication (expect no difference)",
              file=sys.stderr)

    def run(variant: str, data_name: str) -> tuple[list[Load], dict[str, Any]]:
        before = target_stats(target)
        loads, check = bench.sealflow(variant, data_name, setup)
        after = target_stats(target)
        check["audit"] = {**audit_counts(check["db"]),
                          "target_ok": after["ok"] - before["ok"],
                          "target_refused": after["refused"] - before["refused"],
                          # less the one that read `before`
                          "target_connections": after["connections"] - before["connections"] - 1}
        return loads, check

    return report_compare(compare(run, AUDIT, args.rounds), client, AUDIT)
