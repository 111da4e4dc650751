"""`governor` command line: run, plan, cost, demo, emulator, check-config, simulate.

Exit codes: 0 success, 1 runtime failure, 2 bad configuration or usage.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from collections.abc import Sequence
from typing import Any, TextIO

import structlog

from controller import __version__
from controller.client import EndpointsClient
from controller.clock import WallClock
from controller.errors import ConfigError
from controller.exporter import CostCollector, Metrics, MetricsServer, create_app
from controller.ledger import CostTracker
from controller.logs import configure_logging
from controller.loop import Governor, TickReport
from controller.sdnotify import Notifier
from controller.settings import Settings, load_settings
from controller.store import StateStore

__all__ = ["main", "make_client", "render_plan"]

log = structlog.get_logger("governor.cli")


def make_client(
    settings: Settings, *, metrics: Metrics | None = None, **kw: Any
) -> EndpointsClient:
    a = settings.api
    token = settings.token.get_secret_value() if settings.token else None
    return EndpointsClient(
        a.base_url,
        token,
        timeout_s=a.timeout_s,
        max_attempts=a.max_attempts,
        backoff_initial_s=a.backoff_initial_s,
        backoff_max_s=a.backoff_max_s,
        max_connections=a.max_connections,
        on_call=metrics.record_call if metrics is not None else None,
        **kw,
    )


def _require_token(settings: Settings) -> None:
    if settings.token is None:
        raise ConfigError(
            "no API token: set HF_TOKEN or api.token_file (a fine-grained token with "
            "'Inference Endpoints: manage' permission)"
        )


def render_plan(report: TickReport, *, out: TextIO) -> None:
    """The `governor plan` table: what Governor would do for each managed endpoint, and why."""
    header = ("ENDPOINT", "STATE", "CURRENT", "DESIRED", "ACTION", "POLICY", "REASON")
    rows = [header]
    for e in report.entries:
        d = e.decision
        rows.append(
            (
                d.key,
                e.endpoint.state.value,
                str(d.current if d.current is not None else "-"),
                str(d.desired if d.desired is not None else "-"),
                d.action.value,
                d.policy or "-",
                d.reason.value,
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    for r in rows:
        out.write("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() + "\n")
    if report.entries:
        out.write("\nwhy:\n")
        for e in report.entries:
            out.write(f"  {e.decision.key}: {e.decision.message}\n")
            if e.outcome is not None:
                out.write(f"    -> {e.outcome.result.value}: {e.outcome.detail}\n")
    for ns, err in report.namespace_errors.items():
        out.write(f"\nnamespace {ns}: listing failed: {err}\n")
    for key, err in report.feed_errors.items():
        out.write(f"feed {key}: {err}\n")
    if report.unmanaged:
        out.write(f"\nnot managed (never touched): {', '.join(sorted(report.unmanaged))}\n")
    if not report.entries and not report.namespace_errors:
        out.write("no managed endpoints matched the `manage` selection\n")


async def _run(settings: Settings, *, once: bool) -> int:
    _require_token(settings)
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
        async with make_client(settings, metrics=metrics) as client:
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


def _dry_run(settings: Settings) -> Settings:
    """A copy of `settings` that changes nothing (the token is carried over by the copy)."""
    return settings.model_copy(update={"loop": settings.loop.model_copy(update={"dry_run": True})})


async def _plan(settings: Settings, *, out: TextIO) -> int:
    _require_token(settings)
    plan_settings = _dry_run(settings)
    async with make_client(plan_settings) as client:
        gov = Governor(plan_settings, clock=WallClock(), client=client, store=None)
        report = await gov.tick()
    render_plan(report, out=out)
    return 0


async def _cost(settings: Settings, *, out: TextIO) -> int:
    from controller.costcli import run_cost

    _require_token(settings)
    async with make_client(settings) as client:
        return await run_cost(settings, out=out, client=client, now=WallClock().now())


def _check_config(path: str, out: TextIO) -> int:
    settings = load_settings(path)
    n_rules = len(settings.endpoints)
    out.write(
        f"{path}: OK ({len(settings.namespaces)} namespace(s), {n_rules} endpoint rule(s), "
        f"token {'found' if settings.token else 'not set'})\n"
    )
    return 0


def _emulator(args: argparse.Namespace) -> int:
    """Serve the demo world (namespace demo-org) so a config can be tried against it."""
    from controller.clock import ScaledClock
    from controller.emulator.scenario import build_platform, default_scenario, load_scenario
    from controller.emulator.server import serve_forever

    configure_logging(fmt="auto", level="info")
    spec = load_scenario(args.scenario, token=args.token) if args.scenario else default_scenario()
    clock = ScaledClock(speed=args.speed)
    platform = build_platform(spec, start=clock.now(), seed=args.seed)
    tokens = {args.token: spec.user, spec.human_token: spec.human}
    print(
        f"emulator: http://{args.host}:{args.port}/v2 namespace {spec.namespace}, "
        f"{len(spec.endpoints)} endpoints, {args.speed:g}x time; Bearer token: the --token value",
        file=sys.stderr,
    )
    try:
        asyncio.run(
            serve_forever(
                host=args.host,
                port=args.port,
                token=args.token,
                tokens=tokens,
                clock=clock,
                platform=platform,
            )
        )
    except OSError as exc:
        print(f"governor: {exc}", file=sys.stderr)
        return 1
    return 0


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="governor", description=__doc__.splitlines()[0])
    p.add_argument("--version", action="version", version=f"governor {__version__}")
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="run the controller daemon")
    r.add_argument("-c", "--config", help="YAML config file")
    r.add_argument("--dry-run", action="store_true", help="decide and log, change nothing")
    r.add_argument("--once", action="store_true", help="one tick, print the plan, exit")
    pl = sub.add_parser(
        "plan", help="one tick: show what Governor would do and why; acts on nothing"
    )
    pl.add_argument("-c", "--config", help="YAML config file")
    d = sub.add_parser("demo", help="watch Governor scale emulated endpoints (no account needed)")
    d.add_argument("--speed", type=float, default=60.0, help="virtual seconds per real second")
    d.add_argument("--minutes", type=float, default=90.0, help="virtual minutes to run")
    d.add_argument("--seed", type=int, default=7)
    d.add_argument("--dry-run", action="store_true")
    e = sub.add_parser("emulator", help="serve the Endpoints API emulator on loopback")
    e.add_argument("--host", default="127.0.0.1")
    e.add_argument("--port", type=int, default=8081)
    e.add_argument("--token", default="emulator-token", help="the Bearer token it accepts")
    e.add_argument("--speed", type=float, default=1.0, help="virtual seconds per real second")
    e.add_argument("--seed", type=int, default=7)
    e.add_argument("--scenario", help="YAML file of endpoints and loads (default: the demo's)")
    co = sub.add_parser(
        "cost", help="spend per endpoint and group: rate, today, month, forecast, budget"
    )
    co.add_argument("-c", "--config", help="YAML config file")
    c = sub.add_parser("check-config", help="validate a config file and report every problem")
    c.add_argument("file")
    from controller.simcli import add_simulate_parser

    add_simulate_parser(sub)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.cmd == "check-config":
            return _check_config(args.file, sys.stdout)
        if args.cmd == "demo":
            from controller.demo import run_demo

            configure_logging(fmt="console", level="warning")
            return asyncio.run(
                run_demo(
                    speed=args.speed,
                    minutes=args.minutes,
                    seed=args.seed,
                    dry_run=args.dry_run,
                    out=sys.stdout,
                )
            )
        if args.cmd == "emulator":
            return _emulator(args)
        if args.cmd == "simulate":
            from controller.simcli import run_simulate

            return run_simulate(args, list(argv) if argv is not None else None)
        settings = load_settings(args.config)
        if args.cmd == "run" and args.dry_run:
            settings = _dry_run(settings)
        secret = settings.token.get_secret_value() if settings.token else None
        configure_logging(fmt=settings.log.format, level=settings.log.level, secret=secret)
        if args.cmd == "plan":
            return asyncio.run(_plan(settings, out=sys.stdout))
        if args.cmd == "cost":
            return asyncio.run(_cost(settings, out=sys.stdout))
        return asyncio.run(_run(settings, once=args.once))
    except ConfigError as exc:
        print(f"governor: configuration error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
