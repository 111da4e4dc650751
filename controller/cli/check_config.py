"""`governor check-config`: validate a config file and report every problem by its key path."""

from __future__ import annotations

from pathlib import Path
from typing import TextIO

from controller.cli.common import offline_budget_warnings, usable
from controller.settings import load_settings

__all__ = ["check_config"]


def check_config(path: str | Path, out: TextIO, *, err: TextIO | None = None) -> int:
    settings = load_settings(path)
    warnings = usable(settings, source=str(path)) + offline_budget_warnings(settings)
    n_rules = len(settings.endpoints)
    token = f"token from {settings.token_source}" if settings.token else "token not set"
    out.write(
        f"{path}: OK ({len(settings.namespaces)} namespace(s), {n_rules} endpoint rule(s), "
        f"{token})\n"
    )
    for w in warnings:
        (err or out).write(f"governor: warning: {w}\n")
    return 0
