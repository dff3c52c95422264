"""Audit log benchmark (run on demand; never a timed assert in the tests).

Appends per second with checkpoints on (the default policy: a signed checkpoint every 1,000
records or 60 s), on a real SQLite file (WAL, synchronous=NORMAL, as a cell runs it), in two
shapes:

- one transaction per record: what an action pays (its own row + its audit record + COMMIT),
  measured here with the audit record alone, so it is the audit log's share plus a commit;
- batched: 100 records per transaction (an upper bound: bulk imports, purges).

Then `verify` (chain, tree, checkpoint signatures, all of it) in records per second.

    .venv/bin/python bench/audit.py              # 20,000 records
    .venv/bin/python bench/audit.py -n 100000

Target (PASS/FAIL line; exit status 0 when it passes): at least 5,000 appends/s, one
transaction per record, checkpoints on. Everything runs in a fresh temporary directory.
"""

from __future__ import annotations

import argparse
import platform
import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sealflow.audit import log
from sealflow.audit.records import Action, Actor, ActorKind, AuditEvent
from sealflow.audit.signing import Signer, key_path
from sealflow.audit.verify import verify
from sealflow.db.engine import make_engine
from sealflow.db.migrate import upgrade

TARGET = 5_000.0
T0 = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)


def event(i: int, at: datetime) -> AuditEvent:
    return AuditEvent("eu", f"{i % 97:08d}-0000-4000-8000-000000000000",
                      Actor(ActorKind.USER, f"{i % 13:08d}-0000-4000-8000-000000000000"),
                      Action.AUTHENTICATION_DECRYPTED, f"authentication:{i % 1000}", at,
                      {"execution": f"{i:08d}-0000-4000-8000-000000000000", "step": "fetch"})


def run(root: Path, n: int, per_tx: int) -> tuple[float, int, Path]:
    path = root / f"audit-{per_tx}.db"
    engine = make_engine(f"sqlite:///{path}")
    upgrade(engine)
    signer = Signer.load(key_path(root, "eu"), create=True)
    checkpointer = log.Checkpointer("eu", signer)
    made = 0
    start = time.perf_counter()
    i = 0
    while i < n:
        with engine.begin() as conn:
            for _ in range(per_tx):
                i += 1
                now = T0 + timedelta(milliseconds=i)  # 1,000 records/s of simulated time
                seq = log.append(conn, event(i, now))
                if checkpointer.after_append(conn, seq, now) is not None:
                    made += 1
    elapsed = time.perf_counter() - start
    engine.dispose()
    return n / elapsed, made, path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("-n", type=int, default=20_000, help="records per run")
    args = parser.parse_args()
    print(f"python {platform.python_version()}, SQLite, {args.n:,} records, "
          "checkpoints every 1,000 records or 60 s")
    root = Path(tempfile.mkdtemp(prefix="sealflow-bench-audit-"))
    try:
        rate, made, path = run(root, args.n, 1)
        print(f"append, 1 record per transaction:    {rate:10,.0f} records/s "
              f"({made} checkpoints)")
        batched, _, _ = run(root, args.n, 100)
        print(f"append, 100 records per transaction: {batched:10,.0f} records/s")
        engine = make_engine(f"sqlite:///{path}")
        signer = Signer.load(key_path(root, "eu"))
        start = time.perf_counter()
        with engine.connect() as conn:
            report = verify(conn, "eu", signer.verifier)
        elapsed = time.perf_counter() - start
        engine.dispose()
        assert report.ok, report.problems
        print(f"verify (chain, tree, {report.checkpoints} signatures): "
              f"{report.records / elapsed:10,.0f} records/s")
        ok = rate >= TARGET
        print(f"{'PASS' if ok else 'FAIL'}: {rate:,.0f} appends/s with checkpoints on "
              f"(target >= {TARGET:,.0f}/s)")
        return 0 if ok else 1
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
