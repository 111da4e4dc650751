"""`governor run`: the daemon (or one tick with `--once`)."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
import sys
from collections.abc import Callable
from pathlib import Path

import structlog

from controller import __version__
from controller.cli.common import json_dump, require_token
from controller.cli.plan import Listing, plan_json, render_plan
from controller.clock import Clock, WallClock
from controller.cost.ledger import CostTracker
from controller.daemon.election import LeaseElector, lease_config, wire_election
from controller.daemon.exporter import CostCollector, Metrics, MetricsServer, create_app
from controller.daemon.lock import StateLock
from controller.daemon.loop import Governor
from controller.daemon.reload import ConfigReloader, config_digest
from controller.daemon.sdnotify import Notifier
from controller.daemon.store import StateStore
from controller.errors import ConfigError
from controller.logs import configure_logging
from controller.platform.client import make_client
from controller.platform.hub import HubClient
from controller.settings import Settings

__all__ = ["run_daemon"]

log = structlog.get_logger("governor.cli")


async def run_daemon(
    settings: Settings,
    *,
    once: bool,
    config: str | Path | None = None,
    reload: Callable[[], Settings] | None = None,
    output: str = "table",
    clock: Clock | None = None,
) -> int:
    """`config` is the file `settings` came from and `reload()` rebuilds them from it exactly as
    the command line did (environment and flags included): SIGHUP, or a changed file, reloads.
    `output` is how `--once` prints its tick: the plan table, or `json` (docs/output.md).
    `clock` is the wall clock unless a sped-up one is handed in (`--virtual-clock`)."""
    require_token(settings)
    lock = StateLock.for_files(
        settings.state.path, settings.ledger.path if settings.ledger.enabled else None
    )
    lock.acquire()  # StateLockedError (exit 2) if another Governor uses this state
    try:
        return await _run_locked(
            settings,
            once=once,
            config=Path(config) if config else None,
            reload=reload,
            output=output,
            clock=clock or WallClock(),
        )
    finally:
        lock.release()


def _relog(settings: Settings) -> None:
    """A reloaded `log` section in force (the token, which a reload cannot change, still masked)."""
    secret = settings.token.get_secret_value() if settings.token else None
    configure_logging(fmt=settings.log.format, level=settings.log.level, secret=secret)


async def _run_locked(
    settings: Settings,
    *,
    once: bool,
    config: Path | None = None,
    reload: Callable[[], Settings] | None = None,
    output: str = "table",
    clock: Clock,
) -> int:
    metrics = Metrics()
    # Read before anything slow, so a change made while starting is seen as a change.
    digest = config_digest(config) if config is not None else None
    hup = asyncio.Event()
    if not once:
        # At once: SIGHUP's default action ends the process, and systemd's ExecReload may
        # send it while the first tick runs. The reloader takes the request over later.
        asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, hup.set)
    elector = None
    if settings.election.enabled and not once:
        elector = LeaseElector(lease_config(settings.election), clock=clock)
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
    listing = Listing()  # what each tick listed: the hints and budget coverage of --once
    tasks: list[asyncio.Task[None]] = []
    lease_stop = asyncio.Event()
    hub: HubClient | None = None
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
                leading=elector.is_leader if elector is not None else None,
                observers=[listing] if once else [],
            )
            if settings.autopilot.enabled:
                from controller.backtest.autopilot import plan_endpoint
                from controller.daemon.autopilot import AutopilotRunner

                gov.autopilot = AutopilotRunner(
                    settings.autopilot, store=store, planner=plan_endpoint
                )
                gov.overrides.update(gov.autopilot.overrides())
            if store is not None:
                from functools import partial

                from controller.backtest.rightsize import evaluate_endpoint
                from controller.cost.pricing import PriceBook
                from controller.daemon.rightsize import RightsizeRunner
                from controller.platform.hub import make_hub_client

                hub = make_hub_client(settings)
                gov.rightsize = RightsizeRunner(
                    store=store,
                    evaluator=partial(
                        evaluate_endpoint, prices=PriceBook(settings.pricing.overrides)
                    ),
                    hub=hub,
                )
            if once:
                report = await gov.tick()
                if output == "json":
                    doc = plan_json(
                        report, settings=settings, listed=listing.endpoints, windows=gov.windows
                    )
                    json_dump(doc, sys.stdout)
                else:
                    render_plan(
                        report,
                        out=sys.stdout,
                        windows=gov.windows,
                        settings=settings,
                        listed=listing.endpoints,
                    )
                return 1 if report.blind else 0
            stop = asyncio.Event()
            if elector is not None:
                wire_election(gov, elector, metrics)
                # The Lease is released after the loop's last tick, whose watermark it carries.
                tasks.append(asyncio.create_task(elector.run(lease_stop), name="governor-election"))
            else:
                metrics.set_leader(settings.election.identity or socket.gethostname(), True, None)
            if settings.server.enabled:
                server = MetricsServer(
                    create_app(metrics, gov.health, clock),
                    host=settings.server.host,
                    port=settings.server.port,
                )
                try:
                    await server.start()
                except OSError as exc:
                    raise ConfigError(f"server.listen: {exc}") from None
                log.info("listening", address=f"{settings.server.host}:{server.port}")
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, stop.set)

            def apply(new: Settings) -> None:
                gov.reconfigure(new)
                _relog(new)

            reloader = ConfigReloader(
                config,
                load=reload or (lambda: settings),
                apply=apply,
                running=settings,
                metrics=metrics,
                clock=clock,
                digest=digest,
            )
            if hup.is_set():
                reloader.request()
            loop.add_signal_handler(signal.SIGHUP, reloader.request)
            if elector is not None:
                # A tick before the first Lease round would run as a standby, and a standby's
                # ledger steps over the interval as if another replica had billed it: after a
                # restart the whole downtime went unbilled (issue 18's fault soak).
                await elector.settled()
            await gov.run(stop, notifier=Notifier(), reload=reloader.poll)
            log.info("stopped", ticks=gov.health.ticks)
            return 0
    finally:
        if not once:
            asyncio.get_running_loop().remove_signal_handler(signal.SIGHUP)
        lease_stop.set()
        for t in tasks:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(t, 10)
        if elector is not None:
            await elector.aclose()
        if server is not None:
            await server.stop()
        if hub is not None:
            await hub.aclose()
        store.close()
        if cost is not None:
            cost.close()
