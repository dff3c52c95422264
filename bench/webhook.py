"""Webhook throughput benchmark (run on demand; never a timed assert in the tests).

A webhook-triggered workflow of three steps (transform -> branch -> respond) with
`respond: wait`, driven at concurrency 1 and 16 (20 s each by default) against a real
`sealflow serve` subprocess: fresh temporary data directory, HTTPS with the development
certificate, 127.0.0.1 only. Every execution and every step is recorded by the server as
usual; at the end the bench checks in us.db that the executions and step records match the
successful requests. Then the same load hits a bare Starlette endpoint answering a constant,
served with the same TLS set-up (bench/_ceiling_app.py): the ceiling.

    .venv/bin/python bench/webhook.py                 # 20 s at c=1 and c=16, then the ceiling
    .venv/bin/python bench/webhook.py -d 10 -c 1 4 16 --profile /tmp/sealflow.svg
    .venv/bin/python bench/webhook.py --compare-encryption -c 16 -d 10 --rounds 6
    .venv/bin/python bench/webhook.py --compare-audit -c 16 -d 10 --rounds 6

--compare-encryption runs the same load against sealflow as it is and against sealflow with
sealing at rest replaced by a plain JSON/base64 pass-through (bench/_plain_server.py, a
bench-only launcher: the product has no "encryption off" setting), and prints the difference.
--compare-audit does the same for the audit trail (bench/_unaudited_server.py: record() a
no-op), with a workflow whose first step calls a local API with a stored authentication, so
that each execution writes one audit record (bench/_audit_compare.py).

The load generator is wrk (Debian: `apt-get install -y wrk`), or, without it, a light
asyncio client (raw keep-alive HTTP/1.1 over ssl). Server and client get one core each
(sched_setaffinity) so the client does not eat the server's CPU. See bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import http.client
import json
import os
import resource
import shutil
import signal
import socket
import sqlite3
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from sealflow.tls import client_ssl_context

HOST = "127.0.0.1"  # the bench never talks to anything else
BENCH_DIR = Path(__file__).resolve().parent
STEPS_PER_EXECUTION = 3

WORKFLOW: dict[str, Any] = {
    "name": "bench: webhook transform-branch-respond",
    "trigger": {"type": "webhook", "respond": "wait"},
    "steps": [
        {"name": "shape", "connector": "transform", "input": {"expression": (
            '{"id": $.trigger.body.id, "n": $count($.trigger.body.lines),'
            ' "total": $sum($.trigger.body.lines.(qty * price))}'
        )}},
        {"name": "check", "connector": "branch",
         "input": {"condition": "$.steps.shape.total > 10"},
         "then": "reply_big", "else": "reply_small"},
        {"name": "reply_big", "connector": "respond", "next": None, "input": {
            "status": 200,
            "body": {"id": "$.steps.shape.id", "total": "$.steps.shape.total", "big": True}}},
        {"name": "reply_small", "connector": "respond", "next": None, "input": {
            "status": 200,
            "body": {"id": "$.steps.shape.id", "total": "$.steps.shape.total", "big": False}}},
    ],
}
PAYLOAD = b'{"id":"A-17","lines":[{"qty":2,"price":10.5},{"qty":1,"price":4}]}'
EXPECTED = {"id": "A-17", "total": 25, "big": True}

# Targets at the highest concurrency (the issue's numbers).
TARGET_EXEC_PER_S = 320.0
TARGET_CEILING_SHARE = 0.30
TARGET_P99_MS = 100.0
TARGET_RSS_MB = 300.0
# --compare-encryption: executions/s with encryption at rest at most this much lower.
TARGET_ENCRYPTION_COST = 0.15
# Bench-only launchers of the --compare-* modes, by variant; any other variant is the CLI.
LAUNCHERS = {"plain": "_plain_server.py", "unaudited": "_unaudited_server.py"}
# --compare-audit: (port, CA, account token) -> (the workflow to save, step records per
# execution), after it made what the workflow needs through the API.
Setup = Callable[[int, ssl.SSLContext, str], tuple[dict[str, Any], int]]

WRK_SCRIPT = r"""
wrk.method = "POST"
wrk.body = [[%(body)s]]
wrk.headers["Content-Type"] = "application/json"
local threads = {}
function setup(thread) table.insert(threads, thread) end
%(counting)s
function done(summary, latency, requests)
  local e = summary.errors
  local s, o, b = summary.requests, summary.requests - e.status, e.status
  if counting then
    s, o, b = 0, 0, 0
    for _, t in ipairs(threads) do
      s = s + t:get("sent"); o = o + t:get("ok"); b = b + t:get("bad")
    end
  end
  io.write(string.format(
    'WRKJSON {"duration_us": %%d, "completed": %%d, "sent": %%d, "ok": %%d, "bad": %%d, ' ..
    '"socket_errors": %%d, "timeouts": %%d, "p50_us": %%d, "p99_us": %%d, "max_us": %%d, ' ..
    '"mean_us": %%f}\n',
    summary.duration, summary.requests, s, o, b, e.connect + e.read + e.write, e.timeout,
    latency:percentile(50), latency:percentile(99), latency.max, latency.mean))
end
"""
# Counting each request sent and each 200 (for the database check) costs wrk a Lua call per
# request and response: fine at sealflow's rates, but it would cap the ceiling; there wrk's
# own counters (responses, non-2xx/3xx) are enough.
WRK_COUNTING = r"""
counting = true
function init(args) sent = 0; ok = 0; bad = 0 end
function request() sent = sent + 1; return wrk.format() end
function response(status, headers, body)
  if status == 200 then ok = ok + 1 else bad = bad + 1 end
end
"""


# ------------------------------------------------------------------------------ results
@dataclass
class Load:
    """One load phase: `ok` responses were 200 with the expected body."""

    target: str
    concurrency: int
    duration_s: float
    ok: int
    errors: int
    sent: int
    p50_ms: float
    p99_ms: float
    max_ms: float
    rss_mb: float | None = None  # server's VmHWM after the phase
    cpu_s: float | None = None  # server CPU time (user + system) during the phase
    others_cores: float | None = None  # CPU used by processes outside the bench, in cores

    @property
    def per_s(self) -> float:
        return self.ok / self.duration_s if self.duration_s else 0.0

    @property
    def cpu_ms_per_request(self) -> float | None:
        return 1000 * self.cpu_s / self.ok if self.cpu_s is not None and self.ok else None


@dataclass
class Procs:
    """Everything the bench started, so that it can all be stopped whatever happens."""

    items: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def start(self, cmd: list[str], *, log: Path, env: dict[str, str],
              cpu: set[int] | None) -> subprocess.Popen[bytes]:
        with open(log, "ab") as out:
            proc = subprocess.Popen(cmd, stdout=out, stderr=out, env=env,
                                    start_new_session=True)
        self.items.append(proc)
        if cpu:
            os.sched_setaffinity(proc.pid, cpu)
        return proc

    @staticmethod
    def stop(proc: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)

    def stop_all(self) -> None:
        for proc in reversed(self.items):
            self.stop(proc, timeout=10)


# ------------------------------------------------------------------------------ helpers
def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def peak_rss_mb(pid: int) -> float | None:
    """VmHWM (peak resident set size) of a process, in MB."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of a process (all its threads), in seconds."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def busy_seconds() -> float:
    """CPU time all processes of the machine used so far (/proc/stat), in seconds."""
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(f) for f in fields[:8])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def own_seconds() -> float:
    """CPU time of this process and its waited-for children (the load generator)."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(
        resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def request(port: int, ca: ssl.SSLContext, method: str, path: str, body: Any = None,
            token: str | None = None, raw: bytes | None = None) -> tuple[int, Any]:
    conn = http.client.HTTPSConnection(HOST, port, context=ca, timeout=30)
    try:
        headers = {"Content-Type": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None
                                            else None)
        conn.request(method, path, body=data, headers=headers)
        resp = conn.getresponse()
        text = resp.read()
        return resp.status, (json.loads(text) if text else None)
    finally:
        conn.close()


def wait_healthy(proc: subprocess.Popen[bytes], port: int, ca_file: Path, log: Path,
                 timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited ({proc.returncode}):\n{log.read_text()[-3000:]}")
        if ca_file.exists():
            with contextlib.suppress(OSError, ssl.SSLError, http.client.HTTPException):
                if request(port, client_ssl_context(ca_file), "GET", "/healthz")[0] == 200:
                    return
        time.sleep(0.1)
    raise SystemExit(f"server did not start in {timeout} s:\n{log.read_text()[-3000:]}")


def pin_cpus(no_pin: bool) -> tuple[set[int] | None, set[int] | None]:
    """(server cpus, client cpus): one core each, the bench process moves to the client's."""
    cpus = sorted(os.sched_getaffinity(0))
    if no_pin or len(cpus) < 2:
        if len(cpus) < 2:
            print("note: one CPU only; server and client share it", file=sys.stderr)
        return None, None
    server, client = {cpus[0]}, {cpus[1]}
    os.sched_setaffinity(0, client)
    return server, client


# ------------------------------------------------------------------------------ load
def run_wrk(url: str, concurrency: int, duration: int, workdir: Path, label: str,
            counting: bool = True) -> Load:
    script = workdir / ("post-counting.lua" if counting else "post.lua")
    script.write_text(WRK_SCRIPT % {"body": PAYLOAD.decode(),
                                    "counting": WRK_COUNTING if counting else ""})
    cmd = ["wrk", "-t1", f"-c{concurrency}", f"-d{duration}s", "--timeout", "10s",
           "-s", str(script), url]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 60,
                         check=False)
    line = next((ln for ln in out.stdout.splitlines() if ln.startswith("WRKJSON ")), None)
    if out.returncode != 0 or line is None:
        raise SystemExit(f"wrk failed ({out.returncode}):\n{out.stdout}\n{out.stderr}")
    r = json.loads(line.removeprefix("WRKJSON "))
    errors = r["bad"] + r["socket_errors"] + r["timeouts"]
    return Load(label, concurrency, r["duration_us"] / 1e6, ok=r["ok"], errors=errors,
                sent=r["sent"], p50_ms=r["p50_us"] / 1000, p99_ms=r["p99_us"] / 1000,
                max_ms=r["max_us"] / 1000)


async def _py_worker(port: int, ctx: ssl.SSLContext, req: bytes, stop_at: float,
                     lat: list[int], tally: dict[str, int], check: bool) -> None:
    reader, writer = await asyncio.open_connection(HOST, port, ssl=ctx, server_hostname=HOST)
    try:
        while time.perf_counter() < stop_at:  # no new request after the deadline
            t0 = time.perf_counter_ns()
            writer.write(req)
            tally["sent"] += 1
            head = await reader.readuntil(b"\r\n\r\n")
            length = None
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            if length is None:
                raise RuntimeError("response without content-length")
            body = await reader.readexactly(length)
            lat.append(time.perf_counter_ns() - t0)
            good = head.startswith(b"HTTP/1.1 200 ") and (
                not check or json.loads(body) == EXPECTED)
            tally["ok" if good else "bad"] += 1
    finally:
        writer.close()
        with contextlib.suppress(OSError, ssl.SSLError):
            await writer.wait_closed()


def run_python(port: int, path: str, ca: ssl.SSLContext, concurrency: int, duration: float,
               label: str, check: bool) -> Load:
    req = (f"POST {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\nContent-Type: application/json\r\n"
           f"Content-Length: {len(PAYLOAD)}\r\n\r\n").encode() + PAYLOAD
    lat: list[int] = []
    tally = {"sent": 0, "ok": 0, "bad": 0}

    async def main() -> float:
        t0 = time.perf_counter()
        stop_at = t0 + duration
        results = await asyncio.gather(
            *(_py_worker(port, ca, req, stop_at, lat, tally, check) for _ in range(concurrency)),
            return_exceptions=True)
        failed = [r for r in results if isinstance(r, BaseException)]
        tally["bad"] += len(failed)
        if failed:
            print(f"  {len(failed)} connection(s) failed: {failed[0]!r}", file=sys.stderr)
        return time.perf_counter() - t0

    with contextlib.suppress(ImportError):
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    elapsed = asyncio.run(main())
    lat.sort()
    q = statistics.quantiles(lat, n=100, method="inclusive") if len(lat) > 1 else lat * 99
    return Load(label, concurrency, elapsed, ok=tally["ok"], errors=tally["bad"],
                sent=tally["sent"], p50_ms=q[49] / 1e6, p99_ms=q[98] / 1e6,
                max_ms=(lat[-1] / 1e6 if lat else 0.0))


# ------------------------------------------------------------------------------ the database
def db_counts(db: Path) -> dict[str, int]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    try:
        out = {f"executions_{status}": n for status, n in conn.execute(
            "SELECT status, count(*) FROM executions GROUP BY status")}
        out["executions"] = sum(out.values())
        out["steps"] = conn.execute("SELECT count(*) FROM step_runs").fetchone()[0]
        out["steps_succeeded"] = conn.execute(
            "SELECT count(*) FROM step_runs WHERE status = 'succeeded'").fetchone()[0]
        return out
    finally:
        conn.close()


def wait_quiet(db: Path, timeout: float = 60.0) -> dict[str, int]:
    """Counts once no execution is queued or running any more."""
    deadline = time.monotonic() + timeout
    while True:
        counts = db_counts(db)
        busy = counts.get("executions_queued", 0) + counts.get("executions_running", 0)
        if busy == 0 or time.monotonic() > deadline:
            return counts
        time.sleep(0.2)


def at_rest(db: Path) -> str:
    """How the last execution's trigger payload is stored: "sealed" (the vault's ciphertext:
    format byte 1, then Tink's prefix), "plain" (JSON, the bench pass-through) or "?"."""
    import base64

    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    try:
        row = conn.execute("SELECT trigger_payload FROM executions ORDER BY created_at DESC "
                           "LIMIT 1").fetchone()
    finally:
        conn.close()
    if row is None:
        return "?"
    raw = base64.urlsafe_b64decode(row[0])
    if raw[:2] == b"\x01\x01":
        return "sealed"
    with contextlib.suppress(ValueError):
        json.loads(raw)
        return "plain"
    return "?"


def _delta(before: float | None, after: float | None) -> float | None:
    return None if before is None or after is None else after - before


# ------------------------------------------------------------------------------ the bench
@dataclass
class Bench:
    args: argparse.Namespace
    tmp: Path
    procs: Procs
    server_cpu: set[int] | None
    use_wrk: bool
    env: dict[str, str] = field(default_factory=dict)

    def load(self, port: int, path: str, ca: ssl.SSLContext, c: int, seconds: float,
             label: str, check: bool) -> Load:
        if self.use_wrk:
            return run_wrk(f"https://{HOST}:{port}{path}", c, max(1, round(seconds)),
                           self.tmp, label, counting=label != "ceiling")
        return run_python(port, path, ca, c, seconds, label, check)

    def measured(self, pid: int, port: int, path: str, ca: ssl.SSLContext, c: int,
                 label: str) -> Load:
        """One reported phase, with the server's CPU time and what the rest of the machine
        used meanwhile (other people's work on a shared machine skews the numbers)."""
        print(f"{label:<9} c={c:<3} {self.args.duration:g} s ...", file=sys.stderr)
        cpu0, busy0, own0 = cpu_seconds(pid), busy_seconds(), own_seconds()
        result = self.load(port, path, ca, c, self.args.duration, label, check=True)
        cpu1, busy1, own1 = cpu_seconds(pid), busy_seconds(), own_seconds()
        result.cpu_s = _delta(cpu0, cpu1)
        if result.cpu_s is not None:
            others = (busy1 - busy0) - result.cpu_s - (own1 - own0)
            result.others_cores = max(0.0, others / result.duration_s)
        result.rss_mb = peak_rss_mb(pid)
        return result

    def sealflow(self, variant: str = "sealflow", data_name: str = "data",
                 setup: Setup | None = None) -> tuple[list[Load], dict[str, Any]]:
        """One server run. variant "sealflow" (also "sealed", "audited") is the product as it
        is; "plain" is bench/_plain_server.py: sealing replaced by a pass-through;
        "unaudited" is bench/_unaudited_server.py: no audit records. `setup` makes the
        workflow (default: WORKFLOW)."""
        data = self.tmp / data_name
        data.mkdir(mode=0o700)
        port = free_port()
        log = self.tmp / f"{data_name}.log"
        launcher = ([str(BENCH_DIR / LAUNCHERS[variant])] if variant in LAUNCHERS
                    else ["-m", "sealflow.cli"])
        cmd = [sys.executable, *launcher, "--data-dir", str(data), "--host", HOST,
               "--port", str(port), "serve"]
        proc = self.procs.start(cmd, log=log, env=self.env, cpu=self.server_cpu)
        ca_file = data / "tls" / "dev-ca.pem"
        wait_healthy(proc, port, ca_file, log)
        ca = client_ssl_context(ca_file)
        operator = (data / "operator.token").read_text().strip()
        status, account = request(port, ca, "POST", "/v1/accounts",
                                  {"name": "bench", "region": "us"}, token=operator)
        if status != 201:
            raise SystemExit(f"cannot create the account: {status} {account}")
        definition, steps_per_execution = (
            setup(port, ca, account["token"]) if setup else (WORKFLOW, STEPS_PER_EXECUTION))
        status, wf = request(port, ca, "POST", "/v1/workflows", {"definition": definition},
                             token=account["token"])
        if status != 201:
            raise SystemExit(f"cannot save the workflow: {status} {wf}")
        path = urlsplit(wf["webhook_url"]).path  # /hooks/us/<token>
        status, answer = request(port, ca, "POST", path, raw=PAYLOAD)
        if status != 200 or answer != EXPECTED:
            raise SystemExit(f"the webhook answered {status} {answer}, expected {EXPECTED}")

        db = data / "us.db"
        if self.args.warmup > 0:
            self.load(port, path, ca, max(self.args.concurrency), self.args.warmup, "warm-up",
                      check=False)
        before = wait_quiet(db)
        results = []
        top = max(self.args.concurrency)
        for c in self.args.concurrency:
            spy = self._profiler(proc.pid, c, data_name) if c == top else None
            result = self.measured(proc.pid, port, path, ca, c, variant)
            if spy is not None:
                self._stop_profiler(spy)
            results.append(result)
        after = wait_quiet(db)
        rss = peak_rss_mb(proc.pid)
        Procs.stop(proc)
        final = db_counts(db)  # after a clean shutdown: nothing left running
        check = {
            "ok": sum(r.ok for r in results),
            "sent": sum(r.sent for r in results),
            "executions": after["executions"] - before["executions"],
            "steps": after["steps"] - before["steps"],
            "not_succeeded": final["executions"] - final.get("executions_succeeded", 0),
            "steps_not_succeeded": final["steps"] - final["steps_succeeded"],
            "rss_mb": rss,
            "at_rest": at_rest(db),
            "steps_per_execution": steps_per_execution,
            "db": db,
        }
        return results, check

    def ceiling(self) -> list[Load]:
        port = free_port()
        log = self.tmp / "ceiling.log"
        tls_dir = self.tmp / "data" / "tls"  # the very certificate sealflow served
        cmd = [sys.executable, str(BENCH_DIR / "_ceiling_app.py"), "--host", HOST,
               "--port", str(port), "--tls-dir", str(tls_dir)]
        proc = self.procs.start(cmd, log=log, env=self.env, cpu=self.server_cpu)
        ca_file = tls_dir / "dev-ca.pem"
        wait_healthy(proc, port, ca_file, log)
        ca = client_ssl_context(ca_file)
        path = "/hooks/us/ceiling"
        if self.args.warmup > 0:
            self.load(port, path, ca, max(self.args.concurrency), self.args.warmup, "warm-up",
                      check=False)
        results = []
        for c in self.args.concurrency:
            results.append(self.measured(proc.pid, port, path, ca, c, "ceiling"))
        Procs.stop(proc)
        return results

    def _profiler(self, pid: int, c: int, run: str) -> subprocess.Popen[bytes] | None:
        out = self.args.profile
        if out is None:
            return None
        if self.args.compare_encryption or self.args.compare_audit:  # one per server run
            out = out.with_name(f"{out.stem}-{run}{out.suffix}")
        spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
        if not Path(spy).exists():
            print("note: py-spy not found (pip install py-spy); not profiling", file=sys.stderr)
            return None
        fmt = "speedscope" if out.suffix == ".json" else "raw" if out.suffix == ".txt" else (
            "flamegraph")
        cmd = [spy, "record", "--pid", str(pid), "--nonblocking", "--rate", "200",
               "--format", fmt, "--output", str(out), "--duration",
               str(max(1, round(self.args.duration)))]
        print(f"profiling the server at c={c} with py-spy -> {out}", file=sys.stderr)
        # py-spy runs on the client's core, like the load generator.
        return self.procs.start(cmd, log=self.tmp / "py-spy.log", env=self.env, cpu=None)

    def _stop_profiler(self, spy: subprocess.Popen[bytes]) -> None:
        try:
            spy.wait(30)
        except subprocess.TimeoutExpired:
            spy.send_signal(signal.SIGINT)  # py-spy writes its output on SIGINT
            spy.wait(10)


# ------------------------------------------------------------------------------ report
def _verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def _table(loads: list[Load]) -> None:
    print(f"{'target':<9} {'c':>3} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} "
          f"{'ok':>8} {'errors':>7} {'peak RSS':>9} {'CPU ms/req':>11}")
    for r in loads:
        rss = f"{r.rss_mb:.0f} MB" if r.rss_mb is not None else "?"
        cpu = r.cpu_ms_per_request
        print(f"{r.target:<9} {r.concurrency:>3} {r.per_s:>9.1f} {r.p50_ms:>8.2f} "
              f"{r.p99_ms:>8.2f} {r.max_ms:>8.1f} {r.ok:>8} {r.errors:>7} {rss:>9} "
              f"{(f'{cpu:.3f}' if cpu is not None else '?'):>11}")
    busy = max((r.others_cores or 0.0) for r in loads)
    if busy > 0.2:
        print(f"warning: other processes used up to {busy:.1f} cores during the runs; the "
              "rates and latencies are pessimistic (CPU ms/req is the steadier figure)")


def _recorded(check: dict[str, Any]) -> tuple[bool, str]:
    """Every successful request is one execution with its three step records. The asyncio
    client lets its last requests finish, so the counts match exactly. wrk stops with up
    to c requests in flight whose answers it never reads: the server runs those it had
    started (it drops one whose client left before it began), so the executions lie
    between the successful requests and the requests sent."""
    executions, ok, sent = check["executions"], check["ok"], check["sent"]
    per = check["steps_per_execution"]
    recorded = (ok <= executions <= sent
                and check["steps"] == per * executions
                and check["not_succeeded"] == 0 and check["steps_not_succeeded"] == 0)
    extra = executions - ok
    how = "exactly" if extra == 0 else (
        f"+ {extra} of the {sent - ok} requests the client left in flight at its deadline")
    return recorded, (
        f"recorded in us.db: {executions} executions and {check['steps']} step records "
        f"({per} per execution expected) for {ok} successful requests {how}; "
        f"executions not succeeded: {check['not_succeeded']}, steps not succeeded: "
        f"{check['steps_not_succeeded']} -> {_verdict(recorded)}")


def report(ours: list[Load], check: dict[str, Any], ceiling: list[Load] | None,
           client: str) -> bool:
    print(f"\nload generator: {client}; server and client pinned to one core each\n")
    _table(ours + (ceiling or []))
    if ceiling:
        for ours_r, ceil_r in zip(ours, ceiling, strict=True):
            share = ours_r.per_s / ceil_r.per_s if ceil_r.per_s else 0.0
            print(f"c={ours_r.concurrency}: sealflow executions/s are {share:.1%} of the "
                  "ceiling's requests/s")
    recorded, line = _recorded(check)
    print(f"\n{line}")

    top = ours[-1]
    results = [recorded]
    print(f"\ntargets at c={top.concurrency}:")
    rows: list[tuple[str, bool]] = [
        (f"executions/s {top.per_s:.1f} >= {TARGET_EXEC_PER_S:g}", top.per_s >= TARGET_EXEC_PER_S),
        (f"p99 {top.p99_ms:.1f} ms <= {TARGET_P99_MS:g} ms", top.p99_ms <= TARGET_P99_MS),
        (f"errors {top.errors} == 0", top.errors == 0),
    ]
    rss = check["rss_mb"]
    rows.append((f"peak RSS {rss:.0f} MB < {TARGET_RSS_MB:g} MB" if rss is not None
                 else "peak RSS unknown", rss is not None and rss < TARGET_RSS_MB))
    if ceiling:
        share = top.per_s / ceiling[-1].per_s if ceiling[-1].per_s else 0.0
        rows.append((f"{share:.1%} of the ceiling ({ceiling[-1].per_s:.0f} req/s) >= "
                     f"{TARGET_CEILING_SHARE:.0%}", share >= TARGET_CEILING_SHARE))
    for text, ok_ in rows:
        print(f"  {_verdict(ok_)}  {text}")
        results.append(ok_)
    return all(results)


def _change(on: float | None, off: float | None) -> str:
    if on is None or off is None or not off:
        return "?"
    return f"{(on - off) / off:+.1%}"


@dataclass(frozen=True)
class Comparison:
    """A --compare-* mode: the product as it is (variant `on`) against a bench-only launcher
    without one cost (variant `off`, see LAUNCHERS)."""

    what: str  # "encryption": the cost measured
    on: str
    off: str
    legend: str  # what the two variants are, printed above the table
    target: float  # at most this much lower executions/s with the cost than without
    check: Callable[[str, dict[str, Any]], tuple[bool, str]]  # one run: (passed, what)


def _at_rest_check(variant: str, check: dict[str, Any]) -> tuple[bool, str]:
    stored = check["at_rest"] == variant
    return stored, f"at rest {check['at_rest']} -> {_verdict(stored)}"


ENCRYPTION = Comparison(
    "encryption", "sealed", "plain",
    "sealed: sealflow as it is; plain: the same server with sealing at rest replaced by a "
    "JSON/base64 pass-through (bench/_plain_server.py)", TARGET_ENCRYPTION_COST,
    _at_rest_check)


def compare(run: Callable[[str, str], tuple[list[Load], dict[str, Any]]], how: Comparison,
            rounds: int) -> list[tuple[list[Load], dict[str, Any]]]:
    """`rounds` pairs of server runs, run(variant, data directory name) each."""
    runs = []
    for n in range(rounds):  # alternate the order: drift hits both alike
        order = (how.on, how.off) if n % 2 == 0 else (how.off, how.on)
        for variant in order:
            runs.append(run(variant, f"data-{variant}-{n + 1}"))
    return runs


def report_compare(runs: list[tuple[list[Load], dict[str, Any]]], client: str,
                   how: Comparison = ENCRYPTION) -> bool:
    """The cost on (e.g. "sealed") against off ("plain"): every run, then the medians over
    the rounds at the highest concurrency and the verdict."""
    print(f"\nload generator: {client}; server and client pinned to one core each")
    print(f"{how.legend}\n")
    _table([load for loads, _ in runs for load in loads])
    ok = True
    print()
    for loads, check in runs:
        recorded, line = _recorded(check)
        variant = loads[0].target
        passed, what = how.check(variant, check)
        print(f"{variant}: {what}; {line}")
        ok = ok and recorded and passed

    def median(variant: str, value: Any) -> float | None:
        found = [value(loads[-1], check) for loads, check in runs if loads[0].target == variant]
        found = [v for v in found if v is not None]
        return statistics.median(found) if found else None

    top = runs[0][0][-1].concurrency
    figures = [
        ("executions/s", lambda r, c: r.per_s, "{:.1f}"),
        ("p50 ms", lambda r, c: r.p50_ms, "{:.2f}"),
        ("p99 ms", lambda r, c: r.p99_ms, "{:.2f}"),
        ("peak RSS MB", lambda r, c: c["rss_mb"], "{:.0f}"),
        ("CPU ms/req", lambda r, c: r.cpu_ms_per_request, "{:.3f}"),
    ]
    rounds = len(runs) // 2
    print(f"\n{how.what} on vs off at c={top} (median of {rounds} round(s)):")
    print(f"  {'':<13} {'on':>9} {'off':>9} {'change':>8}")
    for name, value, fmt in figures:
        on, off = median(how.on, value), median(how.off, value)
        print(f"  {name:<13} {(fmt.format(on) if on is not None else '?'):>9} "
              f"{(fmt.format(off) if off is not None else '?'):>9} {_change(on, off):>8}")
    # The verdict compares the two runs of each round (back to back, so a shared machine's
    # drift hits both alike) and takes the median over the rounds.
    costs, cpu = [], []
    for n in range(rounds):
        pair = {loads[0].target: loads[-1] for loads, _ in runs[2 * n:2 * n + 2]}
        on_, off_ = pair[how.on], pair[how.off]
        costs.append((off_.per_s - on_.per_s) / off_.per_s if off_.per_s else 1.0)
        if on_.cpu_ms_per_request and off_.cpu_ms_per_request:
            cpu.append(on_.cpu_ms_per_request / off_.cpu_ms_per_request - 1)
    cost = statistics.median(costs)
    within = cost <= how.target
    print(f"\n  executions/s lower with {how.what}, per round: "
          f"{', '.join(f'{c:.1%}' for c in costs)}")
    if cpu:  # what the server itself spent: steadier than rates when others share the CPUs
        print(f"  server CPU per request higher with {how.what}, per round: "
              f"{', '.join(f'{c:+.1%}' for c in cpu)}; median {statistics.median(cpu):+.1%}")
    print(f"  {_verdict(within)}  median {cost:.1%} lower with {how.what} than without "
          f"(target: at most {how.target:.0%})")
    return ok and within


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Webhook benchmark: sealflow serve vs a bare Starlette ceiling over TLS.")
    parser.add_argument("-d", "--duration", type=float, default=20.0,
                        help="seconds of load per concurrency level (default 20)")
    parser.add_argument("-c", "--concurrency", type=int, nargs="+", default=[1, 16],
                        help="concurrency levels, keep-alive connections (default 1 16)")
    parser.add_argument("--warmup", type=float, default=2.0,
                        help="seconds of unreported load before measuring (default 2)")
    parser.add_argument("--client", choices=("auto", "wrk", "python"), default="auto",
                        help="load generator (default: wrk when installed)")
    parser.add_argument("--no-ceiling", action="store_true", help="skip the Starlette ceiling")
    parser.add_argument("--no-pin", action="store_true", help="do not pin CPUs")
    parser.add_argument("--profile", type=Path, default=None,
                        help="py-spy the server during the highest concurrency (.svg flame "
                             "graph, .json speedscope, .txt collapsed stacks)")
    parser.add_argument("--keep", action="store_true",
                        help="keep the temporary directory (database, logs)")
    parser.add_argument("--compare-encryption", action="store_true",
                        help="run the load against sealflow with and without encryption at rest "
                             "(a bench-only pass-through) and print the difference; no ceiling")
    parser.add_argument("--compare-audit", action="store_true",
                        help="the same with and without the audit trail (a bench-only no-op), "
                             "on a workflow that decrypts an authentication per execution")
    parser.add_argument("--no-auth", action="store_true",
                        help="--compare-audit on the default workflow (no authentication)")
    parser.add_argument("--rounds", type=int, default=1,
                        help="--compare-*: rounds of (with, without), order alternating "
                             "(default 1)")
    args = parser.parse_args(argv)
    if args.duration <= 0 or any(c < 1 for c in args.concurrency) or args.rounds < 1:
        parser.error("--duration, --concurrency and --rounds must be positive")
    if args.compare_encryption and args.compare_audit:
        parser.error("--compare-encryption and --compare-audit: one at a time")
    if args.no_auth and not args.compare_audit:
        parser.error("--no-auth goes with --compare-audit")
    args.concurrency = sorted(set(args.concurrency))
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    wrk = shutil.which("wrk")
    if args.client == "wrk" and wrk is None:
        print("wrk is not installed. On Debian/Ubuntu: sudo apt-get install -y wrk "
              "(or run with --client python)", file=sys.stderr)
        return 2
    use_wrk = args.client == "wrk" or (args.client == "auto" and wrk is not None)
    if not use_wrk and args.client == "auto":
        print("note: wrk not found (Debian/Ubuntu: sudo apt-get install -y wrk); using the "
              "asyncio client", file=sys.stderr)

    def _terminate(signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, _terminate)
    signal.signal(signal.SIGINT, _terminate)  # also when started with SIGINT ignored (`&`)
    server_cpu, _client_cpu = pin_cpus(args.no_pin)
    tmp = Path(tempfile.mkdtemp(prefix="sealflow-bench-"))
    procs = Procs()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEALFLOW_")}
    env["SEALFLOW_LOG_LEVEL"] = "warning"
    bench = Bench(args, tmp, procs, server_cpu, use_wrk, env)
    client = "wrk" if use_wrk else "asyncio (python)"
    try:
        if args.compare_encryption:
            passed = report_compare(compare(bench.sealflow, ENCRYPTION, args.rounds), client)
        elif args.compare_audit:
            sys.modules.setdefault("webhook", sys.modules[__name__])  # its `import webhook`
            import _audit_compare

            passed = _audit_compare.main(bench, args, client)
        else:
            ours, check = bench.sealflow()
            ceiling = None if args.no_ceiling else bench.ceiling()
            passed = report(ours, check, ceiling, client)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    finally:
        procs.stop_all()
        if args.keep:
            print(f"kept {tmp}", file=sys.stderr)
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
