"""`governor check-config`: validate a config file and report every problem by its key path."""

from __future__ import annotations

from typing import TextIO

from controller.settings import load_settings

__all__ = ["check_config"]


def check_config(path: str, out: TextIO) -> int:
    settings = load_settings(path)
    n_rules = len(settings.endpoints)
    out.write(
        f"{path}: OK ({len(settings.namespaces)} namespace(s), {n_rules} endpoint rule(s), "
        f"{'token from ' + settings.token_source if settings.token else 'token not set'})\n"
    )
    return 0
