"""The decision core's values: actions, the fixed reason vocabulary, a decision, the memory an
endpoint carries between ticks, and the two helpers the loop applies after deciding.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Literal, TypeVar

from policies.base import Proposal

__all__ = [
    "Action",
    "Actuation",
    "Decision",
    "EndpointMemory",
    "Reason",
    "defer",
    "evolve",
    "target_bounds",
]

_D = TypeVar("_D")
_set = object.__setattr__


def evolve(obj: _D, **changes: Any) -> _D:
    """`dataclasses.replace` for the core's frozen, slotted dataclasses (none has a
    `__post_init__` or an init-only field): a copy with `changes`, without replace's walk over
    `fields()` and keyword `__init__`, which made most of the cost of the ~9 copies each
    endpoint's decision takes per tick (issue 16). An unknown field is a TypeError, as there."""
    cls = type(obj)
    new = object.__new__(cls)
    for name in cls.__slots__:  # type: ignore[attr-defined]
        _set(new, name, changes.pop(name) if name in changes else getattr(obj, name))
    if changes:
        raise TypeError(f"{cls.__name__} has no field {next(iter(changes))!r}")
    return new


class Action(StrEnum):
    SCALE_UP = "scale_up"
    SCALE_DOWN = "scale_down"
    SCALE_TO_ZERO = "scale_to_zero"
    SET_BOUNDS = "set_bounds"
    PAUSE = "pause"
    RESUME = "resume"
    HOLD = "hold"


class Reason(StrEnum):
    """The fixed vocabulary of decision reasons (metric label values)."""

    DEMAND_INCREASE = "demand_increase"
    DEMAND_DECREASE = "demand_decrease"
    WITHIN_RANGE = "within_range"
    BOUNDS_DRIFT = "bounds_drift"
    SCALE_TO_ZERO_TIMEOUT = "scale_to_zero_timeout"
    SCALE_UP_STABILIZED = "scale_up_stabilized"
    SCALE_DOWN_STABILIZED = "scale_down_stabilized"
    BELOW_FLOOR = "below_floor"
    ABOVE_CEILING = "above_ceiling"
    CONSTRAINT_FLOOR = "constraint_floor"
    CONSTRAINT_CEILING = "constraint_ceiling"
    POLICY_PAUSE = "policy_pause"
    POLICY_RESUME = "policy_resume"
    KEPT_PAUSED = "kept_paused"
    HUMAN_PAUSE = "human_pause"
    HUMAN_OVERRIDE = "human_override"
    RATE_LIMITED = "rate_limited"
    PARTIAL_DATA = "partial_data"
    STALE_METRICS = "stale_metrics"
    NO_DATA = "no_data"
    NOT_ACTIONABLE = "not_actionable"
    API_ERROR = "api_error"


Actuation = Literal["pin", "floor"]


@dataclass(frozen=True, slots=True)
class Decision:
    """One endpoint's decision for one tick, explained.

    `desired` is None for a HOLD that makes no claim about the count (stale data, wrong state).
    `bounds` is the (minReplica, maxReplica) the actuator should set, when an action is due;
    `scale_to_zero_timeout` a new timeout in minutes to set with it; `pause_reason` is what
    Governor records as its own reason when it pauses (so only it resumes).
    """

    key: str
    at: float
    action: Action
    reason: Reason
    message: str
    policy: str | None = None
    current: int | None = None
    desired: int | None = None
    bounds: tuple[int, int] | None = None
    clamps: tuple[str, ...] = ()
    proposals: tuple[Proposal, ...] = ()
    scale_to_zero_timeout: int | None = None
    pause_reason: str | None = None

    @property
    def acts(self) -> bool:
        return self.action is not Action.HOLD

    def signature(self) -> tuple[Any, ...]:
        """What makes two decisions 'the same' for change-only logging."""
        return (self.action, self.reason, self.policy, self.current, self.desired, self.clamps)


@dataclass(frozen=True, slots=True)
class EndpointMemory:
    """Per-endpoint state carried between ticks and persisted across restarts."""

    first_seen: float
    recommendations: tuple[tuple[float, int], ...] = ()
    policy_memory: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    last_action_at: float | None = None
    # When the endpoint was last seen entering `running` (None while it is not running): a
    # freshly woken or resumed endpoint gets a full down window before any scale-down.
    running_since: float | None = None
    state: str | None = None
    state_since: float | None = None
    # Governor's own reason when it paused the endpoint; None means "not paused by Governor".
    paused_by_governor: str | None = None
    # `status.updatedAt` (epoch s) as of Governor's last look or write: a newer one is a person.
    last_known_update: float | None = None
    backoff_until: float | None = None
    # A write sent before Governor knew its API identity and not yet acknowledged: when it was sent
    # (Governor's clock) and what it asked for ({"at", "min", "max"} or {"at", "state"}).
    unacked_write: Mapping[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "first_seen": self.first_seen,
            "recommendations": [list(r) for r in self.recommendations],
            "policy_memory": {k: dict(v) for k, v in self.policy_memory.items()},
            "last_action_at": self.last_action_at,
            "running_since": self.running_since,
            "state": self.state,
            "state_since": self.state_since,
            "paused_by_governor": self.paused_by_governor,
            "last_known_update": self.last_known_update,
            "backoff_until": self.backoff_until,
            "unacked_write": dict(self.unacked_write) if self.unacked_write else None,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> EndpointMemory:
        return cls(
            first_seen=float(data["first_seen"]),
            recommendations=tuple((float(t), int(n)) for t, n in data.get("recommendations", [])),
            policy_memory={k: dict(v) for k, v in data.get("policy_memory", {}).items()},
            last_action_at=data.get("last_action_at"),
            running_since=data.get("running_since"),
            state=data.get("state"),
            state_since=data.get("state_since"),
            paused_by_governor=data.get("paused_by_governor"),
            last_known_update=data.get("last_known_update"),
            backoff_until=data.get("backoff_until"),
            unacked_write=data.get("unacked_write"),
        )


def target_bounds(desired: int, *, ceiling: int, mode: Actuation) -> tuple[int, int]:
    """The (minReplica, maxReplica) that realise `desired` in the chosen actuation mode.

    maxReplica can never be 0 on the platform, so zero is expressed as min 0 plus scale-to-zero.
    """
    if mode == "pin":
        return (desired, max(desired, 1))
    return (desired, max(ceiling, desired, 1))


def defer(decision: Decision, why: str) -> Decision:
    """Turn an action into a HOLD (global rate limit): same explanation plus why it waits."""
    return evolve(
        decision,
        action=Action.HOLD,
        reason=Reason.RATE_LIMITED,
        bounds=None,
        scale_to_zero_timeout=None,
        pause_reason=None,
        message=f"{decision.message}; deferred: {why}",
    )
