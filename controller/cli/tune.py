"""`governor tune`: what the autopilot would adopt for an endpoint, on demand, with the evidence.

    governor tune -c governor.yaml --endpoint ns/name [--days 7] [--instance aws/nvidia-l4/x1]
        [--jobs N]

Replays the endpoint's recorded demand of the last `--days` through the simulator once per
candidate near the value in force (`controller.backtest.autopilot`) and prints each candidate's
cost and SLO attainment on that history, and the one the autopilot would adopt. The service
time, capacity and cold start of the replay are what Governor learnt for the endpoint (its
`slo_target` memory in the state file), else the configured ones, else the policy's priors.
The candidates replay in `--jobs` worker processes (default: the cores), one progress line
with the ETA per finished candidate on stderr. Changes nothing.

Exit codes: 0 done, 1 nothing recorded for the endpoint, 2 bad configuration or usage.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any, TextIO

from controller.backtest.autopilot import Adoption, plan_endpoint
from controller.backtest.pool import default_jobs
from controller.cli.export_trace import endpoint_key
from controller.daemon.store import StateStore
from controller.errors import ConfigError
from controller.settings import Settings

__all__ = ["add_tune_parser", "run_tune"]


def add_tune_parser(sub: Any) -> argparse.ArgumentParser:
    t = sub.add_parser(
        "tune",
        help="replay an endpoint's recorded demand over the autopilot's candidates; show the "
        "comparison and what it would adopt (changes nothing)",
    )
    t.add_argument("-c", "--config", help="YAML config file")
    t.add_argument("--endpoint", required=True, metavar="NS/NAME", help="the endpoint")
    t.add_argument("--days", type=float, default=7.0, help="history to replay in days (7)")
    t.add_argument("--instance", default="aws/nvidia-l4/x1", help="vendor/type/size, for the price")
    t.add_argument("--tag", action="append", default=[], help="the endpoint's tags (rules)")
    t.add_argument(
        "--jobs",
        type=int,
        default=None,
        help="worker processes for the candidates' replays (default: the cores)",
    )
    return t


def print_adoption(a: Adoption, out: TextIO) -> None:
    out.write(f"{'safety':>8} {'cost':>10} {'SLO':>8}  \n")
    for c in a.comparisons:
        mark = " <- in force" if c.current else ""
        mark += " <- adopt" if a.action == "adopt" and abs(c.safety - a.safety_to) < 1e-9 else ""
        miss = "" if c.meets_slo else " (misses the SLO)"
        out.write(
            f"{c.safety:>8g} ${c.cost_usd:>9.2f} {100 * c.slo_attainment:>7.2f}%{miss}{mark}\n"
        )
    out.write(a.explain() + "\n")


def run_tune(settings: Settings, args: argparse.Namespace, *, out: TextIO = sys.stdout) -> int:
    key = endpoint_key(args.endpoint)
    if not args.days > 0:
        raise ConfigError(f"--days: expected > 0, got {args.days}")
    jobs = default_jobs() if args.jobs is None else args.jobs
    if jobs < 1:
        raise ConfigError(f"--jobs: expected >= 1, got {jobs}")
    ns, _, name = key.partition("/")
    es = settings.endpoint_settings(ns, name, list(args.tag))
    path = settings.state.path
    if not Path(path).exists():
        raise ConfigError(f"state.path: {path} does not exist (has `governor run` recorded here?)")
    now = time.time()
    store = StateStore(path)
    try:
        rows = store.demand(key, since=now - args.days * 86400.0)
        memory = store.load_memory().get(key)
    finally:
        store.close()
    if not rows or sum(r.requests for r in rows) < 1:
        print(
            f"governor: no recorded requests for {key} in the last {args.days:g} days",
            file=sys.stderr,
        )
        return 1
    policy_memory = memory.policy_memory.get("slo_target", {}) if memory is not None else {}
    adoption = plan_endpoint(
        key,
        es,
        rows,
        policy_memory,
        instance=args.instance,
        at=now,
        progress=sys.stderr,
        jobs=jobs,
    )
    if adoption is None:
        print(f"governor: {key} does not run slo_target: nothing to tune", file=sys.stderr)
        return 1
    print_adoption(adoption, out)
    return 0
