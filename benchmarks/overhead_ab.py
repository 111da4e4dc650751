"""Side by side: the overhead benchmark's worker on two checkouts, alternately, against one fleet.

    git worktree add --detach /tmp/base-16a 76de7da        # the previous commit
    git worktree add --detach /tmp/new-16a HEAD             # this one (kept still while it runs)
    python benchmarks/overhead_ab.py --base /tmp/base-16a --new /tmp/new-16a \\
        --sizes 10000 --rounds 3 --ticks 3 --ledger --budget-s 120 --nice -5 \\
        --out benchmarks/results/overhead-16

Both sides run this tree's `overhead.py --worker` (same harness, same settings, same emulator
process and frozen world) with `--code-root` pointing at the checkout measured, so only the
measured code differs. Rounds alternate base, new, base, new, ... so drift in the machine's load
hits both. Figures are process CPU seconds of the Governor worker (pinned to one core, the
emulator on the other), medians over every measured tick of every round, with the range; peak
RSS is each round's measured-tick high-water mark (median and range over rounds). `--budget-s`
should be large enough that no side skips feeds (the feed-error column says whether one did): a
tick that runs out of budget does less work and looks cheaper.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

import harness
import overhead

ROOT = harness.ROOT
PHASES = overhead.PHASES


def _commit(tree: str) -> str:
    out = subprocess.run(
        ["git", "-C", tree, "rev-parse", "HEAD"], capture_output=True, text=True, check=False
    )
    return out.stdout.strip() or "unknown"


def _round(url: str, core: int | None, args: argparse.Namespace, tree: str) -> dict[str, Any]:
    knobs = {
        "concurrency": args.concurrency,
        "max_connections": max(args.concurrency, 32),
        "ticks": args.ticks,
    }
    load_before = os.getloadavg()[0]
    run = overhead._run_worker(url, core, args, code_root=tree, nice=args.nice, **knobs)
    run["loadavg_1m_before_after"] = [load_before, os.getloadavg()[0]]
    return run


def _side(runs: list[dict[str, Any]], n: int) -> dict[str, Any]:
    ticks = [t for r in runs for t in r["ticks"][1:]]

    def med(key: str) -> float:
        return statistics.median(t[key] for t in ticks)

    rss = [r["peak_rss_mb"] for r in runs]
    return {
        "code": sorted({r["code"] for r in runs}),
        "event_loop": sorted({r.get("event_loop", "asyncio.unix_events") for r in runs}),
        "rounds": len(runs),
        "ticks_measured": len(ticks),
        "tick_cpu_s": med("cpu_s"),
        "tick_cpu_min_s": min(t["cpu_s"] for t in ticks),
        "tick_cpu_max_s": max(t["cpu_s"] for t in ticks),
        "tick_wall_s": med("wall_s"),
        **{f"{p}_cpu_s": med(f"{p}_cpu_s") for p in PHASES},
        "gc_s": med("gc_s") if "gc_s" in ticks[0] else None,
        "endpoints_per_cpu_s": n / med("cpu_s"),
        "peak_rss_mb": statistics.median(rss),
        "peak_rss_min_mb": min(rss),
        "peak_rss_max_mb": max(rss),
        "feed_errors_max": max(t["feed_errors"] for t in ticks),
        "decided_min": min(t["endpoints"] for t in ticks),
        "loadavg_1m": [x for r in runs for x in r["loadavg_1m_before_after"]],
        "per_round_cpu_s": [statistics.median(t["cpu_s"] for t in r["ticks"][1:]) for r in runs],
        "per_round_peak_rss_mb": rss,
        "per_tick": [r["ticks"] for r in runs],
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    gov_core, emu_core = harness.cores()
    trees = {"base": args.base, "new": args.new}
    results = []
    for n in args.sizes:
        proc, url = harness.start_fleet(n, emu_core, [])
        runs: dict[str, list[dict[str, Any]]] = {"base": [], "new": []}
        try:
            for i in range(args.rounds):
                for side in ("base", "new") if i % 2 == 0 else ("new", "base"):
                    r = _round(url, gov_core, args, trees[side])
                    runs[side].append(r)
                    cpu = statistics.median(t["cpu_s"] for t in r["ticks"][1:])
                    print(
                        f"N={n} round {i + 1} {side}: tick CPU {cpu:.2f} s, peak RSS "
                        f"{r['peak_rss_mb']:.0f} MB, load {r['loadavg_1m_before_after']}",
                        file=sys.stderr,
                        flush=True,
                    )
        finally:
            harness.stop_fleet(proc)
        base, new = _side(runs["base"], n), _side(runs["new"], n)
        results.append(
            {
                "endpoints": n,
                "base": base,
                "new": new,
                "cpu_ratio_new_over_base": new["tick_cpu_s"] / base["tick_cpu_s"],
                "rss_ratio_new_over_base": new["peak_rss_mb"] / base["peak_rss_mb"],
            }
        )
    return {
        "machine": overhead._machine(),
        "pinning": {"governor_core": gov_core, "emulator_core": emu_core},
        "command": " ".join(["python", "benchmarks/overhead_ab.py", *sys.argv[1:]]),
        "commits": {"base": _commit(args.base), "new": _commit(args.new)},
        "settings": {
            "ledger": args.ledger,
            "budget_s": args.budget_s,
            "concurrency": args.concurrency,
            "ticks_per_round": args.ticks,
            "rounds": args.rounds,
            "nice": args.nice,
            "gc": args.gc,
        },
        "results": results,
    }


def markdown(out: dict[str, Any]) -> str:
    m, c, st = out["machine"], out["commits"], out["settings"]
    pk = ", ".join(f"{k} {v}" for k, v in m["packages"].items())
    lines = [
        f"- machine: {m['cores']} vCPU {m['cpu']}, {m['memory']}, Linux {m['kernel']}, "
        f"CPython {m['python']}",
        f"- packages: {pk}",
        f"- commits: base `{c['base'][:10]}`, new `{c['new'][:10]}`",
        f"- command: `{out['command']}`",
        f"- {st['rounds']} rounds per side (alternating), {st['ticks_per_round']} measured ticks "
        f"each after a warm-up tick and the window fill; ledger {'on' if st['ledger'] else 'off'}; "
        f"tick budget {st['budget_s']} s; nice {st['nice']}; Governor on core "
        f"{out['pinning']['governor_core']}, emulator on core {out['pinning']['emulator_core']}",
        "",
        "| N | side | tick CPU s, median (min-max) | endpoints/CPU-s | list | fetch | parse "
        "| decide | persist | GC s | peak RSS MB, median (min-max) | feed errors | load avg 1m |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in out["results"]:
        for side in ("base", "new"):
            s = r[side]
            fetch = s["scrape_cpu_s"] - s["parse_cpu_s"]
            gc_s = "-" if s["gc_s"] is None else f"{s['gc_s']:.2f}"
            la = s["loadavg_1m"]
            lines.append(
                f"| {r['endpoints']:,} | {side} | {s['tick_cpu_s']:.2f} "
                f"({s['tick_cpu_min_s']:.2f}-{s['tick_cpu_max_s']:.2f}) "
                f"| {s['endpoints_per_cpu_s']:,.0f} | {s['list_cpu_s']:.2f} | {fetch:.2f} "
                f"| {s['parse_cpu_s']:.2f} | {s['decide_cpu_s']:.2f} | {s['persist_cpu_s']:.2f} "
                f"| {gc_s} | {s['peak_rss_mb']:.0f} ({s['peak_rss_min_mb']:.0f}-"
                f"{s['peak_rss_max_mb']:.0f}) | {s['feed_errors_max']} "
                f"| {min(la):.1f}-{max(la):.1f} |"
            )
        lines.append(
            f"| {r['endpoints']:,} | **new / base** | **{r['cpu_ratio_new_over_base']:.2f}** | "
            f"| | | | | | | **{r['rss_ratio_new_over_base']:.2f}** | | |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--base", help="checkout of the previous commit (required to measure)")
    p.add_argument("--new", default=str(ROOT), help="checkout measured against it")
    p.add_argument("--sizes", type=int, nargs="+", default=[10_000])
    p.add_argument("--rounds", type=int, default=3, help="worker runs per side")
    p.add_argument("--ticks", type=int, default=3, help="measured ticks per run")
    p.add_argument("--concurrency", type=int, default=16)
    p.add_argument("--ledger", action="store_true")
    p.add_argument("--budget-s", type=float, default=120.0)
    p.add_argument("--nice", type=int, default=0, help="niceness of the workers (-5 as root)")
    p.add_argument("--gc", default="daemon", help="overhead.py --gc for both sides")
    p.add_argument("--out", help="write OUT.json and OUT.md")
    p.add_argument("--render", metavar="JSON", help="print the Markdown table of a result file")
    args = p.parse_args()
    if args.render:
        print(markdown(json.loads(Path(args.render).read_text())), end="")
        return
    if not args.base:
        p.error("--base is required to measure (give the previous commit's checkout)")
    # What overhead._run_worker reads from its namespace.
    args.fill_windows, args.profile, args.tracemalloc, args.gc_stats = True, None, 0, True
    out = run(args)
    if args.out:
        Path(args.out + ".json").write_text(json.dumps(out, indent=2) + "\n")
        Path(args.out + ".md").write_text(markdown(out))
    print(markdown(out), end="")


if __name__ == "__main__":
    main()
