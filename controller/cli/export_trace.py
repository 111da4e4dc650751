"""`governor export-trace`: the demand Governor recorded for one endpoint, as a trace CSV.

    governor export-trace -c governor.yaml --endpoint ns/name --days 7 --out chat.csv
    governor simulate -c governor.yaml --trace chat.csv

The store keeps requests per minute (`controller.daemon.store`); each minute's requests are
spread uniformly over it (seeded), so the trace has the recorded per-minute load, not the exact
arrival times. The `timestamp` column holds epoch seconds, which `simulate` reads.

Exit codes: 0 written, 1 nothing recorded for the endpoint, 2 bad configuration or usage.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, TextIO

from controller.backtest.autopilot import trace_from_demand
from controller.backtest.traces import RequestTrace
from controller.daemon.store import StateStore
from controller.errors import ConfigError
from controller.settings import Settings

__all__ = ["add_export_trace_parser", "export_trace", "write_trace_csv"]


def add_export_trace_parser(sub: Any) -> argparse.ArgumentParser:
    e = sub.add_parser(
        "export-trace",
        help="write an endpoint's recorded demand as a trace CSV that simulate reads",
    )
    e.add_argument("-c", "--config", help="YAML config file (for state.path)")
    e.add_argument("--endpoint", required=True, metavar="NS/NAME", help="the endpoint")
    e.add_argument("--days", type=float, default=7.0, help="the last D days recorded (7)")
    e.add_argument("--out", metavar="FILE", help="CSV file to write (default: stdout)")
    e.add_argument("--seed", type=int, default=0, help="seed of the arrivals within a minute")
    return e


def write_trace_csv(trace: RequestTrace, out: TextIO) -> None:
    base = trace.start_epoch or 0.0
    out.write("timestamp\n")
    for o in trace.offsets:
        out.write(f"{base + o:.3f}\n")


def endpoint_key(text: str) -> str:
    ns, sep, name = text.partition("/")
    if not sep or not ns or not name or "/" in name:
        raise ConfigError(f"--endpoint: expected NAMESPACE/NAME, got {text!r}")
    return text


def export_trace(
    settings: Settings, args: argparse.Namespace, *, now: float, out: TextIO = sys.stdout
) -> int:
    key = endpoint_key(args.endpoint)
    if not args.days > 0:
        raise ConfigError(f"--days: expected > 0, got {args.days}")
    path = settings.state.path
    if not Path(path).exists():
        raise ConfigError(f"state.path: {path} does not exist (has `governor run` recorded here?)")
    store = StateStore(path)
    try:
        rows = store.demand(key, since=now - args.days * 86400.0)
    finally:
        store.close()
    trace = trace_from_demand(rows, name=key.replace("/", "-"), seed=args.seed)
    if len(trace) == 0:
        print(
            f"governor: no recorded requests for {key} in the last {args.days:g} days",
            file=sys.stderr,
        )
        return 1
    if args.out:
        with open(args.out, "w", encoding="utf-8") as fh:
            write_trace_csv(trace, fh)
    else:
        write_trace_csv(trace, out)
    minutes = len(rows)
    print(
        f"governor: {len(trace):,} requests over {minutes:,} recorded minute(s) of {key}"
        + (f" -> {args.out}" if args.out else ""),
        file=sys.stderr,
    )
    return 0
