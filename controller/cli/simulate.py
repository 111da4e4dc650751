"""`governor simulate`: argument parsing and the command.

The work is in `controller.backtest.simulate`; the report in `controller.backtest.report`.

    governor simulate --trace azure-code --out report/
    governor simulate --trace azure-conv --trace my.csv --slo-ms 2000 --config sim.yaml
    governor simulate --trace my.csv -c governor.yaml --endpoint chat-llm

Exit codes: 0 done, 1 runtime failure, 2 bad trace, configuration or usage.
"""

from __future__ import annotations

import argparse
import asyncio
import shlex
import sys
import time
from typing import Any

from controller.backtest.traces import BUNDLED, RequestTrace, TraceError, concat, load_trace
from controller.errors import ConfigError
from controller.logs import configure_logging

__all__ = ["add_simulate_parser", "run_simulate"]


def add_simulate_parser(sub: Any) -> argparse.ArgumentParser:
    s = sub.add_parser(
        "simulate",
        help="backtest: replay request traces against the platform autoscaler, Governor, "
        "baselines and the oracle",
        description="Replay request traces through the emulated platform in virtual time, with "
        "Governor's real loop and client, and compare cost and SLO against baselines and "
        "the oracle.",
    )
    s.add_argument(
        "--trace",
        action="append",
        required=True,
        metavar="PATH",
        help=f"CSV trace file (.csv or .csv.gz) or a bundled trace ({', '.join(sorted(BUNDLED))});"
        " repeatable: each trace is a separate backtest",
    )
    s.add_argument(
        "-c",
        "--config",
        metavar="FILE",
        help="YAML: your daemon config (governor.yaml: replays its Governor for --endpoint, next "
        "to the baselines, within its floor and ceiling) or the simulate-only format (service "
        "model and policies to compare)",
    )
    s.add_argument(
        "--endpoint",
        metavar="NAME",
        help="with a daemon config: the endpoint (name or ns/name) whose rules to replay "
        "(default: the only name in manage.names)",
    )
    s.add_argument(
        "--tags",
        default="",
        metavar="T1,T2",
        help="with a daemon config: the endpoint's tags, for tag-matched rules",
    )
    s.add_argument(
        "--lead-in-s",
        type=float,
        help="idle time before the first request; every system starts cold then (default 600)",
    )
    s.add_argument(
        "--scale-up-timeout-s",
        type=float,
        help="clients send X-Scale-Up-Timeout: a request finding no ready replica waits up to "
        "this long instead of getting a 503 (default: 503)",
    )
    s.add_argument(
        "--mode",
        choices=("fast", "full"),
        help="how Governor's replays reach the emulated platform: fast (its client answered "
        "in-process, the default feed read without text; the default) or full (every call over "
        "HTTP through the emulator's app); both make the same decisions (docs/simulate.md)",
    )
    s.add_argument("--out", metavar="DIR", help="write report.json, report.md and PNG plots here")
    s.add_argument("--slo-ms", type=float, help="queueing-delay target in ms (default 1000)")
    s.add_argument(
        "--slo-attainment", type=float, help="share of requests that must meet it (default 0.99)"
    )
    s.add_argument("--seed", type=int, help="simulation seed (default 0)")
    s.add_argument("--instance", help="vendor/type/size (default aws/nvidia-l4/x1)")
    s.add_argument("--max-replicas", type=int, help="replica ceiling for every policy (20)")
    s.add_argument("--cold-start-s", type=float, help="replica cold start in s (180)")
    s.add_argument("--concurrency", type=int, help="concurrent requests per replica (8)")
    t = s.add_argument_group("trace transformations (applied in this order)")
    t.add_argument("--start-s", type=float, default=0.0, help="skip the first S seconds")
    t.add_argument("--duration-s", type=float, help="keep only this many seconds")
    t.add_argument("--speedup", type=float, help="compress time by F (rate x F, duration / F)")
    t.add_argument("--scale-rate", type=float, help="F x the rate over the same duration")
    t.add_argument("--repeat", type=int, help="replay the trace N times")
    t.add_argument("--gap-s", type=float, default=0.0, help="idle gap between repeats (s)")
    t.add_argument("--shift-s", type=float, help="start after S seconds of idle time")
    t.add_argument(
        "--concat", action="store_true", help="join all --trace files into one trace (with --gap-s)"
    )
    s.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="progress on stderr (default: on when stderr is a terminal)",
    )
    return s


def _transform(tr: RequestTrace, args: argparse.Namespace, seed: int) -> RequestTrace:
    if args.start_s or args.duration_s is not None:
        tr = tr.window(args.start_s or 0.0, args.duration_s)
        if not len(tr):
            raise TraceError(f"{tr.name}: no requests in the selected window")
    if args.speedup is not None:
        tr = tr.speedup(args.speedup)
    if args.scale_rate is not None:
        tr = tr.scale_rate(args.scale_rate, seed=seed)
    if args.repeat is not None:
        tr = tr.repeat(args.repeat, gap_s=args.gap_s)
    if args.shift_s is not None:
        tr = tr.shift(args.shift_s)
    return tr


def run_simulate(args: argparse.Namespace, argv: list[str] | None = None) -> int:
    from controller.backtest.daemon_file import (
        daemon_policies,
        is_daemon_file,
        system_from_daemon_file,
    )
    from controller.backtest.report import render_table, write_report
    from controller.backtest.simulate import load_sim_config, simulate

    configure_logging(fmt="console", level="error")
    daemon = bool(args.config) and is_daemon_file(args.config)
    try:
        if not daemon and (args.endpoint or args.tags):
            raise ConfigError("--endpoint and --tags need a daemon config (-c governor.yaml)")
        if daemon and args.max_replicas is not None:
            raise ConfigError(
                "--max-replicas: the daemon config's ceiling for the endpoint is used; "
                "change it there"
            )
        cfg = load_sim_config(
            None if daemon else args.config,
            slo_ms=args.slo_ms,
            slo_attainment=args.slo_attainment,
            seed=args.seed,
            instance=args.instance,
            max_replicas=args.max_replicas,
            cold_start_s=args.cold_start_s,
            concurrency=args.concurrency,
            lead_in_s=args.lead_in_s,
            scale_up_timeout_s=args.scale_up_timeout_s,
            mode=args.mode,
        )
        if daemon:
            tags = [t.strip() for t in args.tags.split(",") if t.strip()]
            system = system_from_daemon_file(args.config, args.endpoint, tags)
            cfg.max_replicas = system.ceiling
            cfg.policies = daemon_policies(cfg, system)
        traces = [load_trace(t) for t in args.trace]
        if args.concat and len(traces) > 1:
            traces = [concat(traces, gap_s=args.gap_s)]
        traces = [_transform(t, args, cfg.seed) for t in traces]
    except (TraceError, ConfigError) as exc:
        print(f"governor: {exc}", file=sys.stderr)
        return 2
    progress = args.progress if args.progress is not None else sys.stderr.isatty()
    started = time.perf_counter()
    reports = asyncio.run(simulate(traces, cfg, progress=sys.stderr if progress else None))
    runtime = time.perf_counter() - started
    render_table(reports, cfg, out=sys.stdout)
    print(f"\nruntime: {runtime:.1f} s")
    if args.out:
        cmd = "governor " + shlex.join(argv if argv is not None else sys.argv[1:])
        files = write_report(reports, cfg, args.out, command=cmd, runtime_s=runtime, log=sys.stderr)
        print("wrote " + ", ".join(str(f) for f in files))
    return 0
