"""Control-quality benchmark: every system of `governor simulate` over the whole load suite, cold.

    python benchmarks/control_quality.py                 # all 12 loads, one worker per core
    python benchmarks/control_quality.py --only sparse --jobs 1 --out /tmp/cq   # one load

For each load of `controller.backtest.loads` (train and test split), it replays, from a cold start
after 600 s of idle time, exactly the default comparison set of `governor simulate --trace <load>`:
the platform autoscaler at its default threshold and at its best threshold in hindsight,
static-peak in hindsight, HPA-style tracking, Governor's shipped default (untuned), Governor's
autopilot (through `AUTOPILOT_HOOK`; "not available" until it exists), both oracles and the lower
bound. Nothing is tuned here: Governor runs with whatever defaults it ships.

It writes `benchmarks/results/control_quality.{json,md}`: per load and system the cost and SLO
attainment (no per-tick timelines), the summary figures of the issue's acceptance criteria, the
command, the machine, the package versions and the runtime. Each (load, system) pair is one
`run_system()` call in a worker process (`--jobs`, default: the cores; `controller.backtest.pool`,
results the same whatever the jobs); each line on stderr says how much of the run's work is
done and an ETA. Governor's replays run in the fast mode (`SimConfig.mode`, the default; same
decisions as the full mode, tests/test_fast_replay.py).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import platform
import shlex
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.harness import cpu_model, versions
from controller.backtest.pool import default_jobs, run_grid

ROOT = Path(__file__).resolve().parent
RESULTS = ROOT / "results"
SYSTEMS = (
    "platform-default",
    "platform-best (hindsight)",
    "platform-zero",
    "static-peak (hindsight)",
    "hpa-utilisation",
    "governor-default",
    "governor-autopilot",
    "oracle",
    "oracle-overall",
    "lower-bound",
    "reach (floor 1)",
    "reach (floor 0)",
)
# The attainment bound (`run_reach`), for a floor-1 and a floor-0 deployment: the most any
# controller holding only its floor at the load's first request can attain.
REACH = {"reach (floor 1)": 1, "reach (floor 0)": 0}
# Shapes the acceptance criteria group together.
STEADY_LIKE = {"steady", "diurnal", "multi-day", "ramp", "step"}
BURSTY = {"bursty", "flash", "sparse", "recurring"}


def _setup(name: str, attainment: float) -> tuple[Any, Any, Any]:
    from controller.backtest.loads import LOADS
    from controller.backtest.simulate import PolicySpec, default_policies, load_sim_config
    from controller.logs import configure_logging

    configure_logging(fmt="console", level="error")
    load = next(ld for ld in LOADS if ld.name == name)
    cfg = load_sim_config(None, slo_attainment=attainment)
    cfg.policies = default_policies(cfg) + [
        PolicySpec(name, "reach", floor=floor) for name, floor in REACH.items()
    ]
    return load, cfg, load.trace()


def _run_one(name: str, attainment: float, system: str) -> dict[str, Any] | None:
    """One system over one load (a worker task); None when the system is not available."""
    from controller.backtest.simulate import run_system

    _, cfg, trace = _setup(name, attainment)
    spec = next(p for p in cfg.policies if p.name == system)
    r = asyncio.run(run_system(cfg, trace, spec))
    if r is None:
        return None
    return {
        "kind": r.kind,
        "cost_usd": r.cost_usd,
        "slo_attainment": r.slo_attainment,
        "meets_slo": r.meets_slo,
        "replica_hours": r.replica_hours,
        "rejected_503": r.rejected_503,
        "wait_p99_ms": r.wait_p99_ms,
        "api_actions": r.api_actions,
        "detail": r.detail,
        "runtime_s": r.runtime_s,
        "tuning": r.tuning,
    }


def _row(name: str, attainment: float, results: dict[str, dict[str, Any] | None]) -> dict:
    load, cfg, trace = _setup(name, attainment)
    return {
        "load": name,
        "split": load.split,
        "shape": load.shape,
        "seed": load.seed,
        "description": load.description,
        "requests": len(trace),
        "hours": round(trace.duration_s / 3600.0, 2),
        "lead_in_s": cfg.lead_in_s,
        "cpu_s": round(sum(r["runtime_s"] for r in results.values() if r), 1),
        "runs": {k: v for k, v in results.items() if v is not None},
        "not_available": [k for k, v in results.items() if v is None],
    }


def _geomean(xs: list[float]) -> float | None:
    return math.exp(sum(math.log(x) for x in xs) / len(xs)) if xs else None


def _reachable(row: dict[str, Any]) -> bool:
    x = row["runs"].get("reach (floor 1)")
    return x is None or bool(x["meets_slo"])


def _summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The acceptance figures for Governor's fixed default, per split."""
    out: dict[str, Any] = {}
    for split in ("test", "train", "all"):
        sel = [r for r in rows if split == "all" or r["split"] == split]
        gov = [(r, r["runs"]["governor-default"]) for r in sel]
        steady = [
            g["cost_usd"] / r["runs"]["oracle"]["cost_usd"]
            for r, g in gov
            if r["shape"] in STEADY_LIKE
        ]
        out[split] = {
            "loads": len(sel),
            "default_meets_slo": sum(1 for _, g in gov if g["meets_slo"]),
            # loads where 99 % is within reach of a floor-1 controller from a cold start
            "reachable_floor1": sum(1 for r, _ in gov if _reachable(r)),
            "default_meets_slo_where_reachable": sum(
                1 for r, g in gov if g["meets_slo"] and _reachable(r)
            ),
            "default_vs_oracle_geomean_steady_diurnal_multiday": _geomean(steady),
            "default_vs_oracle_overall_geomean_all": _geomean(
                [g["cost_usd"] / r["runs"]["oracle-overall"]["cost_usd"] for r, g in gov]
            ),
            "bursty_default_at_most_static_peak": sum(
                1
                for r, g in gov
                if r["shape"] in BURSTY
                and g["cost_usd"] <= r["runs"]["static-peak (hindsight)"]["cost_usd"]
            ),
            "bursty_loads": sum(1 for r, _ in gov if r["shape"] in BURSTY),
            "default_at_most_platform_best": sum(
                1
                for r, g in gov
                if g["cost_usd"] <= r["runs"]["platform-best (hindsight)"]["cost_usd"]
            ),
        }
    return out


def _cell(runs: dict[str, Any], name: str) -> str:
    x = runs.get(name)
    if x is None:
        return "n/a"
    if x["kind"] == "bound":
        return f"${x['cost_usd']:.2f}"
    if x["kind"] == "reach":
        return f"{100 * x['slo_attainment']:.2f}%" + ("" if x["meets_slo"] else " ✗")
    mark = "" if x["meets_slo"] else " ✗"
    return f"${x['cost_usd']:.2f} ({100 * x['slo_attainment']:.1f}%){mark}"


def _markdown(data: dict[str, Any]) -> str:
    rows = data["rows"]
    md = [
        "# Control quality over the load suite (generated by `benchmarks/control_quality.py`)",
        "",
        f"Command: `{data['command']}` at commit {data.get('commit') or 'unknown'}. "
        f"Machine: {data['machine']['cpu']}, "
        f"{data['machine']['cores']} cores, Python {data['machine']['python']}; "
        + ", ".join(f"{k} {v}" for k, v in data["versions"].items())
        + f". Wall time {data['wall_s']:.0f} s with {data['jobs']} worker processes "
        f"(CPU time of the runs: {sum(r['cpu_s'] for r in rows):.0f} s).",
        "",
        f"SLO: queueing delay <= {data['slo_ms']:g} ms for >= {100 * data['slo_attainment']:g} % "
        "of requests (503s are misses). Every system starts cold, 600 s of idle time before the "
        "first request. ✗: misses the goal. `hindsight`: chosen knowing the load (no controller "
        "can do that). The lower bound is a cost no controller meeting the SLO can beat. `reach`: "
        "the attainment bound, the most any controller holding only its floor (1 or 0) at the "
        "load's first request can attain (the ceiling from that instant); ✗ there: the goal is "
        "out of reach for such a controller.",
        "",
        "| load | split | shape | requests | "
        + " | ".join(s.replace(" (hindsight)", " (h)") for s in SYSTEMS)
        + " | default / oracle | default / bound |",
        "|---|---|---|---:|" + "---:|" * (len(SYSTEMS) + 2),
    ]
    for r in rows:
        runs = r["runs"]
        gov, orc, lb = runs["governor-default"], runs["oracle"], runs["lower-bound"]
        md.append(
            f"| {r['load']} | {r['split']} | {r['shape']} | {r['requests']:,} | "
            + " | ".join(_cell(runs, s) for s in SYSTEMS)
            + f" | {gov['cost_usd'] / orc['cost_usd']:.2f} | "
            f"{gov['cost_usd'] / lb['cost_usd']:.2f} |"
        )
    md += ["", "## Governor's fixed default against the acceptance criteria", ""]
    md += [
        "| split | loads | meets 99 % | 99 % reachable (floor 1) | meets 99 % where reachable "
        "| x oracle, geomean of steady / diurnal / multi-day / "
        "ramp / step | x oracle-overall, geomean of all | bursty loads at most static-peak (h) "
        "| loads at most platform-best (h) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for split, s in data["summary"].items():
        g1 = s["default_vs_oracle_geomean_steady_diurnal_multiday"]
        g2 = s["default_vs_oracle_overall_geomean_all"]
        md.append(
            f"| {split} | {s['loads']} | {s['default_meets_slo']} | {s['reachable_floor1']} | "
            f"{s['default_meets_slo_where_reachable']} | "
            f"{'-' if g1 is None else f'{g1:.2f}'} | {'-' if g2 is None else f'{g2:.2f}'} | "
            f"{s['bursty_default_at_most_static_peak']} of {s['bursty_loads']} | "
            f"{s['default_at_most_platform_best']} of {s['loads']} |"
        )
    missing = sorted({n for r in rows for n in r["not_available"]})
    if missing:
        md += ["", f"Not available (not run, no figure): {', '.join(missing)}."]
    md += ["", "## Details", ""]
    for r in rows:
        md.append(
            f"- **{r['load']}** ({r['split']}, seed {r['seed']}): {r['description']}; "
            f"{r['requests']:,} requests over {r['hours']} h; runs {r['cpu_s']} s"
        )
        for name in SYSTEMS:
            x = r["runs"].get(name)
            if x is not None:
                md.append(f"  - {name}: {x['detail']} ({x['runtime_s']:.0f} s)")
    return "\n".join(md) + "\n"


def _commit() -> str | None:
    """The checkout's commit (with "+dirty" for uncommitted changes), so results name their code."""
    import subprocess

    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=ROOT,
            capture_output=True,
            text=True,
        ).stdout.strip()
    except OSError:
        return None
    return (head + ("+dirty" if dirty else "")) or None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jobs", type=int, default=None, help="worker processes (default: the cores)")
    ap.add_argument("--only", action="append", help="only this load (repeatable)")
    ap.add_argument("--slo-attainment", type=float, default=0.99)
    ap.add_argument("--out", type=Path, default=RESULTS, help="directory for the results")
    a = ap.parse_args(argv)
    from controller.backtest.loads import LOADS

    loads = [ld for ld in LOADS if not a.only or ld.name in a.only]
    # one task per (load, system), the longest loads first, so the workers finish together
    tasks = [(ld.name, s) for ld in loads for s in SYSTEMS]
    hours = {ld.name: ld.trace().duration_s for ld in loads}
    tasks.sort(key=lambda t: -hours[t[0]])
    jobs = default_jobs() if a.jobs is None else a.jobs
    if jobs < 1:
        ap.error(f"--jobs: expected >= 1, got {jobs}")
    t0 = time.perf_counter()
    results: dict[str, dict[str, dict[str, Any] | None]] = {ld.name: {} for ld in loads}
    figures = run_grid(
        _run_one,
        [(name, a.slo_attainment, system) for name, system in tasks],
        jobs=jobs,
        weights=[hours[name] for name, _ in tasks],
        labels=[f"{name}: {system}" for name, system in tasks],
        describe=lambda r: "not available" if r is None else f"{r['runtime_s']:.0f} s",
    )
    for (name, system), r in zip(tasks, figures, strict=True):
        results[name][system] = r
    rows = [
        _row(ld.name, a.slo_attainment, {s: results[ld.name][s] for s in SYSTEMS}) for ld in loads
    ]
    data = {
        "command": (
            "python benchmarks/control_quality.py "
            + shlex.join(argv if argv is not None else sys.argv[1:])
        ).strip(),
        "commit": _commit(),
        "slo_ms": 1000.0,
        "slo_attainment": a.slo_attainment,
        "jobs": jobs,
        "wall_s": round(time.perf_counter() - t0, 1),
        "machine": {
            "cpu": cpu_model(),
            "cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "versions": versions(["governor", "httpx", "pydantic", "starlette"]),
        "summary": _summary(rows),
        "rows": rows,
    }
    a.out.mkdir(parents=True, exist_ok=True)
    (a.out / "control_quality.json").write_text(json.dumps(data, indent=1) + "\n")
    (a.out / "control_quality.md").write_text(_markdown(data))
    print(f"wrote {a.out / 'control_quality.md'} ({data['wall_s']} s)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
