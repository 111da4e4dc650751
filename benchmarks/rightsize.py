"""Right-sizing over the load suite: an endpoint deliberately over-sized (a 16 GB model on an A100),
its traffic recorded per minute as the store records it, `governor rightsize`'s evaluation on it,
and a cross-check of the recommendation against the backtest of the load itself.

    python benchmarks/rightsize.py                      # every load's first --hours (6)
    python benchmarks/rightsize.py --only flash-crowd --hours 2 --out /tmp/rs

For each load of `controller.backtest.loads`, over its first `--hours`:

1. **Recorded.** The load becomes per-minute demand rows (requests per minute, with each minute's
   mean service time on an A100 as its latency: what Governor's store holds), and
   `controller.backtest.rightsize.evaluate_endpoint` replays them on the A100 and on the
   candidates (aws L4, A10G, L40S x1; the model fits each with the default 20 % headroom), each
   with the capacity model's service time and batch, and recommends the cheapest meeting the SLO.
2. **Backtested.** Each candidate is replayed again on the load's own request trace (its arrival
   instants and each request's tokens, not the per-minute counts), with the same capacity: the
   backtest the recommendation should hold in. "agrees" says whether the recommended instance is
   also the cheapest meeting the SLO there.

A100 figures: the ServiceModel docstring's (decode 60 tokens/s per sequence, prefill 8,000
tokens/s, 32 sequences at once); the capacity model scales them per candidate. Writes
`benchmarks/results/rightsize.{json,md}`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import platform
import shlex
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.harness import cpu_model, versions
from controller.backtest.autopilot import replay_config
from controller.backtest.loads import LOADS
from controller.backtest.rightsize import MONTH_H, evaluate_endpoint
from controller.backtest.simulate import PolicySpec, ServiceModel, prepare, run_system
from controller.backtest.traces import RequestTrace
from controller.core.params import EndpointSettings
from controller.cost.capacity import scale_capacity
from controller.cost.pricing import PriceBook
from controller.daemon.store import DemandMinute

ROOT = Path(__file__).resolve().parent
RESULTS = ROOT / "results"
CURRENT = "aws/nvidia-a100/x1"
A100 = ServiceModel(concurrency=32, prefill_tps=8000.0, decode_tps=60.0, cold_start_s=180.0)
MODEL_GB = 16.0
RS = {
    "model_memory_gb": MODEL_GB,
    "instance_types": ["nvidia-l4", "nvidia-a10g", "nvidia-l40s", "nvidia-a100"],
    "max_candidates": 3,
    "min_saving_usd_month": 10,
}


def settings() -> EndpointSettings:
    return EndpointSettings(
        floor=1,
        ceiling=20,
        capacity_per_replica=A100.concurrency,
        cold_start_s=A100.cold_start_s,
        policies={"slo_target": {}, "right_sizing": RS},
    )


def head(trace: RequestTrace, hours: float) -> RequestTrace:
    end = hours * 3600.0
    keep = [i for i, o in enumerate(trace.offsets) if o < end]
    return RequestTrace(
        trace.name,
        tuple(trace.offsets[i] for i in keep),
        input_tokens=tuple(trace.input_tokens[i] for i in keep) if trace.input_tokens else None,
        output_tokens=tuple(trace.output_tokens[i] for i in keep) if trace.output_tokens else None,
        start_epoch=trace.start_epoch,
    )


def recorded(trace: RequestTrace, key: str) -> list[DemandMinute]:
    """Per-minute rows as the store records them: requests, latency = the A100 service time, and
    4 samples a minute of the replicas an A100 needs for the minute's load (Little's law), no
    pending gauge (the published feed has none)."""
    svc = A100.service_times(trace)
    first = math.floor((trace.start_epoch or 0.0) / 60.0)
    n = max(1, math.ceil(trace.duration_s / 60.0) + 1)
    req, lat = [0.0] * n, [0.0] * n
    for o, s in zip(trace.offsets, svc, strict=True):
        m = min(n - 1, int(o // 60))
        req[m] += 1
        lat[m] += s
    samples = 4
    rows = []
    for m in range(n):
        if req[m] <= 0:
            continue
        ready = max(1, math.ceil(lat[m] / 60.0 / A100.concurrency))
        rows.append(
            DemandMinute(key, first + m, req[m], lat[m], req[m], 0.0, 0.0, samples * ready, samples)
        )
    return rows or [DemandMinute(key, first, 0.0)]


async def backtest(
    trace: RequestTrace, es: EndpointSettings, book: PriceBook, inst: str
) -> dict[str, Any]:
    """One candidate on the load's own requests: service times from their tokens, scaled."""
    cur = book.lookup(*CURRENT.split("/"))
    row = book.lookup(*inst.split("/"))
    assert cur is not None
    assert row is not None
    mean = sum(A100.service_times(trace)) / max(1, len(trace))
    cap = scale_capacity(
        cur,
        row,
        model_gb=MODEL_GB,
        service_s=mean,
        concurrency=A100.concurrency,
        tp_efficiency=0.8,
        max_concurrency_ratio=4.0,
    )
    assert cap is not None
    speed = 1.0 if inst == CURRENT else cap.speed
    conc = A100.concurrency if inst == CURRENT else cap.concurrency
    cfg = replay_config(
        es, service_s=0.0, capacity=conc, cold_start_s=A100.cold_start_s, instance=inst
    )
    cfg.service = ServiceModel(
        concurrency=conc,
        prefill_tps=A100.prefill_tps * speed,
        decode_tps=A100.decode_tps * speed,
        cold_start_s=A100.cold_start_s,
    )
    data = es.model_dump(mode="json")
    data["capacity_per_replica"] = conc
    spec = PolicySpec(
        inst, "governor", governor={"defaults": data}, floor=es.floor, ceiling=es.ceiling
    )
    r = await run_system(cfg, trace, spec)
    assert r is not None
    hours = prepare(cfg, trace).end / 3600.0
    return {
        "instance": inst,
        "usd_per_month": round(r.cost_usd * MONTH_H / hours, 2),
        "slo_attainment": round(r.slo_attainment, 5),
        "meets_slo": r.meets_slo,
    }


def one(name: str, hours: float) -> dict[str, Any]:
    load = next(lo for lo in LOADS if lo.name == name)
    trace = head(load.trace(), hours)
    key = f"bench/{name}"
    es = settings()
    book = PriceBook()
    t0 = time.perf_counter()
    rec = evaluate_endpoint(
        key, es, recorded(trace, key), {}, {}, instance=CURRENT, at=0.0, prices=book
    )
    assert rec is not None
    bt = [asyncio.run(backtest(trace, es, book, e.instance)) for e in rec.evaluations]
    meeting = [b for b in bt if b["meets_slo"]]
    bt_best = min(meeting, key=lambda b: b["usd_per_month"])["instance"] if meeting else None
    rec_best = rec.best or CURRENT
    return {
        "load": name,
        "split": load.split,
        "hours": hours,
        "requests": len(trace),
        "action": rec.action,
        "recommended": rec_best,
        "saving_usd_per_month": round(rec.saving_month_usd, 2),
        "reason": rec.reason,
        "candidates": [
            {
                "instance": e.instance,
                "usd_per_month": round(e.cost_month_usd, 2),
                "slo_attainment": round(e.slo_attainment, 5),
                "meets_slo": e.meets_slo,
                "mean_replicas": round(e.mean_replicas, 2),
                "concurrency": e.concurrency,
            }
            for e in rec.evaluations
        ],
        "backtest": bt,
        "backtest_cheapest_meeting": bt_best,
        "agrees": bt_best == rec_best,
        "runtime_s": round(time.perf_counter() - t0, 1),
    }


def markdown(res: dict[str, Any]) -> str:
    out = [
        "# Right-sizing over the load suite",
        "",
        f"`{res['command']}` at {res['commit']}; {res['machine']}; {res['runtime_s']} s.",
        "",
        f"An endpoint on {CURRENT} serving a {MODEL_GB:g} GB model; candidates aws L4, A10G, "
        "L40S x1. Recorded: the per-minute replay `governor rightsize` runs. Backtest: the "
        "load's own requests. SLO: 99 % of requests queued at most 1 s.",
        "",
        "| load | split | h | recommended | saving $/mo | recorded: $/mo (SLO) per instance "
        "| backtest: cheapest meeting | agrees |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in res["loads"]:
        cells = "; ".join(
            f"{c['instance'].split('/')[1]} {c['usd_per_month']:.0f} "
            f"({100 * c['slo_attainment']:.2f}%{'' if c['meets_slo'] else ' miss'})"
            for c in r["candidates"]
        )
        out.append(
            f"| {r['load']} | {r['split']} | {r['hours']:g} | {r['recommended']} | "
            f"{r['saving_usd_per_month']:.2f} | {cells} | {r['backtest_cheapest_meeting']} | "
            f"{'yes' if r['agrees'] else 'no'} |"
        )
    n = len(res["loads"])
    agree = sum(1 for r in res["loads"] if r["agrees"])
    changed = sum(1 for r in res["loads"] if r["action"] == "change")
    out += [
        "",
        f"{changed} of {n} loads get a cheaper instance; the recommendation is the backtest's "
        f"cheapest meeting the SLO on {agree} of {n}.",
        "",
    ]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--only", action="append", help="a load name (repeatable)")
    p.add_argument("--hours", type=float, default=6.0, help="each load's first hours (6)")
    p.add_argument("--out", type=Path, default=RESULTS / "rightsize")
    args = p.parse_args(argv)
    import logging

    import structlog

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    names = args.only or [lo.name for lo in LOADS]
    started = time.perf_counter()
    loads = []
    for name in names:
        r = one(name, args.hours)
        print(
            f"{name}: {r['recommended']} saves ${r['saving_usd_per_month']:.2f}/mo; backtest "
            f"{r['backtest_cheapest_meeting']}; agrees {r['agrees']} ({r['runtime_s']} s)",
            file=sys.stderr,
        )
        loads.append(r)
    import subprocess

    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT
    ).stdout.strip()
    res = {
        "command": "python benchmarks/rightsize.py "
        + shlex.join(argv if argv is not None else sys.argv[1:]),
        "commit": commit,
        "machine": f"{cpu_model()}, {platform.python_version()}",
        "versions": versions(["pydantic", "httpx", "prometheus-client"]),
        "runtime_s": round(time.perf_counter() - started, 1),
        "loads": loads,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(res, indent=2) + "\n")
    args.out.with_suffix(".md").write_text(markdown(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
