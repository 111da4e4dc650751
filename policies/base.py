"""The policy protocol: an immutable endpoint view and a clock time in, one explained proposal out.

Policies do no I/O and read no clock; `now` is passed in and metric windows are already in memory.
A proposal is either *demand* (a replica count) or a *constraint* (bounds or a state); the combiner
in `controller.decide` turns all of them into one decision.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, ClassVar, Protocol, runtime_checkable

from pydantic import BaseModel

from controller.models import Endpoint
from controller.windows import EndpointWindow

__all__ = ["EndpointView", "Policy", "Proposal", "ProposalKind"]


class ProposalKind(StrEnum):
    DEMAND = "demand"
    CONSTRAINT = "constraint"
    NO_OPINION = "no_opinion"


@dataclass(frozen=True, slots=True)
class EndpointView:
    """What a policy may know about one endpoint at one tick.

    `window` holds the scraped samples (read it with `now`); `current` is the replica count the
    platform is moving to (`status.targetReplica`), `ready` the replicas serving now.
    `memory` is this policy's own state from the previous tick (empty at first).
    """

    key: str
    endpoint: Endpoint
    window: EndpointWindow | None
    current: int
    ready: int
    floor: int
    ceiling: int
    memory: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Proposal:
    """One policy's opinion with its reason.

    `reason` is a short snake_case code from the policy's fixed vocabulary (it becomes a metric
    label value); `message` is for humans. `valid=False` means the policy needed data it did not
    have: the combiner then refuses to scale down on the remaining signals.
    """

    policy: str
    kind: ProposalKind
    reason: str
    message: str
    replicas: int | None = None
    floor: int | None = None
    ceiling: int | None = None
    valid: bool = True
    memory: Mapping[str, Any] | None = None


@runtime_checkable
class Policy(Protocol):
    """A policy class: a name, a pydantic `Params` model, and one pure method."""

    name: ClassVar[str]
    Params: ClassVar[type[BaseModel]]

    def __init__(self, params: BaseModel) -> None: ...

    def propose(self, view: EndpointView, now: float) -> Proposal:
        """Return this policy's proposal for `view` at time `now` (epoch seconds)."""
        ...
