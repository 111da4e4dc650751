"""Side by side: the cost ledger's per-tick CPU (`Ledger.observe`) on two checkouts, alternately.

    git worktree add --detach /tmp/base-l <previous commit>
    git worktree add --detach /tmp/new-l HEAD
    python benchmarks/ledger_ab.py --base /tmp/base-l --new /tmp/new-l --rounds 5 \\
        --out benchmarks/results/ledger_ab

The daemon benchmark (`overhead_ab.py`) cannot resolve a change of a few per cent of a tick on a
shared machine; this one times the ledger alone. Each round is a fresh process per side that
imports the measured checkout's `controller` (the path it imported is recorded), builds N listed
endpoints with the platform's own models, observes them once, then times `--ticks` observes 15 s
apart. Each tick `--churn` of the endpoints change their target (a different slice each tick), the
rest are steady. Figures: process CPU seconds per observe, median over every measured tick of
every round, and the ratio new / base.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

T0 = 1_800_000_000.0
TICK = 15.0


def _body(i: int, target: int) -> dict[str, Any]:
    return {
        "name": f"e{i:05d}",
        "type": "protected",
        "accountId": None,
        "healthRoute": "/health",
        "tags": ["bench"],
        "provider": {"vendor": "aws", "region": "us-east-1"},
        "compute": {
            "accelerator": "gpu",
            "instanceType": "nvidia-l4",
            "instanceSize": "x1",
            "scaling": {"minReplica": 0, "maxReplica": 4, "scaleToZeroTimeout": 15},
        },
        "model": {"repository": "gpt2", "framework": "pytorch", "task": "text-generation"},
        "status": {
            "createdAt": "2026-01-01T00:00:00.000000000Z",
            "updatedAt": "2026-01-01T00:00:00Z",
            "state": "running",
            "readyReplica": target,
            "targetReplica": target,
        },
    }


def worker(args: argparse.Namespace) -> dict[str, Any]:
    sys.path.insert(0, args.code_root)
    import controller
    from controller.cost.ledger import Ledger
    from controller.cost.pricing import PriceBook
    from controller.platform.models import Endpoint

    def listing(tick: int) -> list[Any]:
        out = []
        k = max(1, int(args.n * args.churn)) if args.churn > 0 else 0
        lo = (tick * k) % args.n
        for i in range(args.n):
            moved = k and (lo <= i < lo + k or i < lo + k - args.n)
            ep = Endpoint.model_validate(_body(i, 3 if moved and tick % 2 else 2))
            ep.namespace = "bench"
            out.append(ep)
        return out

    listings = [listing(t) for t in range(args.ticks + 1)]
    with tempfile.TemporaryDirectory() as d:
        lg = Ledger(Path(d) / "ledger.sqlite", prices=PriceBook(), tick_interval_s=TICK)
        lg.observe(listings[0], now=T0)
        ticks = []
        for t in range(1, args.ticks + 1):
            now = T0 + t * TICK
            c = time.process_time()
            lg.observe(listings[t], now=now, asked_at=now - 0.5)
            ticks.append(time.process_time() - c)
        lg.close()
    return {"code": controller.__file__, "ticks": ticks}


def _run(tree: str, args: argparse.Namespace) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--worker", "--code-root", tree, "--n", str(args.n)]
    cmd += ["--ticks", str(args.ticks), "--churn", str(args.churn)]
    load = os.getloadavg()[0]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True)
    run = json.loads(out.stdout)
    run["loadavg_1m_before_after"] = [load, os.getloadavg()[0]]
    return run


def _commit(tree: str) -> str:
    out = subprocess.run(["git", "-C", tree, "rev-parse", "HEAD"], capture_output=True, text=True)
    return out.stdout.strip() or "unknown"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--code-root", help=argparse.SUPPRESS)
    p.add_argument("--base")
    p.add_argument("--new")
    p.add_argument("--n", type=int, default=10_000, help="listed endpoints")
    p.add_argument("--ticks", type=int, default=8, help="measured observes per round")
    p.add_argument("--churn", type=float, default=0.02, help="share changing target per tick")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--out", help="write OUT.json")
    args = p.parse_args()
    if args.worker:
        print(json.dumps(worker(args)))
        return
    if not (args.base and args.new):
        p.error("--base and --new are required")
    runs: dict[str, list[dict[str, Any]]] = {"base": [], "new": []}
    for r in range(args.rounds):
        order = ("base", "new") if r % 2 == 0 else ("new", "base")
        for side in order:
            run = _run(getattr(args, side), args)
            runs[side].append(run)
            med = statistics.median(run["ticks"])
            print(f"round {r + 1} {side}: observe CPU {med:.3f} s ({run['code']})", flush=True)
    med = {s: statistics.median(t for r in rs for t in r["ticks"]) for s, rs in runs.items()}
    rng = {s: (min(t for r in rs for t in r["ticks"]), max(t for r in rs for t in r["ticks"]))
           for s, rs in runs.items()}  # fmt: skip
    loads = [x for rs in runs.values() for r in rs for x in r["loadavg_1m_before_after"]]
    result = {
        "machine": {
            "python": platform.python_version(),
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
        },
        "commits": {"base": _commit(args.base), "new": _commit(args.new)},
        "n": args.n,
        "ticks": args.ticks,
        "churn": args.churn,
        "rounds": args.rounds,
        "median_s": med,
        "range_s": rng,
        "ratio": med["new"] / med["base"],
        "loadavg_1m": [min(loads), max(loads)],
        "runs": runs,
    }
    print(
        f"observe CPU per tick at {args.n:,}: base {med['base']:.3f} s, new {med['new']:.3f} s, "
        f"ratio {result['ratio']:.2f} (load {min(loads):.1f}-{max(loads):.1f})"
    )
    if args.out:
        Path(args.out + ".json").write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
