"""Purge benchmark (D3; run on demand, never a timed assert in the tests).

A real `sealflow serve` (bench/webhook.py's set-up: fresh data directory, HTTPS, the
transform -> branch -> respond webhook workflow, wrk or the asyncio client, server and client
pinned to one core each). Then:

1. 100,000 executions that finished 40 days ago, each with 3 step runs (sizes like the
   webhook workflow's), are bulk-inserted into the cell's us.db; the file is measured.
2. The webhook load runs in short slices, back to back. The server's own purge
   (housekeeping: a thread per cell, started every minute, at most 40 s per run, pausing 6
   times as long as each batch took) starts at the 60 s mark and works the backlog off over
   a few minutes; the slices go on until it is gone and a few idle slices followed.
3. Each slice is classed by the purge runs' recorded times (purge_runs): inside a run
   ("purging"), outside every run ("idle": before the first, in the idle end of each
   minute, after the last), or straddling (dropped). Interleaved like this, the noise of a
   shared machine hits both classes alike; medians are compared.
4. The server is stopped cleanly and the file measured again.

    .venv/bin/python bench/purge.py                    # 100,000 executions
    .venv/bin/python bench/purge.py -n 20000           # quicker

Target: at most 20 % fewer executions/s while the purge runs.
"""

from __future__ import annotations

import argparse
import base64
import os
import shutil
import signal
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent))
import webhook as wh

from sealflow.tls import client_ssl_context

TARGET_LOSS = 0.20
STEPS = 3
CHUNK = 5_000  # executions per insert transaction


def _text(n: int) -> str:
    return base64.urlsafe_b64encode(os.urandom(n)).decode()


def insert_expired(db: Path, account_id: str, workflow_id: str, n: int) -> float:
    """n finished executions 40 days old, with their step runs; returns seconds taken."""
    at = (datetime.now(UTC) - timedelta(days=40)).strftime("%Y-%m-%d %H:%M:%S.%f")
    t0 = time.perf_counter()
    conn = sqlite3.connect(db, timeout=30)
    try:
        for start in range(0, n, CHUNK):
            execs, steps = [], []
            for _ in range(min(CHUNK, n - start)):
                eid = str(uuid.uuid4())
                # Sealed-looking text of the sizes the webhook workflow leaves (trigger ~150 B,
                # result ~80 B, step input/output ~120 B, no logs).
                execs.append((eid, account_id, workflow_id, 1, "succeeded", "webhook",
                              _text(150), _text(80), _text(80), at, at, at, at))
                for s in range(STEPS):
                    steps.append((eid, account_id, s, f"s{s}", f"s{s}", "transform", "run",
                                  "succeeded", _text(120), _text(120), 1, at, at))
            with conn:
                conn.executemany(
                    "INSERT INTO executions (id, account_id, workflow_id, workflow_version,"
                    " status, trigger_type, trigger_payload, result, response, call_depth,"
                    " respond_wait, platform_attempts, steps_run, cancel_requested, run_after,"
                    " created_at, started_at, finished_at)"
                    " VALUES (?,?,?,?,?,?,?,?,?,0,0,0,3,0,?,?,?,?)", execs)
                conn.executemany(
                    "INSERT INTO step_runs (execution_id, account_id, seq, path, step_name,"
                    " connector, operation, status, input, output, attempts, started_at,"
                    " finished_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)", steps)
        conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
    finally:
        conn.close()
    return time.perf_counter() - t0


def sizes(db: Path) -> tuple[int, int]:
    """(main file, WAL file) in bytes."""
    wal = db.with_name(db.name + "-wal")
    return db.stat().st_size, (wal.stat().st_size if wal.exists() else 0)


def file_size(db: Path) -> int:
    wal = db.with_name(db.name + "-wal")
    return db.stat().st_size + (wal.stat().st_size if wal.exists() else 0)


def query(db: Path, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


def expired_left(db: Path) -> int:
    cutoff = (datetime.now(UTC) - timedelta(days=30)).strftime("%Y-%m-%d %H:%M:%S.%f")
    return int(query(db, "SELECT count(*) FROM executions WHERE finished_at < ?", cutoff)[0][0])


def runs(db: Path) -> list[tuple[Any, ...]]:
    return query(db, "SELECT id, started_at, finished_at, executions_deleted,"
                     " step_runs_deleted, pages_freed, batches FROM purge_runs ORDER BY id")


def _ts(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%d %H:%M:%S.%f")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", "--executions", type=int, default=100_000)
    parser.add_argument("--slice", type=float, default=5.0,
                        help="seconds of each load slice")
    parser.add_argument("--idle-slices", type=int, default=4,
                        help="idle slices to run after the purge finished")
    parser.add_argument("--max-minutes", type=float, default=15.0)
    parser.add_argument("-c", "--concurrency", type=int, default=16)
    parser.add_argument("--client", choices=("auto", "wrk", "python"), default="auto")
    parser.add_argument("--no-pin", action="store_true")
    parser.add_argument("--keep", action="store_true", help="keep the data directory")
    args = parser.parse_args(argv)
    use_wrk = args.client == "wrk" or (args.client == "auto" and shutil.which("wrk"))

    def _terminate(signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, _terminate)
    signal.signal(signal.SIGINT, _terminate)
    server_cpu, _ = wh.pin_cpus(args.no_pin)
    tmp = Path(tempfile.mkdtemp(prefix="sealflow-bench-purge-"))
    procs = wh.Procs()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEALFLOW_")}
    env["SEALFLOW_LOG_LEVEL"] = "warning"
    bench = wh.Bench(argparse.Namespace(duration=args.slice), tmp, procs, server_cpu,
                     bool(use_wrk), env)
    try:
        return _run(args, bench, tmp, procs, server_cpu, env)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    finally:
        procs.stop_all()
        if args.keep:
            print(f"kept {tmp}", file=sys.stderr)
        else:
            shutil.rmtree(tmp, ignore_errors=True)


def _run(args: argparse.Namespace, bench: wh.Bench, tmp: Path, procs: wh.Procs,
         server_cpu: set[int] | None, env: dict[str, str]) -> int:
    data = tmp / "data"
    data.mkdir(mode=0o700)
    port = wh.free_port()
    log = tmp / "server.log"
    proc = procs.start([sys.executable, "-m", "sealflow.cli", "--data-dir", str(data),
                        "--host", wh.HOST, "--port", str(port), "serve"],
                       log=log, env=env, cpu=server_cpu)
    ca_file = data / "tls" / "dev-ca.pem"
    wh.wait_healthy(proc, port, ca_file, log)
    ca = client_ssl_context(ca_file)
    operator = (data / "operator.token").read_text().strip()
    status, account = wh.request(port, ca, "POST", "/v1/accounts",
                                 {"name": "bench", "region": "us"}, token=operator)
    assert status == 201, account
    status, wf = wh.request(port, ca, "POST", "/v1/workflows", {"definition": wh.WORKFLOW},
                            token=account["token"])
    assert status == 201, wf
    path = urlsplit(wf["webhook_url"]).path
    db = data / "us.db"

    print(f"inserting {args.executions} expired executions ...", file=sys.stderr)
    took = insert_expired(db, account["id"], wf["id"], args.executions)
    size_before = file_size(db)
    before_parts = sizes(db)
    print(f"  {took:.1f} s; us.db {size_before / 1e6:.1f} MB", file=sys.stderr)

    bench.load(port, path, ca, args.concurrency, 2.0, "warm-up", check=False)
    # Load in short slices, back to back, until the backlog is gone and a few idle slices
    # followed: each slice is then classed by the purge runs' own times as "purging" (inside
    # a run), "idle" (outside every run) or mixed (dropped). Interleaved like this, the noise
    # of a shared machine hits both classes alike.
    slices: list[tuple[datetime, datetime, wh.Load]] = []
    idle_after = 0
    deadline = time.monotonic() + args.max_minutes * 60
    left_seen = args.executions
    size_done: tuple[int, int] | None = None
    while time.monotonic() < deadline:
        t0 = datetime.now(UTC).replace(tzinfo=None)
        load = bench.load(port, path, ca, args.concurrency, args.slice, "slice", check=True)
        t1 = datetime.now(UTC).replace(tzinfo=None)
        slices.append((t0, t1, load))
        left_seen = expired_left(db)
        all_done = left_seen == 0 and runs(db) and all(r[2] is not None for r in runs(db))
        idle_after = idle_after + 1 if all_done else 0
        if all_done and size_done is None:
            size_done = sizes(db)
        print(f"  slice {len(slices)}: {load.per_s:.0f} exec/s, {left_seen} expired left",
              file=sys.stderr)
        if idle_after >= args.idle_slices:
            break
    done = runs(db)
    wh.Procs.stop(proc)
    size_after = file_size(db)

    def within(t0: datetime, t1: datetime) -> str:
        for r in done:
            start, end = _ts(r[1]), _ts(r[2]) if r[2] else datetime.max
            if start <= t0 and t1 <= end:
                return "purging"
            if t0 < end and start < t1:
                return "mixed"
        return "idle"

    classes: dict[str, list[wh.Load]] = {"purging": [], "idle": [], "mixed": []}
    for t0, t1, load in slices:
        classes[within(t0, t1)].append(load)
    deleted = sum(r[3] for r in done)
    active = sum((_ts(r[2]) - _ts(r[1])).total_seconds() for r in done if r[2])
    wall = (_ts(done[-1][2]) - _ts(done[0][1])).total_seconds() if done and done[-1][2] else 0
    purging = statistics.median(x.per_s for x in classes["purging"]) if classes["purging"] else 0
    idle = statistics.median(x.per_s for x in classes["idle"]) if classes["idle"] else 0
    loss = 1 - purging / idle if idle else 1.0
    print()
    print(f"purge bench: {args.executions} expired executions x {STEPS} step runs, "
          f"webhook load c={args.concurrency} in {args.slice:g} s slices, "
          f"{'wrk' if bench.use_wrk else 'asyncio'}; server on one core")
    for r in done:
        print(f"  run {r[0]}: {r[1]} -> {r[2]}: {r[3]} executions, {r[4]} step runs, "
              f"{r[6]} batches, {r[5]} pages freed")
    if left_seen:
        print(f"  NOT FINISHED: {left_seen} expired executions left after "
              f"{args.max_minutes} minutes")
    if active and wall:
        print(f"  purge rate: {deleted / active:,.0f} executions/s while a run was going "
              f"({active:.1f} s in {len(done)} run(s)); {deleted / wall:,.0f} executions/s "
              f"from the first start to the last finish ({wall:.1f} s, with the idle part "
              "of each minute)")
    for name in ("idle", "purging"):
        xs = sorted(x.per_s for x in classes[name])
        p99 = statistics.median(x.p99_ms for x in classes[name]) if xs else 0
        print(f"  {name:<8} {len(xs):>3} slices: median {statistics.median(xs) if xs else 0:.0f}"
              f" exec/s (min {xs[0] if xs else 0:.0f}, max {xs[-1] if xs else 0:.0f}), "
              f"median p99 {p99:.0f} ms")
    print(f"  ({len(classes['mixed'])} slices straddled a run's start or end: not counted)")
    errors = sum(x.errors for _, _, x in slices)
    print(f"  errors: {errors}")
    print(f"  throughput loss while purging: {loss:.1%} (target <= {TARGET_LOSS:.0%}): "
          f"{'PASS' if loss <= TARGET_LOSS else 'FAIL'}")
    mb = 1e6
    page = int(query(db, "PRAGMA page_size")[0][0])
    freed = sum(r[5] for r in done) * page
    print(f"  given back to the file system by the purge (incremental vacuum): "
          f"{freed / mb:.1f} MB of the {before_parts[0] / mb:.1f} MB file")
    print(f"  us.db: {before_parts[0] / mb:.1f} MB (+ WAL {before_parts[1] / mb:.1f} MB) "
          "after the insert")
    if size_done is not None:
        print(f"  us.db: {size_done[0] / mb:.1f} MB (+ WAL {size_done[1] / mb:.1f} MB) when "
              f"the purge had finished ({1 - size_done[0] / before_parts[0]:.0%} smaller "
              "main file; the load's own new executions are in it)")
    print(f"  us.db + WAL after the server stopped: {size_after / mb:.1f} MB "
          f"({1 - size_after / size_before:.0%} smaller than {size_before / mb:.1f} MB)")
    return 0 if loss <= TARGET_LOSS and not left_seen else 1


if __name__ == "__main__":
    sys.exit(main())
