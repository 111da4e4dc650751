"""Backtest the user's own daemon config: `governor simulate -c governor.yaml --endpoint NAME`.

The file is loaded and validated exactly as `governor run` loads it (`load_settings`). For the
chosen endpoint (a name or `ns/name` that the file manages, with optional tags), the effective
per-endpoint settings — the defaults with every matching rule applied — become the replayed
Governor's defaults: same floor, ceiling, stabilisation windows, steps, policies and their
parameters. The loop's tick interval and actuation mode, the scrape age limit and pricing overrides
come from the file too. What cannot apply to a single emulated endpoint is left out and listed in
the run's description: the API address and token (the emulator's are used), namespaces and manage
selectors (the endpoint is managed by construction), budgets and quota limits (per namespace or
fleet), the state and ledger files (nothing is written), the metrics server.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from controller.errors import ConfigError

__all__ = ["DaemonSystem", "is_daemon_file", "system_from_daemon_file"]

# Keys only a daemon file has (the simulate-only format has none of them).
_DAEMON_ONLY = {
    "api",
    "namespaces",
    "manage",
    "loop",
    "scrape",
    "server",
    "state",
    "log",
    "defaults",
    "endpoints",
    "pricing",
    "ledger",
    "quota",
    "budgets",
}


@dataclass(frozen=True)
class DaemonSystem:
    """The replayable Governor of a daemon file for one endpoint."""

    endpoint: str  # ns/name
    overrides: dict[str, Any]  # settings overrides for the simulated Governor
    floor: int
    ceiling: int
    left_out: tuple[str, ...]  # configured sections that do not apply to the replay


def is_daemon_file(path: str | Path) -> bool:
    """Whether `path` is a daemon config (any daemon-only top-level key) rather than the
    simulate-only format. Unreadable files answer False (the simulate loader reports them)."""
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return False
    return isinstance(data, dict) and bool(set(data) & _DAEMON_ONLY)


def _pick_endpoint(names: list[str], endpoint: str | None, where: str) -> str:
    if endpoint:
        return endpoint
    if len(names) == 1:
        return names[0]
    listed = ", ".join(names) if names else "none"
    raise ConfigError(
        f"{where}: choose the endpoint to replay with --endpoint NAME (or ns/name); "
        f"manage.names lists: {listed}"
    )


def system_from_daemon_file(
    path: str | Path, endpoint: str | None = None, tags: list[str] | None = None
) -> DaemonSystem:
    """The effective Governor of `path` for `endpoint` (see the module docstring)."""
    from controller.settings import load_settings

    where = str(path)
    settings = load_settings(path, env={})
    chosen = _pick_endpoint(settings.manage.names, endpoint, where)
    if "/" in chosen:
        ns, _, name = chosen.partition("/")
    else:
        ns = settings.namespaces[0] if len(settings.namespaces) == 1 else "default"
        name = chosen
    tags = list(tags or [])
    if not settings.is_managed(ns, name, tags):
        raise ConfigError(
            f"{where}: endpoint {ns}/{name} (tags {tags or 'none'}) is not managed by this config "
            "(manage.names / globs / tags, exclude_tags)"
        )
    eff = settings.endpoint_settings(ns, name, tags)
    loop = settings.loop
    overrides: dict[str, Any] = {
        "defaults": eff.model_dump(mode="json"),
        "loop": {
            "tick_interval_s": loop.tick_interval_s,
            "actuation": loop.actuation,
            "max_actions_per_min": loop.max_actions_per_min,
        },
        "scrape": {
            "max_age_s": settings.scrape.max_age_s,
            "retention_s": settings.scrape.retention_s,
        },
        "pricing": {"overrides": [o.model_dump(mode="json") for o in settings.pricing.overrides]},
    }
    left_out = [
        k
        for k, present in (
            ("budgets", bool(settings.budgets)),
            ("quota", bool(settings.quota.limits)),
            ("loop.dry_run (the replay acts)", loop.dry_run),
        )
        if present
    ]
    return DaemonSystem(f"{ns}/{name}", overrides, eff.floor, eff.ceiling, tuple(left_out))


def daemon_policies(cfg: Any, system: DaemonSystem) -> list[Any]:
    """The comparison set for a daemon file: the file's Governor for its endpoint next to the
    platform baselines, static-peak, both oracles and the lower bound, all within the file's
    ceiling (and the platform baselines at its floor)."""
    from controller.backtest.simulate import PolicySpec, default_policies

    keep = []
    for spec in default_policies(cfg):
        if spec.kind in ("governor", "autopilot"):
            continue
        if spec.kind == "platform":
            spec.floor = system.floor
        spec.ceiling = system.ceiling
        keep.append(spec)
    mine = PolicySpec(
        f"governor ({system.endpoint})",
        "governor",
        governor=system.overrides,
        floor=system.floor,
        ceiling=system.ceiling,
        description="your daemon config's effective settings for this endpoint"
        + (f"; left out: {', '.join(system.left_out)}" if system.left_out else ""),
    )
    return [*keep[:3], mine, *keep[3:]]
