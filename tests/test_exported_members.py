"""Every module's `__all__` names things that exist, so the public surface stays honest."""

from __future__ import annotations

import importlib
import pkgutil

import pytest

import controller
import policies

MODULES = sorted(
    m.name
    for pkg in (controller, policies)
    for m in pkgutil.walk_packages(pkg.__path__, prefix=f"{pkg.__name__}.")
    if not m.name.endswith(".__main__")  # runs the command line on import
)


@pytest.mark.parametrize("name", MODULES)
def test_all_names_exist(name):
    """Each name listed in a module's __all__ is defined in that module."""
    mod = importlib.import_module(name)
    for member in getattr(mod, "__all__", []):
        assert hasattr(mod, member), f"{name}.__all__ lists missing {member!r}"
