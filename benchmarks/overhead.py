"""Controller overhead: endpoints listed, scraped, parsed and decided per second on one core.

    python benchmarks/overhead.py                      # 100 / 1,000 / 10,000 endpoints
    python benchmarks/overhead.py --sizes 1000 --ticks 5 --concurrency 4 16
    python benchmarks/overhead.py --sizes 1000 --profile /tmp/gov.prof   # cProfile one worker
    python benchmarks/overhead.py --out benchmarks/results/overhead      # writes overhead.json
    python benchmarks/overhead.py --render benchmarks/results/overhead.json  # Markdown tables

For each size N the driver starts the emulator (`benchmarks/fleet.py`) in its own process with N
running endpoints, then runs Governor in a second, fresh process (so the peak RSS is per run). With
two or more cores the emulator is pinned to core 1 and Governor to core 0, so the emulator's CPU is
not Governor's. Governor is the production object (`controller.loop.Governor`) in dry-run, with the
real `EndpointsClient` (httpx) over loopback HTTP, the real `Scraper`/`parse_feed`, the windows,
the policies and the combiner, a real SQLite state store and JSON logging at level info (to a
file). The cost ledger is off (it is a separate observer; `--ledger` turns it on).

One warm-up tick (it opens the connection pool and fills the windows), then `--ticks` measured
ticks back to back. Every phase of a tick is timed in wall and CPU seconds by wrapping the
Governor's own methods (no code path is changed): list (`_discover`), scrape (`Scraper.scrape`,
which includes parsing; parsing alone is timed by wrapping `parse_feed`), decide
(`_decide_and_act`) and persist (`StateStore.save_memory`). Medians over the measured ticks.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from importlib import metadata
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
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
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _fill_windows(gov: Any, store_cls: Any, interval_s: float) -> None:
    """Give every window the history a long-running daemon has (retention / tick interval
    samples, stamped in the past), so RSS and decide time are the steady state, not a cold start.
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
        for k in range(steps, 0, -1):
            new.add(key, replace(latest, at=latest.at - k * interval_s))
        new.add(key, latest)
    gov.windows = new


async def _worker(args: argparse.Namespace) -> dict[str, Any]:
    import controller.scrape as scrape_mod
    from controller.cli import make_client
    from controller.clock import WallClock
    from controller.exporter import Metrics
    from controller.ledger import CostTracker
    from controller.logs import configure_logging
    from controller.loop import Governor
    from controller.settings import load_settings
    from controller.store import StateStore
    from controller.windows import WindowStore

    tmp = Path(tempfile.mkdtemp(prefix="govbench-"))
    log_path = tmp / "governor.log"
    log_file = log_path.open("w")  # kept open for the whole run
    configure_logging(fmt="json", level="info", stream=log_file)
    overrides: dict[str, Any] = {
        "api": {"base_url": args.url, "max_connections": args.max_connections},
        "namespaces": ["bench"],
        "manage": {"tags": ["bench"]},
        "loop": {"tick_interval_s": 15, "dry_run": True},
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

    def timed(phase: str, fn: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        async def wrapper(*a: Any, **kw: Any) -> Any:
            w, c = time.perf_counter(), time.process_time()
            try:
                return await fn(*a, **kw)
            finally:
                slot = acc.setdefault(phase, [0.0, 0.0])
                slot[0] += time.perf_counter() - w
                slot[1] += time.process_time() - c

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
    profiler = None
    metrics = Metrics()  # as in the daemon: every API call and decision is counted
    async with make_client(settings, metrics=metrics) as client:
        gov = Governor(
            settings, clock=WallClock(), client=client, store=store, cost=cost, metrics=metrics
        )
        gov._discover = timed("list", gov._discover)  # type: ignore[method-assign]
        gov.scraper.scrape = timed("scrape", gov.scraper.scrape)  # type: ignore[method-assign]
        gov._decide_and_act = timed("decide", gov._decide_and_act)  # type: ignore[method-assign]
        for i in range(args.ticks + 1):
            if i == 1 and args.profile:
                import cProfile

                profiler = cProfile.Profile()
                profiler.enable()
            acc.clear()
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
            }
            for phase in PHASES:
                pw, pc = acc.get(phase, [0.0, 0.0])
                entry[f"{phase}_wall_s"], entry[f"{phase}_cpu_s"] = pw, pc
            ticks.append(entry)
            if i == 0 and args.fill_windows:
                _fill_windows(gov, WindowStore, settings.loop.tick_interval_s)
        if profiler is not None:
            profiler.disable()
            profiler.dump_stats(args.profile)
    store.close()
    if cost is not None:
        cost.close()
    log_file.close()
    return {"ticks": ticks, "peak_rss_mb": _peak_rss_mb()}


# ------------------------------------------------------------------------------------- driver


def _cores() -> tuple[int | None, int | None]:
    """(Governor's core, the emulator's core), or Nones when there are fewer than two."""
    if not hasattr(os, "sched_getaffinity"):
        return None, None
    cpus = sorted(os.sched_getaffinity(0))
    return (cpus[0], cpus[1]) if len(cpus) >= 2 else (None, None)


def _machine() -> dict[str, Any]:
    model = "unknown"
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    mem = "unknown"
    with contextlib.suppress(OSError), open("/proc/meminfo") as f:
        mem = f"{int(f.readline().split()[1]) // 1024} MiB"
    pkgs = {}
    for name in ("httpx", "httpcore", "prometheus_client", "pydantic", "uvicorn", "starlette"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            pkgs[name] = metadata.version(name)
    return {
        "cpu": model,
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
        "rss_after_mb": run["ticks"][-1]["rss_mb"],
        "fits_15s_tick": wall < 15.0,
    }


def _start_fleet(n: int, core: int | None, extra: list[str]) -> tuple[subprocess.Popen, str]:
    cmd = [sys.executable, str(ROOT / "benchmarks" / "fleet.py"), "--endpoints", str(n), *extra]
    if core is not None:
        cmd += ["--cpu", str(core)]
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line.startswith("READY "):
        proc.kill()
        raise RuntimeError(f"emulator did not start: {line!r}")
    return proc, line.split()[1]


def _stop_fleet(proc: subprocess.Popen) -> None:
    with contextlib.suppress(Exception):
        assert proc.stdin is not None
        proc.stdin.close()  # the fleet exits when its stdin closes
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.terminate()
        proc.wait(timeout=10)


def _run_worker(url: str, core: int | None, args: argparse.Namespace, **knobs: Any) -> dict:
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
    out = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=3600)
    if out.returncode != 0:
        raise RuntimeError(f"worker failed ({out.returncode}):\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def _driver(args: argparse.Namespace) -> dict[str, Any]:
    gov_core, emu_core = _cores()
    results = []
    fleet_args = ["--live"] if args.live else []
    for n in args.sizes:
        proc, url = _start_fleet(n, emu_core, fleet_args)
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
                results.append(row)
                print(_line(row), file=sys.stderr, flush=True)
        finally:
            _stop_fleet(proc)
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
        f"{r['cpu_us_per_endpoint']:6.0f} us/ep  peak RSS {r['peak_rss_mb']:5.0f} MB"
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
    p.add_argument("--profile", help="cProfile the measured ticks of each worker to this file")
    p.add_argument("--out", help="write OUT.json (and print the table)")
    p.add_argument("--render", metavar="JSON", help="print the Markdown tables of a result file")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--url", help=argparse.SUPPRESS)
    p.add_argument("--cpu", type=int, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.render:
        print(markdown(json.loads(Path(args.render).read_text())), end="")
        return
    if args.worker:
        if args.cpu is not None:
            os.sched_setaffinity(0, {args.cpu})
        print(json.dumps(asyncio.run(_worker(args))))
        return
    out = _driver(args)
    if args.out:
        Path(args.out + ".json").write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
