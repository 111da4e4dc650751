"""`governor demo`: the emulator on loopback, a rising and falling load, Governor driving it.

Everything runs in one process on a sped-up clock (`ScaledClock`): the emulated platform, its
loopback HTTP server, and an unmodified `Governor` whose API client talks to that server exactly as
it would talk to the real API. Beside it runs a second emulated platform with the same endpoints,
loads, seed and start that nobody calls: the platform's own autoscaler alone (the backtest's
`platform` system, `advance_alone`), so the summary can put Governor's bill next to the bill for
the same load without it.

The output is the stream of decisions (what changed, then why, wrapped), the endpoints' status
(on a terminal a live block, one line per endpoint, redrawn in place; otherwise a line per
endpoint every few virtual minutes) and the summary. Every line fits in 100 columns. Ctrl-C ends
the run early and still prints the summary, for the time run so far.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import signal
import tempfile
import textwrap
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

import httpx

from controller.backtest.simulate import advance_alone
from controller.clock import ScaledClock, VirtualClock
from controller.cost.ledger import CostTracker
from controller.daemon.actuator import ActionResult
from controller.daemon.exporter import Metrics
from controller.daemon.loop import Governor, TickEntry, TickReport
from controller.daemon.store import StateStore
from controller.emulator.scenario import ScenarioSpec, build_platform, default_scenario
from controller.emulator.server import EmulatorServer
from controller.settings import Settings, load_settings

__all__ = ["WIDTH", "demo_settings", "describe_change", "run_demo"]

# No line of the demo is wider (a terminal narrower than this gets its live block cut to fit).
WIDTH = 100


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
                # Bursty batch work: zero when idle, a daily budget, quota given back after an
                # hour idle (its bursts come every 40 minutes: a pause sooner would make the next
                # burst meet a paused endpoint, which no request wakes).
                "match": {"tags": ["batch"]},
                "floor": 0,
                "ceiling": 3,
                "policies": {
                    "budget": {"degrade_ceiling": 1},
                    "pause_to_free_quota": {"idle_reclaim": True, "idle_pause_after_s": 3600},
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


def _name(key: str) -> str:
    return key.split("/", 1)[1]


def describe_change(entry: TickEntry) -> str:
    """What the decision changes on the endpoint, as "replicas 1 -> 2" or "max 4 -> 2": only
    what differs (the listing the decision was made on is the "before")."""
    d, ep = entry.decision, entry.endpoint
    if d.action.value == "pause":
        return "pause (Governor resumes it when it is needed)"
    if d.action.value == "resume":
        return "resume"
    parts = []
    if d.current is not None and d.desired is not None and d.current != d.desired:
        parts.append(f"replicas {d.current} -> {d.desired}")
    sc = ep.compute.scaling
    if d.bounds is not None:
        # A bound that only follows the count (pinned at it before and after) is not news.
        lo, hi = d.bounds
        moved = d.current != d.desired

        def follows(old: int, new: int) -> bool:
            return moved and old == d.current and new == d.desired

        if lo != sc.min_replica and not follows(sc.min_replica, lo):
            parts.append(f"min {sc.min_replica} -> {lo}")
        if hi != sc.max_replica and not follows(sc.max_replica, hi):
            parts.append(f"max {sc.max_replica} -> {hi}")
    stz = d.scale_to_zero_timeout
    if stz is not None and stz != sc.scale_to_zero_timeout:
        parts.append(f"scale-to-zero {sc.scale_to_zero_timeout or 'off'} -> {stz} min")
    return ", ".join(parts) or "no change"


def _wrap(text: str, indent: int, width: int, *, then: int | None = None) -> list[str]:
    """`text` in lines of at most `width`, the first indented `indent`, the rest `then`."""
    pad, rest = " " * indent, " " * (indent if then is None else then)
    return textwrap.wrap(
        text, width=width, initial_indent=pad, subsequent_indent=rest, break_on_hyphens=False
    ) or [pad.rstrip()]


def _cut(line: str, width: int) -> str:
    return line if len(line) <= width else line[: width - 3] + "..."


class _View:
    """Plain output: events as they come, a status line per endpoint every `every_s`."""

    def __init__(self, out: TextIO, *, every_s: float, width: int = WIDTH) -> None:
        self.out = out
        self.every_s = every_s
        self.width = width
        self._next: float | None = None

    def event(self, lines: list[str]) -> None:
        for ln in lines:
            self.out.write(ln + "\n")
        self.out.flush()

    def due(self, now: float) -> bool:
        return self._next is None or now >= self._next

    def status(self, now: float, rows: list[str], *, force: bool = False) -> None:
        if not force and not self.due(now):
            return
        self._next = (self._next if self._next is not None else now) + self.every_s
        self.event(rows)

    def close(self) -> None:
        self.out.flush()


class _LiveView(_View):
    """A terminal: events scroll above a block of one line per endpoint, redrawn in place (the
    cursor goes up over the last block, which is cleared and written again)."""

    def __init__(self, out: TextIO, *, width: int) -> None:
        super().__init__(out, every_s=0.0, width=width)
        self._drawn = 0
        self._rows: list[str] = []

    def _erase(self) -> None:
        if self._drawn:
            self.out.write(f"\x1b[{self._drawn}F\x1b[J")
            self._drawn = 0

    def _draw(self) -> None:
        for ln in self._rows:
            self.out.write(_cut(ln, self.width) + "\n")
        self._drawn = len(self._rows)
        self.out.flush()

    def event(self, lines: list[str]) -> None:
        if not lines:
            return
        self._erase()
        for ln in lines:
            self.out.write(_cut(ln, self.width) + "\n")
        self._draw()

    def due(self, now: float) -> bool:
        return True

    def status(self, now: float, rows: list[str], *, force: bool = False) -> None:
        self._erase()
        self._rows = rows
        self._draw()


def _status_rows(
    snap: dict[str, Any],
    alone: dict[str, Any],
    spec: ScenarioSpec,
    last: dict[str, str],
    now: float,
    t0: float,
) -> list[str]:
    head = f"[{_fmt_t(now, t0)}]"
    pad = " " * len(head)
    rows = [
        f"{head} {'endpoint':<21}{'state':<13}{'ready':>6}{'load':>9}{'pend':>6}"
        f"{'bill $':>8}{'alone $':>9}  last action"
    ]
    for e in spec.endpoints:
        key = f"{spec.namespace}/{e.name}"
        s, a = snap["endpoints"][key], alone["endpoints"][key]
        ready = f"{s['ready_replicas']}/{s['target_replicas']}"
        rows.append(
            f"{pad} {e.name:<21}{s['state']:<13}{ready:>6}{s['load_rps']:>6.1f}rps"
            f"{s['pending']:>6}{s['billed_usd']:>8.2f}{a['billed_usd']:>9.2f}"
            f"  {last.get(e.name, '-' if e.managed else 'unmanaged')}"
        )
    return rows


async def run_demo(
    *,
    speed: float = 60.0,
    minutes: float = 90.0,
    seed: int = 7,
    dry_run: bool = False,
    out: TextIO,
    status_every_s: float = 600.0,
    fast: bool = False,
    live: bool | None = None,
) -> int:
    """Run the demo world for `minutes` of virtual time; 130 when interrupted (Ctrl-C).

    `fast` drives a virtual clock one tick at a time instead of a sped-up wall clock: the same
    loopback HTTP and the same Governor, as fast as the machine goes, and the same output for the
    same seed (a sped-up wall clock makes tick timing, and so the figures, vary run to run).
    `live` (default: whether `out` is a terminal) redraws the status block in place.
    """
    spec = default_scenario()
    clock: ScaledClock | VirtualClock = (
        VirtualClock(DEMO_START) if fast else ScaledClock(speed=speed, origin=DEMO_START)
    )
    t0 = clock.now()
    end = t0 + minutes * 60
    platform = build_platform(spec, start=t0, seed=seed)
    # The same world, never called: the platform's own autoscaler on the same load.
    alone = build_platform(spec, start=t0, seed=seed)
    if live is None:
        live = bool(getattr(out, "isatty", lambda: False)())
    view: _View = (
        _LiveView(out, width=min(WIDTH, shutil.get_terminal_size((WIDTH, 24)).columns - 1))
        if live
        else _View(out, every_s=status_every_s)
    )
    actions: Counter[str] = Counter()
    last: dict[str, str] = {}

    def on_tick(report: TickReport) -> None:
        lines: list[str] = []
        at = _fmt_t(report.at, t0)
        for e in report.entries:
            d, o = e.decision, e.outcome
            if o is None or o.result is ActionResult.NOOP:
                continue
            name = _name(d.key)
            actions[name] += o.result is ActionResult.APPLIED
            change = describe_change(e)
            result = o.result.value.replace("_", " ")
            if o.result is ActionResult.FAILED:
                result += f" ({o.detail})"
            last[name] = f"{at} {d.action.value}"
            head = f"[{at}] {name:<17} {d.action.value:<14}{change} ({d.reason.value}): {result}"
            lines += _wrap(head, 0, view.width, then=7)
            lines += _wrap(f"why: {d.message}", 7, view.width)
        for key, err in report.feed_errors.items():
            feed = f"[{at}] {_name(key)}: feed unusable, holding ({err})"
            lines += _wrap(feed, 0, view.width, then=7)
        view.event(lines)

    def show(*, force: bool = False) -> tuple[float, dict[str, Any], dict[str, Any]] | None:
        """Both worlds brought to the same virtual time, shown; that time and their snapshots
        (None when the view has nothing to show yet)."""
        now = clock.now()
        if not force and not view.due(now):
            return None
        advance_alone(alone, origin=t0, until_s=now - t0, step=15.0)
        platform.advance_to(max(platform.now, now))
        snap, alone_snap = platform.snapshot(), alone.snapshot()
        view.status(now, _status_rows(snap, alone_snap, spec, last, now, t0), force=force)
        return now, snap, alone_snap

    pace = "virtual time, as fast as it goes" if fast else f"{speed:g}x speed"
    eta = "" if fast else f" (about {minutes * 60 / speed:.0f}s)"
    interrupted = asyncio.Event()
    loop = asyncio.get_running_loop()
    with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
        # Ctrl-C ends the run and goes to the summary; a second one aborts as usual.
        loop.add_signal_handler(signal.SIGINT, interrupted.set)
    try:
        with tempfile.TemporaryDirectory(prefix="governor-demo-") as tmp:
            async with EmulatorServer(platform, clock=clock, tokens=spec.tokens) as srv:
                settings = demo_settings(
                    spec,
                    base_url=srv.base_url,
                    state_path=Path(tmp) / "state.sqlite",
                    dry_run=dry_run,
                )
                intro = (
                    f"Governor demo: emulated API at {srv.base_url}, {pace}, {minutes:g} virtual "
                    f"minutes{eta}. Managed: {', '.join(settings.manage.names)}; left alone: "
                    f"{', '.join(e.name for e in spec.endpoints if not e.managed)}. Beside it, the "
                    "same load under the platform's own autoscaler ('alone')."
                    f"{' DRY RUN: nothing will be changed.' if dry_run else ''} Ctrl-C stops early."
                )
                out.write("\n".join(textwrap.wrap(intro, WIDTH)) + "\n\n")
                (stopped_at, snap, alone_snap), ledger_usd, calls = await _run(
                    settings,
                    clock,
                    on_tick,
                    show,
                    interrupted,
                    end=end,
                    fast=fast,
                    admin_url=srv.admin_url,
                    spec=spec,
                )
                stopped = interrupted.is_set()
                with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                    loop.remove_signal_handler(signal.SIGINT)
                view.close()
                _summary(
                    snap,
                    alone_snap,
                    spec,
                    calls,
                    actions,
                    out,
                    (stopped_at - t0) / 60,
                    minutes,
                    ledger_usd,
                    interrupted=stopped,
                )
    finally:
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.remove_signal_handler(signal.SIGINT)
    return 130 if stopped else 0


async def _run(
    settings: Settings,
    clock: ScaledClock | VirtualClock,
    on_tick: Any,
    show: Any,
    interrupted: asyncio.Event,
    *,
    end: float,
    fast: bool,
    admin_url: str,
    spec: ScenarioSpec,
) -> tuple[Any, dict[str, float | None], Any]:
    """Governor against the emulator until `end` or Ctrl-C; what `show` gave as it stopped (both
    worlds at one virtual time), the ledger's figures and the emulator's call log."""
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
        step = settings.loop.tick_interval_s
        try:
            while clock.now() < end and not interrupted.is_set():
                show()
                if isinstance(clock, VirtualClock):
                    await gov.tick()
                    clock.advance(min(step, end - clock.now()))
                else:
                    await clock.sleep(min(step, max(0.0, end - clock.now())))
            final = show(force=True)
            assert final is not None  # forced: always drawn
        finally:
            stop.set()
            if task is not None:
                await task
            store.close()
            ledger_usd = {
                e.name: cost.ledger.total_usd(f"{spec.namespace}/{e.name}") for e in spec.endpoints
            }
            cost.close()
    async with httpx.AsyncClient() as admin:
        calls = (await admin.get(f"{admin_url}/calls")).json()
    return final, ledger_usd, calls


def _writes(spec: ScenarioSpec, calls: Any) -> Counter[str]:
    items = calls.get("calls", calls) if isinstance(calls, dict) else calls
    writes: Counter[str] = Counter()
    for c in items:
        by_governor = c.get("user") in (spec.user.name, spec.user.id)
        if by_governor and c.get("method") in ("PUT", "POST", "DELETE") and c.get("endpoint"):
            writes[str(c["endpoint"]).split("/")[-1]] += 1
    return writes


def _summary(
    snap: dict[str, Any],
    alone: dict[str, Any],
    spec: ScenarioSpec,
    calls: Any,
    actions: Counter[str],
    out: TextIO,
    ran_min: float,
    minutes: float,
    ledger_usd: dict[str, float | None],
    *,
    interrupted: bool = False,
) -> None:
    writes = _writes(spec, calls)
    w = out.write
    if interrupted:
        w(f"\nInterrupted: summary after {ran_min:.1f} of {minutes:g} virtual minutes:\n")
    else:
        ran = f"{minutes:g}" if abs(ran_min - minutes) < 0.05 else f"{ran_min:.1f}"
        w(f"\nSummary after {ran} virtual minutes:\n")
    w(
        f"  {'endpoint':<22}{'managed':<9}{'actions':>8}{'API writes':>12}"
        f"{'replica-min':>13}{'billed $':>10}{'ledger $':>10}\n"
    )
    total = ledger_total = 0.0
    for e in spec.endpoints:
        s = snap["endpoints"][f"{spec.namespace}/{e.name}"]
        total += s["billed_usd"]
        led = ledger_usd.get(e.name)
        ledger_total += led or 0.0
        shown = f"{led:>10.2f}" if led is not None else f"{'unknown':>10}"
        w(
            f"  {e.name:<22}{'yes' if e.managed else 'no':<9}{actions[e.name]:>8}"
            f"{writes[e.name]:>12}{s['replica_seconds'] / 60:>13.1f}{s['billed_usd']:>10.2f}"
            f"{shown}\n"
        )
    w(
        f"  {'total':<22}{'':<9}{sum(actions.values()):>8}{sum(writes.values()):>12}"
        f"{'':>13}{total:>10.2f}{ledger_total:>10.2f}\n"
    )
    w(
        "  billed $: the emulated platform's bill; ledger $: what Governor recorded, to its "
        "last tick.\n"
    )
    unmanaged = [e.name for e in spec.endpoints if not e.managed]
    touched = [n for n in unmanaged if writes[n]]
    w(
        "  unmanaged endpoints were never changed by Governor.\n"
        if not touched
        else f"  WARNING: unmanaged endpoints were changed: {touched}\n"
    )
    _versus(snap, alone, spec, out)


def _versus(snap: dict[str, Any], alone: dict[str, Any], spec: ScenarioSpec, out: TextIO) -> None:
    """Governor's bill beside the same load under the platform's own autoscaler."""
    w = out.write
    w("\nThe same load without Governor (the platform's own autoscaler), from the same start:\n")
    w(
        f"  {'endpoint':<22}{'Governor $':>11}{'alone $':>9}{'saved $':>9}"
        f"{'served':>16}{'503s':>13}\n"
    )
    w(f"  {'':<22}{'':>11}{'':>9}{'':>9}{'Governor/alone':>16}{'Governor/alone':>16}\n")
    gov_total = alone_total = 0.0
    for e in spec.endpoints:
        key = f"{spec.namespace}/{e.name}"
        g, a = snap["endpoints"][key], alone["endpoints"][key]
        gov_total += g["billed_usd"]
        alone_total += a["billed_usd"]
        w(
            f"  {e.name:<22}{g['billed_usd']:>11.2f}{a['billed_usd']:>9.2f}"
            f"{a['billed_usd'] - g['billed_usd']:>9.2f}"
            f"{str(g['served']) + '/' + str(a['served']):>16}"
            f"{str(g['rejected']) + '/' + str(a['rejected']):>16}\n"
        )
    saved = alone_total - gov_total
    pct = f" ({100 * saved / alone_total:.0f} %)" if alone_total > 0 else ""
    w(f"  {'total':<22}{gov_total:>11.2f}{alone_total:>9.2f}{saved:>9.2f}{pct}\n")
    note = (
        "alone: a second emulated platform with the same endpoints, loads (the same arrivals), "
        "seed and start, that nobody calls: the platform scales each endpoint itself between the "
        "min and max it was created with, on its pendingRequests measure (the 'platform' system "
        "of governor simulate, docs/simulate.md). served and 503s count requests; a saving that "
        "comes with more 503s is not free."
    )
    w("\n".join(_wrap(note, 2, WIDTH)) + "\n")
