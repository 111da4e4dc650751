"""`governor emulator`: serve the Endpoints API emulator on loopback, to try a config against."""

from __future__ import annotations

import argparse
import asyncio
import sys

from controller.clock import ScaledClock
from controller.emulator.scenario import build_platform, default_scenario, load_scenario
from controller.emulator.server import serve_forever
from controller.logs import configure_logging

__all__ = ["run_emulator"]


def run_emulator(args: argparse.Namespace) -> int:
    """Serve the demo world (namespace demo-org) so a config can be tried against it."""
    configure_logging(fmt="auto", level="info")
    spec = load_scenario(args.scenario, token=args.token) if args.scenario else default_scenario()
    clock = ScaledClock(speed=args.speed)
    platform = build_platform(spec, start=clock.now(), seed=args.seed)
    tokens = {args.token: spec.user, spec.human_token: spec.human}
    print(
        f"emulator: http://{args.host}:{args.port}/v2 namespace {spec.namespace}, "
        f"{len(spec.endpoints)} endpoints, {args.speed:g}x time; Bearer token: the --token value",
        file=sys.stderr,
    )
    try:
        asyncio.run(
            serve_forever(
                host=args.host,
                port=args.port,
                token=args.token,
                tokens=tokens,
                clock=clock,
                platform=platform,
            )
        )
    except OSError as exc:
        print(f"governor: {exc}", file=sys.stderr)
        return 1
    return 0
