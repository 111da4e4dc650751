"""`governor` command line: run, plan, cost, demo, emulator, check-config, simulate, tune,
export-trace.

Exit codes: 0 success, 1 runtime failure (the account could not be seen), 2 bad configuration or
usage (a port already taken included), 130 interrupted, 141 the reader of stdout went away.

Every command that reads a config finds it as `find_config` says: `-c FILE`, else
`GOVERNOR_CONFIG`, else ./governor.yaml, else /etc/governor/governor.yaml; none is an error.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import socket
import sys
from collections.abc import Sequence
from typing import NoReturn

from controller import __version__
from controller.errors import ConfigError, StateLockedError
from controller.logs import configure_logging
from controller.settings import Settings, find_config, load_settings

__all__ = ["main"]


class _Parser(argparse.ArgumentParser):
    """Usage errors as one line (exit 2), like every other start-up error; --help has the rest."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{port} is not in 0..65535")
    return port


def _speed(text: str) -> float:
    try:
        speed = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not math.isfinite(speed) or not 0 < speed <= 1e6:
        raise argparse.ArgumentTypeError(f"{text} is not in (0, 1000000]")
    return speed


def _virtual_clock(text: str) -> tuple[float, float, float]:
    parts = text.split(",")
    try:
        speed, origin, started = (float(p) for p in parts)
    except ValueError:
        msg = f"expected SPEED,ORIGIN,STARTED_AT, got {text!r}"
        raise argparse.ArgumentTypeError(msg) from None
    if not all(math.isfinite(v) for v in (speed, origin, started)) or not 0 < speed <= 1e6:
        raise argparse.ArgumentTypeError(f"{text!r}: SPEED must be in (0, 1000000], all finite")
    return speed, origin, started


def _host(text: str) -> str:
    """A listen host that resolves, checked before anything starts."""
    try:
        socket.getaddrinfo(text.strip("[]"), 0, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except (OSError, UnicodeError) as exc:
        raise argparse.ArgumentTypeError(f"cannot listen on host {text!r}: {exc}") from None
    return text.strip("[]")


def _config_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "-c",
        "--config",
        metavar="FILE",
        help="YAML config file (default: $GOVERNOR_CONFIG, else ./governor.yaml, else "
        "/etc/governor/governor.yaml)",
    )


def _output_arg(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument(
        "-o",
        "--output",
        choices=("table", "json"),
        default="table",
        help=f"{what}: a table for people, or one JSON document (docs/output.md)",
    )


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="governor", description=__doc__.splitlines()[0])
    p.add_argument("--version", action="version", version=f"governor {__version__}")
    sub = p.add_subparsers(dest="cmd", required=True, metavar="COMMAND")
    r = sub.add_parser("run", help="run the controller daemon")
    _config_arg(r)
    r.add_argument(
        "--dry-run",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="decide and log, change nothing (default: the config's loop.dry_run)",
    )
    r.add_argument("--once", action="store_true", help="one tick, print the plan, exit")
    _output_arg(r, "with --once, how the tick is printed")
    r.add_argument(
        "--virtual-clock",
        type=_virtual_clock,
        metavar="SPEED,ORIGIN,STARTED_AT",
        help="run on a sped-up clock shared with an emulator: virtual epoch ORIGIN at wall "
        "epoch STARTED_AT, SPEED virtual seconds per second (benchmarks/fault_soak.py); "
        "refused against the real API",
    )
    pl = sub.add_parser(
        "plan", help="one tick: show what Governor would do and why; acts on nothing"
    )
    _config_arg(pl)
    _output_arg(pl, "how the plan is printed")
    d = sub.add_parser("demo", help="watch Governor scale emulated endpoints (no account needed)")
    d.add_argument("--speed", type=_speed, default=60.0, help="virtual seconds per real second")
    d.add_argument("--minutes", type=_speed, default=90.0, help="virtual minutes to run")
    d.add_argument("--seed", type=int, default=7)
    d.add_argument("--dry-run", action=argparse.BooleanOptionalAction, default=False)
    d.add_argument(
        "--fast",
        action="store_true",
        help="virtual time as fast as it goes: seconds, and the same output for the same seed",
    )
    e = sub.add_parser("emulator", help="serve the Endpoints API emulator on loopback")
    e.add_argument("--host", type=_host, default="127.0.0.1")
    e.add_argument("--port", type=_port, default=8081)
    e.add_argument(
        "--token",
        action="append",
        metavar="TOKEN[:NAME]",
        help="a Bearer token it accepts, as user NAME (repeatable; the first is governor-bot "
        "unless named, the others user-2, user-3, ...); none: a random one, printed",
    )
    e.add_argument("--speed", type=_speed, default=1.0, help="virtual seconds per real second")
    e.add_argument("--seed", type=int, default=7)
    e.add_argument("--scenario", help="YAML file of endpoints and loads (default: the demo's)")
    e.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="an emulator setting (docs/emulator.md lists them), over the scenario file's",
    )
    e.add_argument("--create-status", type=int, help="status of a create (default 202)")
    e.add_argument("--quota-error-status", type=int, help="status of a quota refusal (default 400)")
    e.add_argument("--metrics-content-type", help="Content-Type of the open-metrics feed")
    e.add_argument(
        "--scaling-update-redeploys",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="whether a min/max-only update redeploys (updating) (default: no)",
    )
    co = sub.add_parser(
        "cost", help="spend per endpoint and group: rate, today, month, forecast, budget"
    )
    _config_arg(co)
    _output_arg(co, "how the figures are printed")
    c = sub.add_parser("check-config", help="validate a config file and report every problem")
    _config_arg(c)
    # The old positional form, kept working (deprecated: every other command takes -c).
    c.add_argument("file", nargs="?", help=argparse.SUPPRESS)
    from controller.cli.simulate import add_simulate_parser

    add_simulate_parser(sub)
    from controller.cli.export_trace import add_export_trace_parser
    from controller.cli.rightsize import add_rightsize_parser
    from controller.cli.tune import add_tune_parser

    add_export_trace_parser(sub)
    add_tune_parser(sub)
    add_rightsize_parser(sub)
    return p


def _one_line(msg: str) -> str:
    """A config error with one problem as one line; several stay one line each."""
    lines = [ln.strip() for ln in msg.splitlines() if ln.strip()]
    if len(lines) == 2 and lines[0].endswith(":"):
        return f"{lines[0]} {lines[1]}"
    return msg


def _quiet_broken_pipe() -> int:
    """The reader went away (`governor simulate | head -1`): stop quietly, as `cat` would.

    Python's advice (the signal module docs, "Note on SIGPIPE"): point stdout at devnull so the
    interpreter's final flush does not raise again. 141 is 128 + SIGPIPE, what a shell reports
    for a process a closed pipe ended.
    """
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass
    return 141


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    try:
        args = parser.parse_args(argv)  # --help into a closed pipe is a broken pipe too
    except BrokenPipeError:
        return _quiet_broken_pipe()
    if args.cmd == "run" and args.output != "table" and not args.once:
        parser.error("argument -o/--output: json needs --once (the daemon logs JSON lines)")
    try:
        code = _dispatch(args, argv)
        sys.stdout.flush()  # a reader that left shows here, not as a warning at exit
        return code
    except ConfigError as exc:
        print(f"governor: configuration error: {_one_line(str(exc))}", file=sys.stderr)
        return 2
    except StateLockedError as exc:
        print(f"governor: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        return _quiet_broken_pipe()
    except KeyboardInterrupt:
        return 130


def _dispatch(args: argparse.Namespace, argv: Sequence[str] | None) -> int:
    if args.cmd == "check-config":
        from controller.cli.check_config import check_config

        if args.file and args.config:
            raise ConfigError("check-config: give the file once, as -c FILE")
        if args.file:
            print(
                "governor: warning: `check-config FILE` is deprecated; use `check-config -c FILE`",
                file=sys.stderr,
            )
        return check_config(find_config(args.config or args.file), sys.stdout, err=sys.stderr)
    if args.cmd == "demo":
        from controller.cli.demo import run_demo

        configure_logging(fmt="console", level="warning")
        return asyncio.run(
            run_demo(
                speed=args.speed,
                minutes=args.minutes,
                seed=args.seed,
                dry_run=args.dry_run,
                out=sys.stdout,
                fast=args.fast,
            )
        )
    if args.cmd == "emulator":
        from controller.cli.emulator import run_emulator

        return run_emulator(args)
    if args.cmd == "simulate":
        from controller.cli.simulate import run_simulate

        return run_simulate(args, list(argv) if argv is not None else None)

    path = find_config(args.config)

    def load() -> Settings:
        s = load_settings(path)
        if args.cmd == "run" and args.dry_run is not None:
            from controller.cli.common import dry_run_copy

            s = dry_run_copy(s, dry_run=args.dry_run)
        return s

    settings = load()
    secret = settings.token.get_secret_value() if settings.token else None
    configure_logging(fmt=settings.log.format, level=settings.log.level, secret=secret)
    if args.cmd in ("export-trace", "tune", "rightsize"):
        # The replays run Governor's loop: only warnings, or every replayed decision prints.
        configure_logging(fmt="console", level="warning", secret=secret)
    if args.cmd == "export-trace":
        import time

        from controller.cli.export_trace import export_trace

        return export_trace(settings, args, now=time.time(), out=sys.stdout)
    if args.cmd == "tune":
        from controller.cli.tune import run_tune

        return run_tune(settings, args, out=sys.stdout)
    if args.cmd == "rightsize":
        from controller.cli.rightsize import run_rightsize

        return run_rightsize(settings, args, out=sys.stdout)
    from controller.cli.common import usable

    for warning in usable(settings, source=str(path)):
        print(f"governor: warning: {warning}", file=sys.stderr)
    if args.cmd == "plan":
        from controller.cli.plan import run_plan

        return asyncio.run(run_plan(settings, out=sys.stdout, output=args.output))
    if args.cmd == "cost":
        from controller.cli.cost import cost_command

        return asyncio.run(cost_command(settings, out=sys.stdout, output=args.output))
    from controller.cli.run import run_daemon

    clock = None
    if args.virtual_clock is not None:
        from controller.clock import ScaledClock
        from controller.settings import REAL_API

        if settings.api.base_url == REAL_API:
            raise ConfigError("--virtual-clock: only against an emulator, not the real API")
        speed, origin, started = args.virtual_clock
        clock = ScaledClock(speed=speed, origin=origin, started_at=started)
    from controller.daemon import eventloop

    return eventloop.run(
        run_daemon(
            settings, once=args.once, config=path, reload=load, output=args.output, clock=clock
        ),
        choice=settings.loop.event_loop,
    )


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
