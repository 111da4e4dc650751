"""Policy name -> class, through the `governor.policies` entry-point group.

Built-ins are declared in Governor's own `pyproject.toml` under the same group as third-party
plug-ins, so both load the same way. A `module:Class` import path is accepted as a name too.
When Governor runs from a source tree that was never installed, the built-ins are still found.
"""

from __future__ import annotations

import importlib
from functools import cache
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ValidationError

from controller.errors import ConfigError, validation_lines

if TYPE_CHECKING:
    from policies.base import Policy

__all__ = ["build_policy", "get_policy_class", "policy_names"]

GROUP = "governor.policies"
_BUILTINS = {
    "pending_requests": "policies.pending_requests:PendingRequestsPolicy",
    "hardware_utilisation": "policies.hardware_utilisation:HardwareUtilisationPolicy",
    "schedule": "policies.schedule:SchedulePolicy",
    "pause_to_free_quota": "policies.pause_to_free_quota:PauseToFreeQuotaPolicy",
    "budget": "policies.budget:BudgetPolicy",
    "burst_floor": "policies.burst_floor:BurstFloorPolicy",
    "slo_target": "policies.slo_target:SloTargetPolicy",
    "right_sizing": "policies.right_sizing:RightSizingPolicy",
}


def _load(path: str) -> type[Policy]:
    mod_name, _, attr = path.partition(":")
    try:
        mod = importlib.import_module(mod_name)
        cls = getattr(mod, attr)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"cannot load policy {path!r}: {exc}") from None
    for member in ("name", "Params", "propose"):
        if not hasattr(cls, member):
            raise ConfigError(f"policy {path!r} is not a Policy: it has no {member!r}")
    return cls  # type: ignore[no-any-return]


@cache
def _entry_points() -> dict[str, str]:
    found = dict(_BUILTINS)
    for ep in entry_points(group=GROUP):
        found[ep.name] = ep.value
    return found


def policy_names() -> list[str]:
    return sorted(_entry_points())


def get_policy_class(name: str) -> type[Policy]:
    if ":" in name:
        return _load(name)
    path = _entry_points().get(name)
    if path is None:
        raise ConfigError(f"unknown policy {name!r}; known: {', '.join(policy_names())}")
    return _load(path)


def build_policy(name: str, params: dict[str, Any], *, where: str) -> Policy:
    """Instantiate a policy with validated params; errors name `where` (the config path)."""
    cls = get_policy_class(name)
    try:
        parsed: BaseModel = cls.Params.model_validate(params)
    except ValidationError as exc:
        lines = [f"invalid parameters for policy {name!r}:"]
        lines += validation_lines(exc, prefix=f"{where}.")
        raise ConfigError("\n".join(lines)) from None
    return cls(parsed)
