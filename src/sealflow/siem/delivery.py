"""Delivering each audit sink's records (a background task of the server; never inside a
request, never blocking the platform).

Every `siem.interval_s` each served cell's sinks that are due are served in turn: the
account's records after the sink's cursor (seq order, `batch_size` at a time, through the
(account, seq) index) are sent; only when the receiver accepted a batch does the cursor
advance, by compare-and-set, so delivery is at-least-once and in order, and a receiver that
was down catches up from its cursor. A failed batch is retried after retry_min_s, doubling
up to retry_max_s (the sink shows `failures`, `next_attempt_at` and `last_error`).

Records of other accounts, and platform records (no account), never reach a sink: the query
is by the sink's account. Two nodes may both send a batch before one of them advances the
cursor: receivers dedupe by the record's seq (in the body and, for syslog, in the
structured data)."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import or_, select, update

from sealflow.audit.records import format_time
from sealflow.clock import Clock
from sealflow.config import Settings
from sealflow.connectors.ssrf import AddressPolicy, build_client, build_ssl_context
from sealflow.core.errors import NotFound, SealflowError
from sealflow.db.sealed import open_
from sealflow.db.tables import audit_records
from sealflow.db.tables_monitoring import audit_sinks
from sealflow.monitoring.metrics import metrics
from sealflow.periodic import Periodic
from sealflow.regions.cells import Cell, Cells
from sealflow.siem import formats, sinks
from sealflow.siem.transport import DeliveryFailed, post_signed, send_syslog

log = logging.getLogger("sealflow.siem")
MAX_BATCHES_PER_PASS = 20  # then the next sink gets its turn


@dataclass(frozen=True)
class TestResult:
    ok: bool
    code: str | None = None
    reason: str | None = None


class SiemDelivery:
    def __init__(self, cells: Cells, clock: Clock, settings: Settings) -> None:
        self.cells = cells
        self.clock = clock
        self.settings = settings.siem
        self._allow = settings.ssrf_allow
        self._ca = str(settings.outbound_ca_bundle) if settings.outbound_ca_bundle else None
        self.policy = AddressPolicy(settings.ssrf_allow)
        self._context: Any = None
        self._client: httpx.AsyncClient | None = None
        self._loop = Periodic("audit sink delivery", self.run_once, self.settings.interval_s,
                              log)

    # ------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        if self.settings.enabled:
            self._loop.start()

    async def stop(self) -> None:
        await self._loop.stop()
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = build_client(allow=self._allow, ca_bundle=self._ca,
                                        timeout=self.settings.timeout_s)
        return self._client

    def _tls(self) -> Any:
        if self._context is None:
            self._context = build_ssl_context(self._ca)
        return self._context

    # ------------------------------------------------------------ delivery
    async def run_once(self) -> int:
        """One pass over every due sink of every cell; returns the records delivered."""
        delivered = 0
        for region in self.cells:
            cell = self.cells[region]
            now = self.clock.now()
            with cell.read() as conn:
                due = conn.execute(select(audit_sinks).where(or_(
                    audit_sinks.c.next_attempt_at.is_(None),
                    audit_sinks.c.next_attempt_at <= now)).order_by(audit_sinks.c.id)).all()
            for sink in due:
                delivered += await self._serve(cell, sink)
        return delivered

    async def _serve(self, cell: Cell, sink: Any) -> int:
        cursor, sent = int(sink.cursor_seq), 0
        for _ in range(MAX_BATCHES_PER_PASS):
            records = self._batch(cell, sink.account_id, cursor)
            if not records:
                break
            try:
                await self._send(cell, sink, records)
            except DeliveryFailed as exc:
                metrics().siem_failures.labels(sink.kind).inc()
                self._failed(cell, sink, exc.code, exc.reason)
                break
            except SealflowError as exc:  # the key could not be opened (shredded, altered)
                metrics().siem_failures.labels(sink.kind).inc()
                self._failed(cell, sink, exc.code, "the sink's key could not be read")
                break
            last = records[-1].seq
            if not self._advance(cell, sink.id, cursor, last, len(records)):
                break  # deleted, or another node moved it: its next pass goes on
            metrics().siem_records.labels(sink.kind).inc(len(records))
            cursor, sent = last, sent + len(records)
            if len(records) < self.settings.batch_size:
                break
        return sent

    def _batch(self, cell: Cell, account_id: str, after: int) -> list[formats.Record]:
        with cell.read() as conn:
            rows = conn.execute(
                select(audit_records.c.seq, audit_records.c.record)
                .where(audit_records.c.account == account_id, audit_records.c.seq > after)
                .order_by(audit_records.c.seq).limit(self.settings.batch_size)).all()
        out = []
        for seq, text in rows:
            body = json.loads(text)
            out.append(formats.Record(seq=int(seq), region=str(body.get("region", cell.region)),
                                      action=str(body.get("action", "-")),
                                      at=str(body.get("at", "-")), body=text))
        return out

    async def _send(self, cell: Cell, sink: Any, records: list[formats.Record]) -> None:
        config = sinks.open_config(cell, sink)
        timeout = self.settings.timeout_s
        if sink.kind == "webhook":
            secret = open_(cell.vault, sink.account_id, "audit_sinks", sink.id, "secret",
                           sink.secret)
            await post_signed(
                self._http(), config["url"], str(secret).encode(), formats.json_lines(records),
                timestamp=int(self.clock.now().timestamp()), timeout_s=timeout,
                content_type="application/x-ndjson",
                headers={"X-Sealflow-Sink": sink.id,
                         "X-Sealflow-Seq": f"{records[0].seq}-{records[-1].seq}"})
        else:
            await send_syslog(self.policy, self._tls(), config["host"], int(config["port"]),
                              formats.syslog_frames(records), timeout_s=timeout)

    def _advance(self, cell: Cell, sink_id: str, old: int, new: int, count: int) -> bool:
        with cell.write() as conn:
            return bool(conn.execute(
                update(audit_sinks)
                .where(audit_sinks.c.id == sink_id, audit_sinks.c.cursor_seq == old)
                .values(cursor_seq=new, delivered=audit_sinks.c.delivered + count, failures=0,
                        next_attempt_at=None, last_success_at=self.clock.now(),
                        last_error=None)).rowcount)

    def backoff(self, failures: int) -> timedelta:
        """The wait after the `failures`-th failure in a row."""
        wait = self.settings.retry_min_s * 2 ** min(max(failures - 1, 0), 30)
        return timedelta(seconds=min(wait, self.settings.retry_max_s))

    def _failed(self, cell: Cell, sink: Any, code: str, reason: str) -> None:
        failures = int(sink.failures) + 1
        now = self.clock.now()
        log.warning("audit sink %s (%s) delivery failed: %s", sink.id, sink.kind, code)
        with cell.write() as conn:
            conn.execute(update(audit_sinks).where(audit_sinks.c.id == sink.id).values(
                failures=failures, next_attempt_at=now + self.backoff(failures),
                last_error=f"{code}: {reason}"[:300]))

    # ------------------------------------------------------------ test
    async def test(self, cell: Cell, account_id: str, sink_id: str) -> TestResult:
        """Send one test message (not an audit record) to the sink now; the cursor stays."""
        with cell.read() as conn:
            sink = conn.execute(select(audit_sinks).where(
                audit_sinks.c.id == sink_id, audit_sinks.c.account_id == account_id)).first()
        if sink is None:
            raise NotFound(f"audit sink {sink_id} not found")
        now: datetime = self.clock.now()
        body = json.dumps({"type": "sealflow.audit_sink.test", "sink": sink_id,
                           "at": format_time(now)}, separators=(",", ":"), sort_keys=True)
        record = formats.Record(seq=0, region=cell.region, action="sealflow.test",
                                at=format_time(now), body=body)
        try:
            await self._send(cell, sink, [record])
        except DeliveryFailed as exc:
            return TestResult(False, exc.code, exc.reason)
        return TestResult(True)
