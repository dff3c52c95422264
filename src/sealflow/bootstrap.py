"""The only place that wires cells, stores, connectors, the engine and the queue together.
Everything else receives what it needs from here."""

from __future__ import annotations

import asyncio
import functools
import logging
from dataclasses import dataclass, field

import httpx

from sealflow.audit.signing import Signer, key_path
from sealflow.audit.trail import AuditTrail
from sealflow.clock import Clock, SystemClock
from sealflow.config import Settings
from sealflow.connectors.registry import ConnectorRegistry
from sealflow.connectors.ssrf import build_client
from sealflow.core.limits import Limits
from sealflow.core.secrets import Secret, reveal_all
from sealflow.db.engine import make_engine
from sealflow.db.migrate import upgrade
from sealflow.engine.interceptors import Chain, CredentialProvider, default_interceptors
from sealflow.engine.notify import ResponseHub
from sealflow.engine.runner import PlatformRetry, Runner
from sealflow.engine.triggers import ScheduleTicker
from sealflow.monitoring.background import Monitor, build_monitor
from sealflow.queue.embedded import EmbeddedQueue
from sealflow.regions.cells import Cell, Cells
from sealflow.services.audit_checkpoints import checkpoint_audit
from sealflow.services.backups import BackupJob
from sealflow.services.credentials import StoredCredentials
from sealflow.services.expired_rows import sweep_expired
from sealflow.services.purge import LogFiles, Purger
from sealflow.services.storage_lifetimes import sweep_ended_executions
from sealflow.services.subject_erasure_log import reapply_all as reapply_erasures
from sealflow.services.workflows import DefinitionCache
from sealflow.vault.errors import KeyProviderError
from sealflow.vault.keystore import KeyStore, upgrade_keystore
from sealflow.vault.providers.base import KeyProvider
from sealflow.vault.providers.local_file import LocalFileProvider
from sealflow.vault.providers.transit import TransitProvider
from sealflow.vault.tombstone_log import TombstoneLog, default_tombstone_log
from sealflow.vault.vault import Vault

log = logging.getLogger("sealflow")


def build_provider(settings: Settings, region: str) -> KeyProvider:
    """The region's KEK provider. LocalFileProvider raises KeyFileInsecure when others can
    read the key file (sealflow refuses to start)."""
    if settings.keys.provider == "transit":
        t = settings.keys.transit
        if not t.address:
            raise KeyProviderError("keys.transit.address is required with provider transit")
        return TransitProvider(
            t.address,
            Secret(t.token.get_secret_value(), "transit token"),
            settings.transit_key_name(region),
            mount=t.mount,
            timeout_s=t.timeout_s,
            verify=str(t.ca_bundle) if t.ca_bundle else True,
            namespace=t.namespace,
        )
    return LocalFileProvider(settings.key_file(region))


def build_cell(settings: Settings, region: str, clock: Clock) -> Cell:
    provider = build_provider(settings, region)
    keystore_engine = make_engine(settings.keystore_url(region))
    # The tombstone log lives beside the key store but outside its backups (vault.tombstone_log).
    keystore = KeyStore(
        keystore_engine, clock, TombstoneLog(default_tombstone_log(settings.data_dir, region))
    )
    vault = Vault(
        region,
        keystore,
        provider,
        clock,
        cache_size=settings.keys.cache_size,
        cache_ttl_s=settings.keys.cache_ttl_s,
    )
    engine = make_engine(settings.database_url(region))
    audit_key = key_path(settings.data_dir, region)
    made = not audit_key.exists()
    trail = AuditTrail(region, Signer.load(audit_key, create=True), key_created=made)
    return Cell(region, engine, vault, keystore_engine, provider, keystore, trail)


def build_cells(settings: Settings, clock: Clock | None = None) -> Cells:
    clock = clock or SystemClock()
    cells: dict[str, Cell] = {}
    try:
        for region in settings.regions:
            cells[region] = build_cell(settings, region, clock)
    except BaseException:
        Cells(cells).dispose()
        raise
    return Cells(cells)


def migrate_all(cells: Cells, clock: Clock | None = None) -> None:
    for region in cells:
        cell = cells[region]
        upgrade(cell.engine)
        upgrade_keystore(cell.keystore_engine)
        with cell.write() as conn:
            cell.audit.record_key_creation(conn, (clock or SystemClock()).now())
        # A key store restored from before a shred gets its tombstones back and loses the
        # revived keysets, before anything can read them.
        dropped = cell.keystore.sync_tombstone_log()
        if dropped:
            log.warning("region %s: dropped %d keysets of shredded accounts (a restored key "
                        "store?)", region, dropped)
        ensure_key = getattr(cell.provider, "ensure_key", None)  # transit: create the key
        if ensure_key is not None:
            ensure_key()


class _OutboundClient:
    """One shared outbound client per event loop (connection reuse), built lazily."""

    def __init__(self, settings: Settings, limits: Limits) -> None:
        self._settings = settings
        self._limits = limits
        self._client: httpx.AsyncClient | None = None

    def __call__(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = build_client(
                allow=self._settings.ssrf_allow,
                ca_bundle=str(self._settings.outbound_ca_bundle)
                if self._settings.outbound_ca_bundle
                else None,
                timeout=self._limits.http_timeout_max_s,
            )
        return self._client

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None


@dataclass
class Platform:
    settings: Settings
    cells: Cells
    clock: Clock
    limits: Limits
    registry: ConnectorRegistry
    definitions: DefinitionCache
    hub: ResponseHub
    runner: Runner
    queue: EmbeddedQueue
    ticker: ScheduleTicker
    outbound: _OutboundClient
    credentials: StoredCredentials
    _started: bool = field(default=False)
    # A3/A4: SIEM delivery and alert evaluation (monitoring.background), run with the workers.
    monitor: Monitor | None = None
    purger: Purger | None = None  # D3: stopped with the ticker (its runs are threads)

    async def start(self, *, workers: bool = True) -> None:
        if workers:
            await self.queue.start()
            await self.ticker.start()
            if self.monitor is not None:
                await self.monitor.start()
        self._started = workers

    async def stop(self) -> None:
        if self._started:
            if self.monitor is not None:
                await self.monitor.stop()
            await self.ticker.stop()
            if self.purger is not None:
                await asyncio.to_thread(self.purger.close)
            await self.queue.stop()
        await self.outbound.aclose()


def build_platform(
    settings: Settings,
    *,
    clock: Clock | None = None,
    registry: ConnectorRegistry | None = None,
    credentials: CredentialProvider | None = None,
    migrate: bool = True,
) -> Platform:
    clock = clock or SystemClock()
    limits = settings.core_limits()
    cells = build_cells(settings, clock)
    if migrate:
        migrate_all(cells, clock)
        # Members erased since a restored backup was taken are erased again (D5, D6).
        reapply_erasures(settings.data_dir, cells, clock)
    registry = registry or ConnectorRegistry.discover()
    definitions = DefinitionCache(registry, limits)
    hub = ResponseHub()
    outbound = _OutboundClient(settings, limits)
    stored = StoredCredentials(cells, clock, outbound)
    credentials = credentials or stored
    queue_ref: list[EmbeddedQueue] = []

    def dispatch(region: str, execution_id: str) -> None:
        queue_ref[0].submit(region, execution_id)

    runner = Runner(
        cells=cells,
        registry=registry,
        definitions=definitions,
        chain=Chain(default_interceptors(limits, credentials), _call_connector),
        limits=limits,
        clock=clock,
        hub=hub,
        http=outbound,
        lease_s=settings.worker.lease_s,
        platform_retry=PlatformRetry(
            attempts=settings.worker.platform_retries,
            min_s=settings.worker.platform_retry_min_s,
            max_s=settings.worker.platform_retry_max_s,
        ),
        dispatch=dispatch,
    )
    queue = EmbeddedQueue(cells=cells, runner=runner, settings=settings.worker, clock=clock)
    queue_ref.append(queue)
    # D3: the retention purge, each cell's run in a thread of its own (services.purge); the
    # server log files are purged with the first served region's run.
    purger = Purger(clock, log_files=LogFiles(settings.log_dir(), settings.log_files.keep_days),
                    log_region=next(iter(cells), None))
    ticker = ScheduleTicker(cells=cells, clock=clock, definitions=definitions, submit=dispatch,
                            housekeeping=[sweep_ended_executions,
                                          functools.partial(sweep_expired, clock=clock),
                                          functools.partial(checkpoint_audit, clock=clock),
                                          BackupJob(settings, clock),
                                          purger])
    return Platform(
        settings=settings,
        cells=cells,
        clock=clock,
        limits=limits,
        registry=registry,
        definitions=definitions,
        hub=hub,
        runner=runner,
        queue=queue,
        ticker=ticker,
        outbound=outbound,
        credentials=stored,
        purger=purger,
        monitor=build_monitor(cells, clock, settings),
    )


async def _call_connector(call):  # type: ignore[no-untyped-def]
    """The end of the chain: the connector's own handler."""
    if call.credential is not None:
        call.ctx.credential = call.credential
        # `$.auth` values resolved by the interceptor are Secret objects until here.
        return await call.operation.handler(reveal_all(call.input), call.ctx)
    return await call.operation.handler(call.input, call.ctx)


__all__ = ["Platform", "asyncio", "build_cells", "build_platform", "migrate_all"]
