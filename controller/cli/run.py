"""`governor run`: the daemon (or one tick with `--once`)."""

from __future__ import annotations

import asyncio
import signal
import sys

import structlog

from controller import __version__
from controller.cli.common import require_token
from controller.cli.plan import render_plan
from controller.clock import WallClock
from controller.cost.ledger import CostTracker
from controller.daemon.exporter import CostCollector, Metrics, MetricsServer, create_app
from controller.daemon.loop import Governor
from controller.daemon.sdnotify import Notifier
from controller.daemon.store import StateStore
from controller.platform.client import make_client
from controller.settings import Settings

__all__ = ["run_daemon"]

log = structlog.get_logger("governor.cli")


async def run_daemon(settings: Settings, *, once: bool) -> int:
    require_token(settings)
    clock = WallClock()
    metrics = Metrics()
    store = StateStore(settings.state.path)
    cost = CostTracker.open(settings) if settings.ledger.enabled else None
    if cost is not None:
        metrics.registry.register(CostCollector(lambda: cost.latest))
    log.info(
        "starting", version=__version__, dry_run=settings.loop.dry_run, config=settings.redacted()
    )
    if settings.loop.dry_run:
        log.warning("dry_run", detail="decisions are logged; no endpoint will be changed")
    server: MetricsServer | None = None
    try:
        async with make_client(settings, on_call=metrics.record_call) as client:
            if cost is not None and settings.pricing.refresh_from_api:
                await cost.refresh_prices(client, settings.namespaces)
            gov = Governor(
                settings,
                clock=clock,
                client=client,
                metrics=metrics,
                store=store,
                cost=cost,
            )
            if once:
                report = await gov.tick()
                render_plan(report, out=sys.stdout)
                return 0
            if settings.server.enabled:
                server = MetricsServer(
                    create_app(metrics, gov.health, clock),
                    host=settings.server.host,
                    port=settings.server.port,
                )
                await server.start()
                log.info("listening", address=f"{settings.server.host}:{server.port}")
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, stop.set)
            await gov.run(stop, notifier=Notifier())
            log.info("stopped", ticks=gov.health.ticks)
            return 0
    finally:
        if server is not None:
            await server.stop()
        store.close()
        if cost is not None:
            cost.close()
