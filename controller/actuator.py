"""Carries decisions out through the management API: re-read, skip no-ops, honour dry-run.

The actuator is the only place that changes an endpoint. Before acting it re-reads the endpoint:
if the state or the replica bounds changed since the tick observed them (a person, or another
tool), the decision was made on stale data and is skipped, never forced.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Literal

from controller.client import EndpointsClient
from controller.decide import Action, Decision
from controller.errors import ApiError, RejectedApiError
from controller.models import Endpoint, EndpointState

__all__ = ["ActionResult", "Actuator", "Outcome"]


class ActionResult(StrEnum):
    APPLIED = "applied"
    DRY_RUN = "dry_run"
    NOOP = "noop"
    SKIPPED = "skipped"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class Outcome:
    result: ActionResult
    detail: str
    error: Literal["none", "spec", "internal"] = "none"
    endpoint: Endpoint | None = None


class Actuator:
    def __init__(self, client: EndpointsClient, *, dry_run: bool) -> None:
        self.client = client
        self.dry_run = dry_run

    async def apply(self, decision: Decision, observed: Endpoint) -> Outcome:
        """Make `observed` match `decision`, or explain why not. Never raises for API errors."""
        if not decision.acts or decision.bounds is None:
            return Outcome(ActionResult.NOOP, "nothing to do")
        want_min, want_max = decision.bounds
        if self.dry_run:
            extra = " then scale-to-zero" if decision.action is Action.SCALE_TO_ZERO else ""
            return Outcome(
                ActionResult.DRY_RUN,
                f"would set minReplica={want_min} maxReplica={want_max}{extra}",
            )
        ns, name = observed.namespace or "", observed.name
        try:
            fresh = await self.client.get_endpoint(ns, name)
            if fresh.state is not EndpointState.RUNNING:
                return Outcome(
                    ActionResult.SKIPPED, f"endpoint is now {fresh.state.value}", endpoint=fresh
                )
            seen = observed.compute.scaling
            now_ = fresh.compute.scaling
            if (seen.min_replica, seen.max_replica) != (now_.min_replica, now_.max_replica):
                return Outcome(
                    ActionResult.SKIPPED,
                    f"replica bounds changed since observed ({seen.min_replica}..{seen.max_replica}"
                    f" -> {now_.min_replica}..{now_.max_replica}); re-deciding next tick",
                    endpoint=fresh,
                )
            changes: dict[str, int] = {}
            if now_.min_replica != want_min:
                changes["min_replica"] = want_min
            if now_.max_replica != want_max:
                changes["max_replica"] = want_max
            result = fresh
            if changes:
                result = await self.client.update_scaling(ns, name, **changes)
            if decision.action is Action.SCALE_TO_ZERO:
                result = await self.client.scale_to_zero(ns, name)
            elif not changes:
                return Outcome(ActionResult.NOOP, "already as desired", endpoint=fresh)
            done = ", ".join(f"{k}={v}" for k, v in changes.items()) or "bounds unchanged"
            if decision.action is Action.SCALE_TO_ZERO:
                done += ", scaled to zero"
            return Outcome(ActionResult.APPLIED, done, endpoint=result)
        except RejectedApiError as exc:
            return Outcome(ActionResult.FAILED, str(exc), error="spec")
        except ApiError as exc:
            return Outcome(ActionResult.FAILED, str(exc), error="internal")
