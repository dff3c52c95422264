"""Evaluating the alert rules: a background task of the server every `alerts.interval_s`
(never inside a request). Each pass, per served cell: read the watched audit records since
the last pass (login failures, staff access), check the new part of the audit chain, read
the purge backlog and the failure rate; once per process: the decryption-failure delta.
Each alert that `alerts.state.claim` lets through (once per rule and key per
`dedup_window_s`, across nodes) goes to every sink (alerts.sinks, rate-limited per sink).

The database work of a pass, a full `audit verify` and SMTP run in threads, so the event
loop (and the requests and executions on it) never waits for them."""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta

from sealflow.alerts import rules, state
from sealflow.alerts.sinks import Alert, Dispatcher
from sealflow.audit.verify import verify
from sealflow.clock import Clock
from sealflow.config import Settings
from sealflow.monitoring.metrics import metrics
from sealflow.periodic import Periodic
from sealflow.regions.cells import Cell, Cells

log = logging.getLogger("sealflow.alerts")
CHAIN_CURSOR = "alerts.audit_chain"
STAFF_CURSOR = "alerts.staff_access"


class AlertEvaluator:
    def __init__(self, cells: Cells, clock: Clock, settings: Settings,
                 dispatcher: Dispatcher | None = None) -> None:
        self.cells = cells
        self.clock = clock
        self.settings = settings.alerts
        self.rules = settings.alerts.rules
        self.dispatcher = dispatcher or Dispatcher(
            settings.alerts.sinks, clock=clock, rate_per_hour=settings.alerts.rate_per_hour,
            ssrf_allow=settings.ssrf_allow,
            ca_bundle=str(settings.outbound_ca_bundle) if settings.outbound_ca_bundle else None)
        self._scan: dict[str, int] = {}  # region -> last seq read for brute force
        self._brute: dict[str, rules.BruteForce] = {}
        self._decrypt_seen: float | None = None
        self._last_full_verify: dict[str, float] = {}
        self._loop = Periodic("alert evaluation", self.run_once, self.settings.interval_s, log)

    async def start(self) -> None:
        if self.settings.enabled:
            self._loop.start()

    async def stop(self) -> None:
        await self._loop.stop()
        await self.dispatcher.aclose()

    async def run_once(self) -> list[Alert]:
        """Evaluate every rule once; returns the alerts that fired (after dedup)."""
        fired: list[Alert] = []
        first: Cell | None = None
        for region in self.cells:
            cell = self.cells[region]
            first = first or cell
            try:
                candidates = await self._cell_alerts(cell)
            except Exception:
                log.exception("alert rules failed in region %s", region)
                continue
            fired += await self._fire(cell, candidates)
        if first is not None:
            fired += await self._fire(first, self._decryption_alerts())
        return fired

    async def _fire(self, cell: Cell, candidates: list[Alert]) -> list[Alert]:
        window = timedelta(seconds=self.settings.dedup_window_s)
        fired = []
        for alert in candidates:
            with cell.write() as conn:
                won = state.claim(conn, alert.rule, alert.key, alert.at, window)
            if not won:
                continue
            metrics().alerts.labels(alert.rule).inc()
            await self.dispatcher.send(alert)
            fired.append(alert)
        return fired

    def _decryption_alerts(self) -> list[Alert]:
        total = metrics().decryption_failure_total()
        seen, self._decrypt_seen = self._decrypt_seen, total
        if seen is None or total - seen < self.rules.decryption_failures:
            return []
        delta = int(total - seen)
        return [Alert("decryption_failures", "process", None,
                      f"{delta} decryption failures since the last check", self.clock.now(),
                      {"failures": delta, "threshold": self.rules.decryption_failures})]

    async def _cell_alerts(self, cell: Cell) -> list[Alert]:
        # In a thread: the failure-rate count scans the recently finished executions (about
        # 0.2 s over 100,000 rows), which must not stall the event loop.
        out, check = await asyncio.to_thread(self._read_cell, cell)
        if check is not None:
            problems = check.problems + await self._full_verify(cell)
            if problems:
                out.append(Alert("audit_chain", cell.region, cell.region,
                                 f"the audit chain of region {cell.region} is broken: "
                                 f"{problems[0]}", self.clock.now(), {"problems": problems[:10]}))
        return out

    def _read_cell(self, cell: Cell) -> tuple[list[Alert], rules.ChainCheck | None]:
        now = self.clock.now()
        region = cell.region
        out: list[Alert] = []
        brute = self._brute.setdefault(region, rules.BruteForce(self.rules))
        check: rules.ChainCheck | None = None
        with cell.read() as conn:  # reads first: the write lock only for the cursors
            if region not in self._scan:
                self._scan[region] = rules.first_seq_since(conn, now - brute.window)
            seen = rules.watched_records(conn, self._scan[region])
            staff_from = (state.read_cursor(conn, STAFF_CURSOR) or (0, None))[0]
            out += rules.cell_metrics_alerts(conn, self.rules, region, now)
            if self.rules.audit_chain:
                seq, hash_ = state.read_cursor(conn, CHAIN_CURSOR) or (0, None)
                check = rules.check_chain(conn, region, seq, hash_)
        if seen:
            self._scan[region] = seen[-1].seq
        for s in seen:
            if s.action == "login.failed":
                brute.add(s)
        out += brute.over(now, region)
        if self.rules.staff_access:
            out += rules.staff_alerts([s for s in seen if s.seq > staff_from], region, now)
        with cell.write() as conn:
            if seen and self.rules.staff_access:
                state.write_cursor(conn, STAFF_CURSOR, max(staff_from, seen[-1].seq), None, now)
            if check is not None:
                state.write_cursor(conn, CHAIN_CURSOR, check.seq, check.hash, now)
        return out, check

    async def _full_verify(self, cell: Cell) -> list[str]:
        """`audit verify` of the whole log, at most every audit_full_verify_every_s (in a
        thread: it reads every record)."""
        now = self.clock.monotonic()
        last = self._last_full_verify.get(cell.region)
        if last is not None and now - last < self.rules.audit_full_verify_every_s:
            return []
        self._last_full_verify[cell.region] = now

        def run() -> list[str]:
            with cell.read() as conn:
                report = verify(conn, cell.region, cell.audit.signer.verifier)
            return [str(p) for p in report.problems]

        return await asyncio.to_thread(run)
