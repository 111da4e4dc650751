"""`governor demo`: the emulator on loopback, a rising and falling load, Governor driving it.

Everything runs in one process on a sped-up clock (`ScaledClock`): the emulated platform, its
loopback HTTP server, and an unmodified `Governor` whose API client talks to that server exactly as
it would talk to the real API. The output is the stream of decisions, a status line every few
virtual minutes, and a summary of actions, replica-minutes and cost as billed by the emulator.
"""

from __future__ import annotations

import asyncio
import tempfile
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

import httpx

from controller.clock import ScaledClock, VirtualClock
from controller.cost.ledger import CostTracker
from controller.daemon.actuator import ActionResult
from controller.daemon.exporter import Metrics
from controller.daemon.loop import Governor, TickReport
from controller.daemon.store import StateStore
from controller.emulator.scenario import ScenarioSpec, build_platform, default_scenario
from controller.emulator.server import EmulatorServer
from controller.settings import Settings, load_settings

__all__ = ["demo_settings", "run_demo"]


def demo_settings(
    spec: ScenarioSpec, *, base_url: str, state_path: Path, dry_run: bool
) -> Settings:
    """The config a user would write for the demo world (the unmanaged endpoint is left out)."""
    managed = [e.name for e in spec.endpoints if e.managed]
    overrides: dict[str, Any] = {
        "api": {"base_url": base_url, "backoff_initial_s": 1.0},
        "namespaces": [spec.namespace],
        "manage": {"names": managed},
        "loop": {"tick_interval_s": 15, "dry_run": dry_run},
        "scrape": {"max_age_s": 45},
        "server": {"enabled": False},
        "state": {"path": str(state_path)},
        "defaults": {
            "floor": 1,
            "ceiling": 4,
            "scale_down_stabilization_s": 300,
            "policies": {"pending_requests": {"target_per_replica": 3.0, "window_s": 60}},
        },
        "endpoints": [
            {
                # Demand from two signals; the higher wins.
                "match": {"names": ["chat-llm"]},
                "ceiling": 6,
                "policies": {
                    "pending_requests": {"target_per_replica": 3.0},
                    "hardware_utilisation": {"target_util_percent": 85, "window_s": 120},
                },
            },
            {
                # Business hours: at least 2 replicas from 08:00 UTC, pre-warmed 5 min early.
                "match": {"names": ["embeddings"]},
                "policies": {
                    "schedule": {
                        "timezone": "UTC",
                        "prewarm_s": 300,
                        "windows": [
                            {
                                "name": "business-hours",
                                "days": DAYS,
                                "start": "08:00",
                                "end": "18:00",
                                "floor": 2,
                            }
                        ],
                    }
                },
            },
            {
                # Bursty batch work: zero when idle, a daily budget, quota given back when idle.
                "match": {"tags": ["batch"]},
                "floor": 0,
                "ceiling": 3,
                "policies": {
                    "budget": {"degrade_ceiling": 1},
                    "pause_to_free_quota": {"idle_reclaim": True, "idle_pause_after_s": 1500},
                },
            },
        ],
        "budgets": [
            {
                "scope": "tag",
                "match": "batch",
                "period": "day",
                "usd": 0.45,
                "thresholds": {"alert": 0.5, "degrade": 0.8, "hard": 1.0},
            }
        ],
        "ledger": {"path": str(state_path.with_name("ledger.sqlite"))},
    }
    settings = load_settings(None, overrides=overrides, env={"HF_TOKEN": spec.token})
    return settings


DAYS = ["mon", "tue", "wed", "thu", "fri"]
# The demo's virtual clock starts on a fixed Monday 07:30 UTC, so the schedule and the daily
# budget behave the same on every run.
DEMO_START = datetime(2026, 11, 23, 7, 30, tzinfo=UTC).timestamp()


async def _no_sleep(_: float) -> None:
    """Retry back-off on a virtual clock nobody else advances: do not wait."""


def _fmt_t(t: float, t0: float) -> str:
    m = int((t - t0) // 60)
    return f"{m // 60:d}:{m % 60:02d}"


async def run_demo(
    *,
    speed: float = 60.0,
    minutes: float = 90.0,
    seed: int = 7,
    dry_run: bool = False,
    out: TextIO,
    status_every_s: float = 600.0,
    fast: bool = False,
) -> int:
    """Run the demo world for `minutes` of virtual time.

    `fast` drives a virtual clock one tick at a time instead of a sped-up wall clock: the same
    loopback HTTP and the same Governor, as fast as the machine goes, and the same output for the
    same seed (a sped-up wall clock makes tick timing, and so the figures, vary run to run).
    """
    spec = default_scenario()
    clock: ScaledClock | VirtualClock = (
        VirtualClock(DEMO_START) if fast else ScaledClock(speed=speed, origin=DEMO_START)
    )
    t0 = clock.now()
    platform = build_platform(spec, start=t0, seed=seed)
    actions: Counter[str] = Counter()

    def on_tick(report: TickReport) -> None:
        for e in report.entries:
            d, o = e.decision, e.outcome
            if o is None or o.result is ActionResult.NOOP:
                continue
            actions[d.key.split("/", 1)[1]] += o.result is ActionResult.APPLIED
            out.write(
                f"[{_fmt_t(report.at, t0)}] {d.key.split('/', 1)[1]:<17} {d.action.value:<13} "
                f"{d.current} -> {d.desired}  ({d.reason.value}; {d.message})  "
                f"=> {o.result.value}\n"
            )
        for key, err in report.feed_errors.items():
            out.write(f"[{_fmt_t(report.at, t0)}] {key}: feed unusable, holding ({err})\n")
        out.flush()

    pace = "virtual time, as fast as it goes" if fast else f"{speed:g}x speed"
    eta = "" if fast else f" (about {minutes * 60 / speed:.0f}s)"
    with tempfile.TemporaryDirectory(prefix="governor-demo-") as tmp:
        async with EmulatorServer(platform, clock=clock, tokens=spec.tokens) as srv:
            settings = demo_settings(
                spec, base_url=srv.base_url, state_path=Path(tmp) / "state.sqlite", dry_run=dry_run
            )
            out.write(
                f"Governor demo: emulated API at {srv.base_url}, {pace}, "
                f"{minutes:g} virtual minutes{eta}.\n"
                f"Managed: {', '.join(settings.manage.names)}; left alone: "
                f"{', '.join(e.name for e in spec.endpoints if not e.managed)}."
                f"{' DRY RUN: nothing will be changed.' if dry_run else ''}\n\n"
            )
            from controller.platform.client import make_client

            metrics = Metrics()
            store = StateStore(settings.state.path)
            cost = CostTracker.open(settings)
            async with make_client(
                settings, on_call=metrics.record_call, sleep=_no_sleep if fast else clock.sleep
            ) as client:
                gov = Governor(
                    settings,
                    clock=clock,
                    client=client,
                    metrics=metrics,
                    store=store,
                    on_tick=on_tick,
                    cost=cost,
                )
                stop = asyncio.Event()
                task = None if fast else asyncio.create_task(gov.run(stop))
                end = t0 + minutes * 60
                next_status = t0
                step = settings.loop.tick_interval_s
                try:
                    while clock.now() < end:
                        if clock.now() >= next_status:
                            _status(platform.snapshot(), spec, out, clock.now(), t0)
                            next_status += status_every_s
                        if isinstance(clock, VirtualClock):
                            await gov.tick()
                            clock.advance(min(step, end - clock.now()))
                        else:
                            await clock.sleep(min(step, max(0.0, end - clock.now())))
                finally:
                    stop.set()
                    if task is not None:
                        await task
                    store.close()
                    ledger_usd = {
                        e.name: cost.ledger.total_usd(f"{spec.namespace}/{e.name}")
                        for e in spec.endpoints
                    }
                    cost.close()
            platform.advance_to(clock.now())
            async with httpx.AsyncClient() as admin:
                calls = (await admin.get(f"{srv.admin_url}/calls")).json()
            _summary(platform.snapshot(), spec, calls, actions, out, minutes, ledger_usd)
    return 0


def _status(snap: dict[str, Any], spec: ScenarioSpec, out: TextIO, now: float, t0: float) -> None:
    parts = []
    for e in spec.endpoints:
        s = snap["endpoints"][f"{spec.namespace}/{e.name}"]
        parts.append(
            f"{e.name} {s['state']} {s['ready_replicas']}/{s['target_replicas']} "
            f"load {s['load_rps']:.1f}rps pend {s['pending']}"
        )
    out.write(f"[{_fmt_t(now, t0)}] status: " + " | ".join(parts) + "\n")


def _summary(
    snap: dict[str, Any],
    spec: ScenarioSpec,
    calls: Any,
    actions: Counter[str],
    out: TextIO,
    minutes: float,
    ledger_usd: dict[str, float | None],
) -> None:
    items = calls.get("calls", calls) if isinstance(calls, dict) else calls
    writes: Counter[str] = Counter()
    for c in items:
        by_governor = c.get("user") in (spec.user.name, spec.user.id)
        if by_governor and c.get("method") in ("PUT", "POST", "DELETE") and c.get("endpoint"):
            writes[str(c["endpoint"]).split("/")[-1]] += 1
    out.write(f"\nSummary after {minutes:g} virtual minutes:\n")
    out.write(
        f"  {'endpoint':<22}{'managed':<9}{'actions':>8}{'API writes':>12}"
        f"{'replica-min':>13}{'billed $':>10}{'ledger $':>10}\n"
    )
    total = 0.0
    ledger_total = 0.0
    for e in spec.endpoints:
        s = snap["endpoints"][f"{spec.namespace}/{e.name}"]
        total += s["billed_usd"]
        led = ledger_usd.get(e.name)
        ledger_total += led or 0.0
        shown = f"{led:>10.2f}" if led is not None else f"{'unknown':>10}"
        out.write(
            f"  {e.name:<22}{'yes' if e.managed else 'no':<9}{actions[e.name]:>8}"
            f"{writes[e.name]:>12}{s['replica_seconds'] / 60:>13.1f}{s['billed_usd']:>10.2f}"
            f"{shown}\n"
        )
    out.write(
        f"  {'total':<22}{'':<9}{sum(actions.values()):>8}{sum(writes.values()):>12}"
        f"{'':>13}{total:>10.2f}{ledger_total:>10.2f}\n"
    )
    out.write(
        "  billed $: the emulated platform's bill; ledger $: what Governor recorded "
        "(to its last tick).\n"
    )
    unmanaged = [e.name for e in spec.endpoints if not e.managed]
    touched = [n for n in unmanaged if writes[n]]
    out.write(
        "  unmanaged endpoints were never changed by Governor.\n"
        if not touched
        else f"  WARNING: unmanaged endpoints were changed: {touched}\n"
    )
