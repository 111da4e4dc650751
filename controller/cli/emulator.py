"""`governor emulator`: serve the Endpoints API emulator on loopback, to try a config against."""

from __future__ import annotations

import argparse
import asyncio
import secrets
import sys
from collections.abc import Callable, Sequence
from typing import Any

import yaml

from controller.clock import ScaledClock
from controller.emulator.app import EmulatorConfig
from controller.emulator.platform import Platform, PlatformConfig
from controller.emulator.scenario import (
    build_platform,
    default_scenario,
    emulator_configs,
    load_scenario,
)
from controller.emulator.server import EmulatorServer
from controller.errors import ConfigError
from controller.logs import configure_logging
from controller.platform.models import UserRef

__all__ = ["emulator_tokens", "knob_values", "run_emulator"]

GOVERNOR = UserRef(id="u-governor", name="governor-bot")
# Named flags for the behaviour the platform leaves undocumented (each also a `--set` name).
_FLAG_KNOBS = (
    "create_status",
    "quota_error_status",
    "metrics_content_type",
    "scaling_update_redeploys",
)


def emulator_tokens(given: Sequence[str] | None) -> tuple[dict[str, UserRef], str | None]:
    """The tokens the emulator accepts, from `--token TOKEN[:NAME]` values, and a generated one
    when none was given (returned second, to be printed). No other token is ever accepted."""
    generated = None
    if not given:
        generated = secrets.token_urlsafe(18)
        given = [generated]
    tokens: dict[str, UserRef] = {}
    for i, raw in enumerate(given):
        token, _, name = raw.partition(":")
        token = token.strip()
        if not token:
            raise ConfigError(f"--token {raw!r}: empty token")
        if token in tokens:
            raise ConfigError(f"--token #{i + 1}: the same token is given twice")
        if name:
            tokens[token] = UserRef(id=f"u-{name}", name=name)
        else:
            n = i + 1
            tokens[token] = GOVERNOR if n == 1 else UserRef(id=f"u-user-{n}", name=f"user-{n}")
    return tokens, generated


def knob_values(args: argparse.Namespace, base: dict[str, Any]) -> dict[str, Any]:
    """Emulator settings: the scenario file's, then `--set NAME=VALUE` (VALUE read as a YAML
    scalar: `true`, `429`, `0.5`, text), then the named flags."""
    values = dict(base)
    for item in args.set or []:
        name, sep, raw = item.partition("=")
        if not sep or not name.strip():
            raise ConfigError(f"--set {item!r}: expected NAME=VALUE")
        try:
            value = yaml.safe_load(raw) if raw.strip() else raw
        except yaml.YAMLError:
            value = raw
        values[name.strip()] = value
    for name in _FLAG_KNOBS:
        v = getattr(args, name, None)
        if v is not None:
            values[name] = v
    return values


def run_emulator(args: argparse.Namespace) -> int:
    """Serve the demo world (namespace demo-org), or a scenario file's, so a config can be tried
    against it."""
    tokens, generated = emulator_tokens(args.token)
    first = next(iter(tokens))
    spec = load_scenario(args.scenario, token=first) if args.scenario else default_scenario()
    platform_config: PlatformConfig
    config: EmulatorConfig
    platform_config, config = emulator_configs(knob_values(args, dict(spec.settings)))
    configure_logging(fmt="auto", level="info")  # after the checks: a bad setting logs nothing
    clock = ScaledClock(speed=args.speed)
    platform = build_platform(spec, start=clock.now(), seed=args.seed, config=platform_config)

    def banner(srv: EmulatorServer) -> None:
        print(
            f"emulator: {srv.base_url} namespace {spec.namespace}, {len(spec.endpoints)} "
            f"endpoints, {args.speed:g}x time; {len(tokens)} Bearer token(s) accepted "
            f"(admin {srv.admin_url})",
            file=sys.stderr,
            flush=True,
        )
        if generated is not None:
            print(f"emulator: no --token given; accepting only {generated}", file=sys.stderr)

    try:
        asyncio.run(_serve(args, tokens, clock, platform, config, banner))
    except OSError as exc:  # the port is taken, or the host is not this machine's: usage
        print(f"governor: {exc}", file=sys.stderr)
        return 2
    return 0


async def _serve(
    args: argparse.Namespace,
    tokens: dict[str, UserRef],
    clock: ScaledClock,
    platform: Platform,
    config: EmulatorConfig,
    banner: Callable[[EmulatorServer], None],
) -> None:
    """Serve until interrupted; the banner is printed once listening, so a port already taken
    prints only its one-line error."""
    async with EmulatorServer(
        platform, clock=clock, tokens=tokens, host=args.host, port=args.port, config=config
    ) as srv:
        banner(srv)
        await asyncio.Event().wait()
