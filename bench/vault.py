"""Vault micro-benchmark (run on demand; never a timed assert in the tests).

Microseconds per operation to encrypt and decrypt 1 KB and 100 KB values, median and p99,
through the Vault facade (bytes) and through db.sealed seal/open_ (a JSON value: codec,
vault, base64 text, which is what every customer column costs), on two paths:

- cached: the account's keyset is in the vault's cache (the steady state of a server);
- cold:   a cache miss on every operation: the tombstone check and the keyset row read from
          the key store (SQLite), then the keyset unwrapped with the KEK (local key file).

Rows "plain" time the JSON and base64 work of seal/open_ without any encryption, so the cost
of encryption itself is the difference.

    .venv/bin/python bench/vault.py              # 2000 iterations per row (cold: 500)
    .venv/bin/python bench/vault.py -n 5000 --cold 1000

Everything runs in a fresh temporary directory that is removed at the end.
"""

from __future__ import annotations

import argparse
import gc
import importlib.metadata
import platform
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sealflow.db import codec
from sealflow.db.engine import make_engine
from sealflow.db.sealed import open_, seal
from sealflow.vault.keystore import KeyStore, default_keystore_url, upgrade_keystore
from sealflow.vault.providers.local_file import LocalFileProvider
from sealflow.vault.vault import Vault

ACCOUNT = "bench-account"
SIZES = {"1 KB": 1024, "100 KB": 100 * 1024}


class WarmClock:
    def now(self) -> datetime:
        return datetime.now(UTC)

    def monotonic(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:  # pragma: no cover - unused
        raise NotImplementedError


class ColdClock(WarmClock):
    """An hour passes between any two looks at the clock: every cached keyset has expired, so
    each operation reloads and unwraps it (the cache-miss path, nothing else changed)."""

    def __init__(self) -> None:
        self._t = 0.0

    def monotonic(self) -> float:
        self._t += 3600.0
        return self._t


def json_value(size: int) -> Any:
    """A JSON document of about `size` bytes, shaped like an API payload."""
    rows: list[dict[str, Any]] = []
    value = {"rows": rows}
    i = 0
    while len(codec.dumps_bytes(value)) < size:
        rows.append({"id": i, "email": f"user{i}@example.test", "qty": i % 7, "ok": i % 2 == 0})
        i += 1
    return value


def raw_value(size: int) -> bytes:
    return (b"0123456789abcdef" * (size // 16 + 1))[:size]


@dataclass
class Row:
    path: str
    layer: str
    op: str
    size: str
    samples: list[int]  # ns

    def median_us(self) -> float:
        return statistics.median(self.samples) / 1000

    def p99_us(self) -> float:
        return statistics.quantiles(self.samples, n=100, method="inclusive")[98] / 1000


def timed(fn: Callable[[], Any], n: int) -> list[int]:
    for _ in range(min(50, n)):  # warm-up: first calls pay for imports and allocations
        fn()
    gc.collect()
    out = []
    for _ in range(n):
        t0 = time.perf_counter_ns()
        fn()
        out.append(time.perf_counter_ns() - t0)
    return out


def bench(vault: Vault, path: str, n: int) -> list[Row]:
    rows: list[Row] = []
    for label, size in SIZES.items():
        plain = raw_value(size)
        ct = vault.encrypt(ACCOUNT, "executions", "row-1", "trigger_payload", plain)
        assert vault.decrypt(ACCOUNT, "executions", "row-1", "trigger_payload", ct) == plain
        rows.append(Row(path, "Vault", "encrypt", label, timed(
            lambda p=plain: vault.encrypt(ACCOUNT, "executions", "row-1", "trigger_payload", p),
            n)))
        rows.append(Row(path, "Vault", "decrypt", label, timed(
            lambda c=ct: vault.decrypt(ACCOUNT, "executions", "row-1", "trigger_payload", c), n)))
        value = json_value(size)
        text = seal(vault, ACCOUNT, "executions", "row-1", "trigger_payload", value)
        assert open_(vault, ACCOUNT, "executions", "row-1", "trigger_payload", text) == value
        rows.append(Row(path, "db.sealed", "seal", label, timed(
            lambda v=value: seal(vault, ACCOUNT, "executions", "row-1", "trigger_payload", v),
            n)))
        rows.append(Row(path, "db.sealed", "open_", label, timed(
            lambda t=text: open_(vault, ACCOUNT, "executions", "row-1", "trigger_payload", t),
            n)))
    return rows


def bench_plain(n: int) -> list[Row]:
    """The same JSON and base64 work as seal/open_ without the vault: what the rows above
    cost beyond encryption (and what bench/_plain_server.py stores instead)."""
    import base64

    rows: list[Row] = []
    for label, size in SIZES.items():
        value = json_value(size)
        text = base64.urlsafe_b64encode(codec.dumps_bytes(value)).decode("ascii")
        rows.append(Row("-", "plain", "seal", label, timed(
            lambda v=value: base64.urlsafe_b64encode(codec.dumps_bytes(v)).decode("ascii"), n)))
        rows.append(Row("-", "plain", "open_", label, timed(
            lambda t=text: codec.loads(base64.urlsafe_b64decode(t)), n)))
    return rows


def report(rows: list[Row], n: int, cold_n: int) -> None:
    cpu = platform.processor() or platform.machine()
    print(f"\nsealflow vault bench: Python {platform.python_version()}, tink "
          f"{importlib.metadata.version('tink')}, {cpu}; {n} iterations per cached row, "
          f"{cold_n} per cold row\n")
    print(f"{'path':<7} {'layer':<10} {'op':<8} {'size':>7} {'median µs':>10} {'p99 µs':>9} "
          f"{'MB/s':>7}")
    for r in rows:
        size = SIZES[r.size]
        mbps = size / (r.median_us() / 1e6) / 1e6
        print(f"{r.path:<7} {r.layer:<10} {r.op:<8} {r.size:>7} {r.median_us():>10.1f} "
              f"{r.p99_us():>9.1f} {mbps:>7.0f}")
    print("\ncached: keyset in the vault's cache. cold: every operation misses the cache "
          "(key store read + tombstone check + KEK unwrap). seal/open_ add the JSON codec and "
          "base64 text; plain: that JSON and base64 work alone, no encryption.")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Vault encrypt/decrypt µs per operation.")
    parser.add_argument("-n", "--iterations", type=int, default=2000,
                        help="timed operations per cached row (default 2000)")
    parser.add_argument("--cold", type=int, default=500,
                        help="timed operations per cold (cache miss) row (default 500)")
    args = parser.parse_args(argv)
    if args.iterations < 100 or args.cold < 100:
        parser.error("use at least 100 iterations (p99 needs them)")
    tmp = Path(tempfile.mkdtemp(prefix="sealflow-vault-bench-"))
    engine = make_engine(default_keystore_url(tmp, "us"))
    try:
        upgrade_keystore(engine)
        provider = LocalFileProvider(tmp / "keys" / "us.kek.json")
        warm_clock, cold_clock = WarmClock(), ColdClock()
        warm = Vault("us", KeyStore(engine, warm_clock), provider, warm_clock)
        cold = Vault("us", KeyStore(engine, cold_clock), provider, cold_clock)
        warm.encrypt(ACCOUNT, "t", "r", "c", b"create the account's keyset")
        rows = (bench(warm, "cached", args.iterations) + bench_plain(args.iterations)
                + bench(cold, "cold", args.cold))
        report(rows, args.iterations, args.cold)
    finally:
        engine.dispose()
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
