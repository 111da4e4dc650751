"""Controller overhead: endpoints listed, scraped, parsed and decided per second on one core.

    python benchmarks/overhead.py                      # 100 / 1,000 / 10,000 endpoints
    python benchmarks/overhead.py --sizes 1000 --ticks 5 --concurrency 4 16
    python benchmarks/overhead.py --sizes 1000 --profile /tmp/gov.prof   # cProfile one worker
    python benchmarks/overhead.py --sizes 10000 --tracemalloc 1 --gc-stats  # where memory goes
    python benchmarks/overhead.py --sizes 10000 --gc tuned --gc-stats      # GC A/B
    python benchmarks/overhead.py --out benchmarks/results/overhead      # writes overhead.json
    python benchmarks/overhead.py --render benchmarks/results/overhead.json  # Markdown tables

For each size N the driver starts the emulator (`benchmarks/fleet.py`) in its own process with N
running endpoints, then runs Governor in a second, fresh process (so the peak RSS is per run). With
two or more cores the emulator is pinned to core 1 and Governor to core 0, so the emulator's CPU is
not Governor's. Governor is the production object (`controller.daemon.loop.Governor`) in dry-run,
with the real `EndpointsClient` (httpx) over loopback HTTP, the real `Scraper`/`parse_feed`, the
windows, the policies and the combiner, a real SQLite state store and JSON logging at level info
(to a file). The cost ledger is off (it is a separate observer; `--ledger` turns it on).

One warm-up tick (it opens the connection pool and fills the windows), then `--ticks` measured
ticks back to back. Every phase of a tick is timed in wall and CPU seconds by wrapping the
Governor's own methods (no code path is changed): list (`_discover`), scrape (`Scraper.scrape`,
which includes parsing; parsing alone is timed by wrapping `parse_feed`), decide
(`_decide_and_act`) and persist (`StateStore.save_memory`). Medians over the measured ticks. The
previous tick's report is dropped before the next tick starts, as in the daemon (which keeps none).

Memory diagnostics (off by default; tracemalloc slows a tick several times, so never quote CPU
figures from a `--tracemalloc` run): `--gc-stats` times every garbage collection per generation
(`gc.callbacks`) and counts GC-tracked objects; `--gc daemon|default|disable|freeze|tuned` is
the A/B switch, applied after the warm-up tick (default `daemon`: what `Governor.run` does after
its first tick, `loop.tune_gc`; `default`: CPython's collector untouched; no GC; `gc.freeze()` of
the warmed-up heap; or freeze plus a young-generation threshold of 50,000 instead of 700);
`--tracemalloc FRAMES` snapshots Python allocations at the tick's peak (just after the scrape of
the last measured tick, with the listing, the samples and the windows all alive) and after it,
and prints the top sites to stderr. RSS is also read after each phase of every tick
(`rss_<phase>_mb`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import harness

ROOT = harness.ROOT
if "--code-root" in sys.argv:  # a worker measuring another checkout (the side-by-side baseline)
    sys.path.insert(0, sys.argv[sys.argv.index("--code-root") + 1])
else:
    sys.path.insert(0, str(ROOT))

PHASES = ("list", "scrape", "parse", "decide", "persist")


# ------------------------------------------------------------------------------------- worker


def _rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _peak_rss_mb() -> float:
    """High-water RSS since the last `_reset_peak_rss()` (VmHWM), else since process start."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _reset_peak_rss() -> bool:
    """Restart the VmHWM high-water mark (Linux `clear_refs` 5), so the peak RSS reported is the
    measured ticks' own: not the warm-up tick, nor the harness's one-off window fill (which holds
    the old and the refilled window store at once, an artefact no daemon has)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return False
    return True


def _fill_windows(gov: Any, store_cls: Any, interval_s: float) -> None:
    """Give every window the history a long-running daemon has (retention / tick interval
    samples, stamped in the past), so RSS and decide time are the steady state, not a cold start.

    Only public window API is used (`add`, `latest`), so this follows any storage layout; the
    past-stamped copies are dropped as soon as they are added (only the latest sample is kept).
    """
    from dataclasses import replace

    retention = gov.settings.scrape.retention_s
    old = gov.windows
    new = store_cls(retention_s=retention)
    steps = int(retention // interval_s)
    for key in list(old):
        latest = old.get(key).latest
        if latest is None:
            continue
        window = new.get(key)
        for k in range(steps, 0, -1):
            window.add(replace(latest, at=latest.at - k * interval_s))
        window.add(latest)
    gov.windows = new


class _GcTimer:
    """Wall time and count of garbage collections per generation, via `gc.callbacks`."""

    def __init__(self) -> None:
        self._t0 = 0.0
        self._reset()

    def _reset(self) -> None:
        self.seconds = [0.0, 0.0, 0.0]
        self.count = [0, 0, 0]
        self.collected = [0, 0, 0]

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._t0 = time.perf_counter()
            return
        gen = info["generation"]
        self.seconds[gen] += time.perf_counter() - self._t0
        self.count[gen] += 1
        self.collected[gen] += info["collected"]

    def take(self) -> dict[str, Any]:
        """The figures since the last `take` (one tick's)."""
        out = {
            "gc_s": sum(self.seconds),
            "gc_gen_s": list(self.seconds),
            "gc_gen_count": list(self.count),
            "gc_gen_collected": list(self.collected),
        }
        self._reset()
        return out


def _top(snapshot: tracemalloc.Snapshot, limit: int = 25) -> list[str]:
    """The biggest allocation sites of a snapshot, one line each, biggest first."""
    snapshot = snapshot.filter_traces(
        (
            tracemalloc.Filter(False, tracemalloc.__file__),
            tracemalloc.Filter(False, "<frozen importlib._bootstrap>"),
        )
    )
    stats = snapshot.statistics("lineno")
    total = sum(st.size for st in stats)
    lines = [f"total {total / 2**20:.1f} MiB in {sum(st.count for st in stats):,} blocks"]
    for st in stats[:limit]:
        frame = st.traceback[0]
        where = f"{Path(frame.filename).name}:{frame.lineno}"
        lines.append(
            f"{st.size / 2**20:8.1f} MiB {st.count:>10,} blocks  {where:<34} "
            f"{_source_line(frame.filename, frame.lineno)}"
        )
    return lines


def _by_module(snapshot: tracemalloc.Snapshot, limit: int = 30) -> list[str]:
    """A snapshot's live Python allocations summed per source file (the frame that allocated),
    biggest first: where the MB go, module by module."""
    stats = snapshot.statistics("filename")
    total = sum(st.size for st in stats)
    lines = [f"total {total / 2**20:.1f} MiB"]
    for st in stats[:limit]:
        name = st.traceback[0].filename
        for marker in ("site-packages/", "lib/python3.11/", str(ROOT) + "/"):
            if marker in name:
                name = name.split(marker, 1)[1]
                break
        lines.append(f"{st.size / 2**20:8.1f} MiB {st.count:>10,} blocks  {name}")
    return lines


def _source_line(filename: str, lineno: int) -> str:
    import linecache

    return linecache.getline(filename, lineno).strip()[:90]


async def _worker(args: argparse.Namespace) -> dict[str, Any]:
    import controller.platform.scrape as scrape_mod
    from controller.clock import WallClock
    from controller.cost.ledger import CostTracker
    from controller.daemon.exporter import Metrics
    from controller.daemon.loop import Governor
    from controller.daemon.store import StateStore
    from controller.logs import configure_logging
    from controller.platform.client import make_client
    from controller.platform.windows import WindowStore
    from controller.settings import load_settings

    if args.tracemalloc:
        tracemalloc.start(args.tracemalloc)
    gc_timer = _GcTimer()
    if args.gc_stats:
        gc.callbacks.append(gc_timer)
    tmp = Path(tempfile.mkdtemp(prefix="govbench-"))
    log_path = tmp / "governor.log"
    log_file = log_path.open("w")  # kept open for the whole run
    configure_logging(fmt="json", level="info", stream=log_file)
    overrides: dict[str, Any] = {
        "api": {"base_url": args.url, "max_connections": args.max_connections},
        "namespaces": ["bench"],
        "manage": {"tags": ["bench"]},
        "loop": {"tick_interval_s": 15, "dry_run": True, "tick_budget_s": args.budget_s},
        "scrape": {"concurrency": args.concurrency[0]},
        "server": {"enabled": False},
        "state": {"path": str(tmp / "state.sqlite")},
        "ledger": {"enabled": args.ledger, "path": str(tmp / "ledger.sqlite")},
        "defaults": {
            "floor": 1,
            "ceiling": 6,
            "policies": {
                "pending_requests": {"target_per_replica": 3.0, "window_s": 60},
                "hardware_utilisation": {"target_util_percent": 80, "window_s": 120},
            },
        },
    }
    settings = load_settings(None, overrides=overrides, env={"HF_TOKEN": "bench-token"})
    store = StateStore(settings.state.path)
    cost = CostTracker.open(settings) if args.ledger else None
    acc: dict[str, list[float]] = {}  # phase -> [wall, cpu] of the current tick
    rss: dict[str, float] = {}  # phase -> RSS MB right after it, in the current tick
    peak_snapshot: list[tracemalloc.Snapshot] | None = None  # armed for the last tick only

    def timed(phase: str, fn: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        async def wrapper(*a: Any, **kw: Any) -> Any:
            w, c = time.perf_counter(), time.process_time()
            try:
                return await fn(*a, **kw)
            finally:
                slot = acc.setdefault(phase, [0.0, 0.0])
                slot[0] += time.perf_counter() - w
                slot[1] += time.process_time() - c
                rss[phase] = _rss_mb()
                if phase == "scrape" and peak_snapshot is not None:
                    peak_snapshot.append(tracemalloc.take_snapshot())

        return wrapper

    real_parse = scrape_mod.parse_feed

    def parse_timed(*a: Any, **kw: Any) -> Any:
        w, c = time.perf_counter(), time.process_time()
        try:
            return real_parse(*a, **kw)
        finally:
            slot = acc.setdefault("parse", [0.0, 0.0])
            slot[0] += time.perf_counter() - w
            slot[1] += time.process_time() - c

    scrape_mod.parse_feed = parse_timed  # the Scraper looks the name up in its module
    real_save = store.save_memory

    def save_timed(*a: Any, **kw: Any) -> None:
        w, c = time.perf_counter(), time.process_time()
        try:
            real_save(*a, **kw)
        finally:
            acc["persist"] = [time.perf_counter() - w, time.process_time() - c]

    store.save_memory = save_timed  # type: ignore[method-assign]

    ticks: list[dict[str, Any]] = []
    peak_reset = False
    report: Any = None
    profiler = None
    metrics = Metrics()  # as in the daemon: every API call and decision is counted
    async with make_client(settings, on_call=metrics.record_call) as client:
        gov = Governor(
            settings, clock=WallClock(), client=client, store=store, cost=cost, metrics=metrics
        )
        gov._discover = timed("list", gov._discover)  # type: ignore[method-assign]
        gov.scraper.scrape_into = timed("scrape", gov.scraper.scrape_into)  # type: ignore[method-assign]
        gov._decide_and_act = timed("decide", gov._decide_and_act)  # type: ignore[method-assign]
        for i in range(args.ticks + 1):
            if i == 1 and args.profile:
                import cProfile

                profiler = cProfile.Profile()
                profiler.enable()
            acc.clear()
            rss.clear()
            if i == args.ticks and args.tracemalloc:
                peak_snapshot = []
            report = None  # the previous tick's report (10,000 entries) is not this tick's memory
            gc_timer.take()
            w, c = time.perf_counter(), time.process_time()
            report = await gov.tick()
            wall, cpu = time.perf_counter() - w, time.process_time() - c
            entry = {
                "wall_s": wall,
                "cpu_s": cpu,
                "endpoints": len(report.entries),
                "feed_errors": len(report.feed_errors),
                "namespace_errors": len(report.namespace_errors),
                "actions": sum(1 for e in report.entries if e.decision.acts),
                "rss_mb": _rss_mb(),
                **{f"rss_{phase}_mb": v for phase, v in rss.items()},
            }
            if args.gc_stats:
                entry.update(gc_timer.take())
            for phase in PHASES:
                pw, pc = acc.get(phase, [0.0, 0.0])
                entry[f"{phase}_wall_s"], entry[f"{phase}_cpu_s"] = pw, pc
            ticks.append(entry)
            if i == 0:
                if args.fill_windows:
                    _fill_windows(gov, WindowStore, settings.loop.tick_interval_s)
                if args.gc == "daemon":
                    import controller.daemon.loop as loop_mod

                    tune = getattr(loop_mod, "tune_gc", None)  # absent in older builds
                    if tune is not None:
                        tune(settings.loop, freeze=True)
                elif args.gc == "disable":
                    gc.disable()
                elif args.gc == "freeze":
                    gc.collect()
                    gc.freeze()
                elif args.gc == "tuned":
                    gc.collect()
                    gc.freeze()
                    gc.set_threshold(50_000, *gc.get_threshold()[1:])
                peak_reset = _reset_peak_rss()
        if profiler is not None:
            profiler.disable()
            profiler.dump_stats(args.profile)
        diagnostics: dict[str, Any] = {}
        if args.gc_stats:
            diagnostics["gc_tracked_objects"] = len(gc.get_objects())
            diagnostics["gc_frozen_objects"] = gc.get_freeze_count()
            diagnostics["gc_thresholds"] = list(gc.get_threshold())
        if args.tracemalloc:
            after = tracemalloc.take_snapshot()
            if peak_snapshot:
                diagnostics["tracemalloc_at_peak"] = _top(peak_snapshot[0])
                diagnostics["tracemalloc_at_peak_by_module"] = _by_module(peak_snapshot[0])
            diagnostics["tracemalloc_after_tick"] = _top(after)
            diagnostics["tracemalloc_peak_mib"] = tracemalloc.get_traced_memory()[1] / 2**20
            del after, peak_snapshot
    store.close()
    if cost is not None:
        cost.close()
    log_file.close()
    return {
        "ticks": ticks,
        "peak_rss_mb": _peak_rss_mb(),
        "peak_rss_scope": "measured ticks" if peak_reset else "whole process",
        "diagnostics": diagnostics,
        "event_loop": type(asyncio.get_running_loop()).__module__,
    }


# ------------------------------------------------------------------------------------- driver


def _machine() -> dict[str, Any]:
    mem = "unknown"
    with contextlib.suppress(OSError), open("/proc/meminfo") as f:
        mem = f"{int(f.readline().split()[1]) // 1024} MiB"
    pkgs = harness.versions(
        (
            "aiohttp",
            "httpx",
            "httpcore",
            "prometheus_client",
            "pydantic",
            "uvicorn",
            "starlette",
            "uvloop",
        )
    )
    return {
        "cpu": harness.cpu_model(),
        "cores": os.cpu_count(),
        "memory": mem,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "packages": pkgs,
    }


def _summary(n: int, run: dict[str, Any], knobs: dict[str, Any]) -> dict[str, Any]:
    measured = run["ticks"][1:]
    med = {k: statistics.median(t[k] for t in measured) for k in measured[0]}
    wall = med["wall_s"]
    return {
        "endpoints": n,
        **knobs,
        "ticks_measured": len(measured),
        "first_tick_wall_s": run["ticks"][0]["wall_s"],
        "tick_wall_s": wall,
        "tick_wall_min_s": min(t["wall_s"] for t in measured),
        "tick_wall_max_s": max(t["wall_s"] for t in measured),
        "tick_cpu_s": med["cpu_s"],
        **{f"{p}_wall_s": med[f"{p}_wall_s"] for p in PHASES},
        **{f"{p}_cpu_s": med[f"{p}_cpu_s"] for p in PHASES},
        "endpoints_per_s": n / wall,
        "cpu_us_per_endpoint": 1e6 * med["cpu_s"] / n,
        "feed_errors": max(t["feed_errors"] for t in run["ticks"]),
        "namespace_errors": max(t["namespace_errors"] for t in run["ticks"]),
        "decided": min(t["endpoints"] for t in run["ticks"]),
        "peak_rss_mb": run["peak_rss_mb"],
        "peak_rss_scope": run.get("peak_rss_scope", "whole process"),
        "rss_after_mb": run["ticks"][-1]["rss_mb"],
        "fits_15s_tick": wall < 15.0,
        **{k: med[k] for k in med if k.startswith(("rss_", "gc_s"))},
        "diagnostics": run.get("diagnostics", {}),
        "per_tick": run["ticks"],
    }


def _diagnostics(run: dict[str, Any]) -> list[str]:
    """Human-readable GC and tracemalloc figures of one worker run (empty when not asked for)."""
    out: list[str] = []
    diag = run.get("diagnostics", {})
    for n, t in enumerate(run["ticks"]):
        if "gc_s" in t:
            gens = ", ".join(
                f"gen{g} {t['gc_gen_count'][g]}x {t['gc_gen_s'][g]:.2f}s "
                f"{t['gc_gen_collected'][g]:,} freed"
                for g in range(3)
            )
            out.append(
                f"  tick {n}: cpu {t['cpu_s']:.2f} s, gc {t['gc_s']:.2f} s ({gens}); RSS MB "
                + " ".join(f"{p} {t[f'rss_{p}_mb']:.0f}" for p in PHASES if f"rss_{p}_mb" in t)
            )
    for key in ("gc_tracked_objects", "gc_frozen_objects", "tracemalloc_peak_mib"):
        if key in diag:
            out.append(f"  {key}: {diag[key]:,.0f}")
    for key in ("tracemalloc_at_peak", "tracemalloc_at_peak_by_module", "tracemalloc_after_tick"):
        if key in diag:
            out.append(f"  {key}:")
            out.extend(f"    {line}" for line in diag[key])
    return out


def _run_worker(
    url: str,
    core: int | None,
    args: argparse.Namespace,
    code_root: str | None = None,
    nice: int = 0,
    **knobs: Any,
) -> dict:
    cmd = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--worker",
        "--url",
        url,
        "--ticks",
        str(knobs["ticks"]),
        "--concurrency",
        str(knobs["concurrency"]),
        "--max-connections",
        str(knobs["max_connections"]),
    ]
    if core is not None:
        cmd += ["--cpu", str(core)]
    if args.ledger:
        cmd.append("--ledger")
    if not args.fill_windows:
        cmd.append("--no-fill-windows")
    if args.profile:
        cmd += ["--profile", args.profile]
    if args.tracemalloc:
        cmd += ["--tracemalloc", str(args.tracemalloc)]
    if args.gc_stats:
        cmd.append("--gc-stats")
    if args.budget_s is not None:
        cmd += ["--budget-s", str(args.budget_s)]
    if code_root is not None:
        cmd += ["--code-root", code_root]
    cmd += ["--gc", args.gc]
    if nice:
        cmd = ["nice", "-n", str(nice), *cmd]
    out = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=3600)
    if out.returncode != 0:
        raise RuntimeError(f"worker failed ({out.returncode}):\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def _driver(args: argparse.Namespace) -> dict[str, Any]:
    gov_core, emu_core = harness.cores()
    results = []
    fleet_args = ["--live"] if args.live else []
    for n in args.sizes:
        proc, url = harness.start_fleet(n, emu_core, fleet_args)
        try:
            for conc in args.concurrency if n <= args.sweep_max else args.concurrency[:1]:
                ticks = args.ticks if n < 10_000 else max(3, min(args.ticks, args.ticks_10k))
                knobs = {
                    "concurrency": conc,
                    "max_connections": max(conc, args.max_connections),
                    "ticks": ticks,
                }
                load_before = os.getloadavg()[0]
                run = _run_worker(url, gov_core, args, **knobs)
                row = _summary(n, run, {k: v for k, v in knobs.items() if k != "ticks"})
                row["loadavg_1m_before_after"] = [load_before, os.getloadavg()[0]]
                row["gc"] = args.gc
                results.append(row)
                print(_line(row), file=sys.stderr, flush=True)
                for text in _diagnostics(run):
                    print(text, file=sys.stderr, flush=True)
        finally:
            harness.stop_fleet(proc)
    return {
        "machine": _machine(),
        "pinning": {"governor_core": gov_core, "emulator_core": emu_core},
        "command": " ".join(["python", "benchmarks/overhead.py", *sys.argv[1:]]),
        "emulator": "frozen" if not args.live else "live",
        "results": results,
    }


def _line(r: dict[str, Any]) -> str:
    return (
        f"N={r['endpoints']:>6} conc={r['concurrency']:>3}  tick {r['tick_wall_s']:7.2f} s "
        f"(cpu {r['tick_cpu_s']:6.2f})  list {r['list_wall_s']:6.2f}  "
        f"scrape {r['scrape_wall_s']:6.2f}"
        f" (parse {r['parse_cpu_s']:5.2f})  decide {r['decide_wall_s']:5.2f}  "
        f"persist {r['persist_wall_s']:5.2f}  {r['endpoints_per_s']:7.0f} ep/s  "
        f"{r['cpu_us_per_endpoint']:6.0f} us/ep  peak RSS {r['peak_rss_mb']:5.0f} MB  "
        f"feed errors {r['feed_errors']}"
    )


def markdown(out: dict[str, Any]) -> str:
    """The result tables (machine, per-N medians, phase split) as Markdown."""
    m = out["machine"]
    pk = ", ".join(f"{k} {v}" for k, v in m["packages"].items())
    pin = out["pinning"]
    lines = [
        f"- machine: {m['cores']} vCPU {m['cpu']}, {m['memory']}, Linux {m['kernel']}, "
        f"CPython {m['python']}",
        f"- packages: {pk}",
        f"- pinning: Governor on core {pin['governor_core']}, emulator on core "
        f"{pin['emulator_core']}; emulator world {out['emulator']}",
        f"- command: `{out['command']}`",
        "",
        "| N | scrape conc. | median tick s (min-max) | endpoints/s | CPU us/endpoint "
        "| fits 15 s | peak RSS MB | first tick s | load avg 1m before/after |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in out["results"]:
        la = r.get("loadavg_1m_before_after", [float("nan")] * 2)
        lines.append(
            f"| {r['endpoints']:,} | {r['concurrency']} | {r['tick_wall_s']:.2f} "
            f"({r['tick_wall_min_s']:.2f}-{r['tick_wall_max_s']:.2f}) "
            f"| {r['endpoints_per_s']:,.0f} | {r['cpu_us_per_endpoint']:,.0f} "
            f"| {'yes' if r['fits_15s_tick'] else 'no'} | {r['peak_rss_mb']:.0f} "
            f"| {r['first_tick_wall_s']:.2f} | {la[0]:.1f} / {la[1]:.1f} |"
        )
    lines += [
        "",
        "Split of the median tick, CPU seconds of the Governor process (wall seconds in "
        "brackets); `fetch` = scrape - parse (HTTP client, event loop, error mapping):",
        "",
        "| N | conc. | list | fetch | parse | decide | persist | tick CPU | "
        "fetch share | parse share | decide share |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in out["results"]:
        fetch_c = r["scrape_cpu_s"] - r["parse_cpu_s"]
        fetch_w = r["scrape_wall_s"] - r["parse_wall_s"]
        tot = r["tick_cpu_s"] or float("nan")
        lines.append(
            f"| {r['endpoints']:,} | {r['concurrency']} "
            f"| {r['list_cpu_s']:.2f} ({r['list_wall_s']:.2f}) "
            f"| {fetch_c:.2f} ({fetch_w:.2f}) "
            f"| {r['parse_cpu_s']:.2f} ({r['parse_wall_s']:.2f}) "
            f"| {r['decide_cpu_s']:.2f} ({r['decide_wall_s']:.2f}) "
            f"| {r['persist_cpu_s']:.2f} ({r['persist_wall_s']:.2f}) "
            f"| {r['tick_cpu_s']:.2f} ({r['tick_wall_s']:.2f}) "
            f"| {fetch_c / tot:.0%} | {r['parse_cpu_s'] / tot:.0%} "
            f"| {r['decide_cpu_s'] / tot:.0%} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[100, 1000, 10000])
    p.add_argument("--ticks", type=int, default=5, help="measured ticks (after one warm-up)")
    p.add_argument("--ticks-10k", type=int, default=3, help="measured ticks at N >= 10,000")
    p.add_argument(
        "--concurrency", type=int, nargs="+", default=[16], help="scrape.concurrency values"
    )
    p.add_argument("--max-connections", type=int, default=32, help="api.max_connections")
    p.add_argument("--ledger", action="store_true", help="also run the cost ledger")
    p.add_argument(
        "--no-fill-windows",
        dest="fill_windows",
        action="store_false",
        help="start with empty windows (default: filled to retention after the warm-up tick)",
    )
    p.add_argument(
        "--sweep-max",
        type=int,
        default=1000,
        help="run every --concurrency value only up to this N; larger N use the first",
    )
    p.add_argument("--live", action="store_true", help="emulator time keeps moving")
    p.add_argument(
        "--budget-s",
        type=float,
        help="loop.tick_budget_s (default: the 15 s tick). A tick that runs out of it skips "
        "feeds (counted as feed errors), so a slow build does less work: raise it to compare",
    )
    p.add_argument("--profile", help="cProfile the measured ticks of each worker to this file")
    p.add_argument(
        "--tracemalloc",
        type=int,
        default=0,
        metavar="FRAMES",
        help="trace allocations (FRAMES deep), print the top sites (slow: no CPU figures)",
    )
    p.add_argument(
        "--gc-stats", action="store_true", help="time garbage collections per tick and generation"
    )
    p.add_argument(
        "--gc",
        choices=("daemon", "default", "disable", "freeze", "tuned"),
        default="daemon",
        help="after the warm-up tick: what the daemon's run loop does (loop.tune_gc, when the "
        "measured build has it; else nothing), leave GC alone, gc.disable(), gc.freeze() the "
        "heap, or freeze and collect the young generation every 50,000 allocations instead of 700",
    )
    p.add_argument("--out", help="write OUT.json (and print the table)")
    p.add_argument("--render", metavar="JSON", help="print the Markdown tables of a result file")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--url", help=argparse.SUPPRESS)
    p.add_argument("--cpu", type=int, help=argparse.SUPPRESS)
    p.add_argument("--code-root", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.render:
        print(markdown(json.loads(Path(args.render).read_text())), end="")
        return
    if args.worker:
        if args.cpu is not None:
            os.sched_setaffinity(0, {args.cpu})
        try:  # the loop the measured build's daemon runs on (its `loop.event_loop: auto`)
            from controller.daemon.eventloop import run as run_loop
        except ImportError:  # a build from before the choice: asyncio's, as its daemon did
            out = asyncio.run(_worker(args))
        else:
            out = run_loop(_worker(args))
        import controller

        out["code"] = str(Path(controller.__file__).resolve().parent.parent)  # checkout measured
        print(json.dumps(out))
        return
    out = _driver(args)
    if args.out:
        Path(args.out + ".json").write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
