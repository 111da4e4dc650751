"""`governor rightsize`: the candidate instances for an endpoint, replayed on its recorded traffic.

    governor rightsize -c governor.yaml --endpoint ns/name [--days 7] [--instance V/T/S] [-o json]

Replays the endpoint's recorded demand of the last `--days` (default: the policy's
`history_days`) through the simulator once per candidate instance of the capacity model
(`controller.backtest.rightsize`) and prints each one's monthly cost, the delta against the
current instance's replay, the replicas it ran and the SLO attainment, and the recommendation.
The current instance is the one the policy last observed the endpoint on (its memory in the state
file), else `--instance`. The model's size is `model_memory_gb`, else the Hub's (`api.hub_url`,
for the model the policy last saw it serve), else the feed's peak GPU memory. Changes nothing.

Exit codes: 0 done, 1 nothing recorded for the endpoint or it does not run `right_sizing`,
2 bad configuration or usage.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any, TextIO

from controller.backtest.rightsize import evaluate_endpoint, params_of
from controller.cli.export_trace import endpoint_key
from controller.cost.pricing import PriceBook
from controller.daemon.store import StateStore
from controller.errors import ConfigError
from controller.platform.hub import HubSize, make_hub_client
from controller.settings import Settings
from policies.right_sizing import Recommendation

__all__ = ["add_rightsize_parser", "print_recommendation", "recommendation_json", "run_rightsize"]


def add_rightsize_parser(sub: Any) -> argparse.ArgumentParser:
    r = sub.add_parser(
        "rightsize",
        help="replay an endpoint's recorded traffic on each instance that fits its model; show "
        "the monthly cost, the expected SLO and the cheapest meeting it (changes nothing)",
    )
    r.add_argument("-c", "--config", help="YAML config file")
    r.add_argument("--endpoint", required=True, metavar="NS/NAME", help="the endpoint")
    r.add_argument("--days", type=float, default=None, help="history in days (history_days)")
    r.add_argument("--instance", default=None, help="vendor/type/size when the state file has none")
    r.add_argument("--tag", action="append", default=[], help="the endpoint's tags (rules)")
    r.add_argument("-o", "--output", choices=("table", "json"), default="table")
    return r


def print_recommendation(rec: Recommendation, out: TextIO) -> None:
    cur = next((e for e in rec.evaluations if e.current), None)
    if rec.evaluations:
        out.write(
            f"{'instance':<22} {'$/h':>6} {'GB':>5} {'speed':>6} {'batch':>5} {'replicas':>12} "
            f"{'$/month':>10} {'delta':>10} {'SLO':>8}\n"
        )
    for e in rec.evaluations:
        delta = e.cost_month_usd - cur.cost_month_usd if cur is not None else 0.0
        marks = " <- current" if e.current else ""
        marks += " <- recommended" if e.instance == rec.best else ""
        marks += "" if e.meets_slo else " (misses the SLO)"
        out.write(
            f"{e.instance:<22} {e.usd_per_hour:>6.2f} {e.memory_gb:>5.0f} {e.speed:>6.2f} "
            f"{e.concurrency:>5d} {e.mean_replicas:>6.2f} (<={e.peak_replicas:>2d}) "
            f"{e.cost_month_usd:>10.2f} {delta:>+10.2f} {100 * e.slo_attainment:>7.2f}%{marks}\n"
        )
    out.write(rec.explain() + "\n")


def recommendation_json(rec: Recommendation) -> dict[str, Any]:
    """docs/output.md, `governor.rightsize` version 1."""
    cur = next((e for e in rec.evaluations if e.current), None)
    return {
        "kind": "governor.rightsize",
        "version": 1,
        "endpoint": rec.key,
        "action": rec.action,
        "current": rec.current,
        "recommended": rec.best,
        "saving_usd_per_month": round(rec.saving_month_usd, 2),
        "model_memory_gb": rec.model_gb,
        "model_memory_source": rec.model_source or None,
        "reason": rec.reason,
        "candidates": [
            {
                "instance": e.instance,
                "usd_per_hour": e.usd_per_hour,
                "memory_gb": e.memory_gb,
                "relative_throughput": round(e.speed, 4),
                "concurrency": e.concurrency,
                "mean_replicas": round(e.mean_replicas, 3),
                "peak_replicas": e.peak_replicas,
                "usd_per_month": round(e.cost_month_usd, 2),
                "delta_usd_per_month": None
                if cur is None
                else round(e.cost_month_usd - cur.cost_month_usd, 2),
                "slo_attainment": round(e.slo_attainment, 5),
                "meets_slo": e.meets_slo,
                "current": e.current,
            }
            for e in rec.evaluations
        ],
    }


def hub_size(settings: Settings, rs_memory: dict[str, Any]) -> HubSize | None:
    """The model's size from the Hub, for the model the policy last saw the endpoint serve
    (its memory); None when the state file does not say which model."""
    model = rs_memory.get("model")
    repo = model.get("repository") if isinstance(model, dict) else None
    if not isinstance(repo, str) or not repo:
        return None
    rev = model.get("revision") if isinstance(model, dict) else None

    async def ask() -> HubSize:
        hub = make_hub_client(settings)
        try:
            return await hub.model_size(repo, rev if isinstance(rev, str) else None)
        finally:
            await hub.aclose()

    return asyncio.run(ask())


def run_rightsize(settings: Settings, args: argparse.Namespace, *, out: TextIO = sys.stdout) -> int:
    key = endpoint_key(args.endpoint)
    ns, _, name = key.partition("/")
    es = settings.endpoint_settings(ns, name, list(args.tag))
    params = params_of(es)
    if params is None:
        print(
            f"governor: {key} does not run right_sizing (add it to its policies)", file=sys.stderr
        )
        return 1
    days = params.history_days if args.days is None else args.days
    if not days > 0:
        raise ConfigError(f"--days: expected > 0, got {days}")
    path = settings.state.path
    if not Path(path).exists():
        raise ConfigError(f"state.path: {path} does not exist (has `governor run` recorded here?)")
    now = time.time()
    store = StateStore(path)
    try:
        rows = store.demand(key, since=now - days * 86400.0)
        memory = store.load_memory().get(key)
    finally:
        store.close()
    if not rows or sum(r.requests for r in rows) < 1:
        print(
            f"governor: no recorded requests for {key} in the last {days:g} days", file=sys.stderr
        )
        return 1
    pm = memory.policy_memory if memory is not None else {}
    rs_mem = pm.get("right_sizing", {})
    instance = rs_mem.get("instance") or args.instance
    if not instance:
        raise ConfigError(
            f"--instance: the state file does not say which instance {key} runs on; give it"
        )
    rec = evaluate_endpoint(
        key,
        es,
        rows,
        pm.get("slo_target", {}),
        rs_mem,
        instance=instance,
        at=now,
        prices=PriceBook(settings.pricing.overrides),
        progress=sys.stderr if args.output == "table" else None,
        hub=None if params.model_memory_gb is not None else hub_size(settings, rs_mem),
    )
    assert rec is not None
    if args.output == "json":
        out.write(json.dumps(recommendation_json(rec), indent=2) + "\n")
    else:
        print_recommendation(rec, out)
    return 0
