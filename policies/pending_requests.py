"""Pending-requests target tracking: enough replicas that each has about `target_per_replica`
requests waiting or in flight.

desired = ceil(mean pending over `window_s` / target_per_replica). It only proposes; how fast the
result is followed (prompt up, stabilised down) is the combiner's job.
"""

from __future__ import annotations

import math
from typing import ClassVar

from pydantic import BaseModel, ConfigDict, Field

from policies.base import EndpointView, Proposal, ProposalKind

__all__ = ["PendingRequestsParams", "PendingRequestsPolicy"]


class PendingRequestsParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    target_per_replica: float = Field(
        2.0, gt=0, le=10_000, description="Pending requests one replica should carry on average."
    )
    window_s: float = Field(
        60.0, gt=0, le=3600, description="Span the pending average is taken over."
    )


class PendingRequestsPolicy:
    name: ClassVar[str] = "pending_requests"
    Params: ClassVar[type[BaseModel]] = PendingRequestsParams

    def __init__(self, params: BaseModel) -> None:
        assert isinstance(params, PendingRequestsParams)
        self.params = params

    def propose(self, view: EndpointView, now: float) -> Proposal:
        p = self.params
        avg = view.window.mean("pending", span_s=p.window_s, now=now) if view.window else None
        if avg is None:
            return Proposal(
                policy=self.name,
                kind=ProposalKind.DEMAND,
                reason="no_data",
                message=f"no pending-requests sample in the last {p.window_s:g}s",
                valid=False,
            )
        # Round first so float noise (2.0000000001 / 2) does not add a replica.
        desired = math.ceil(round(avg / p.target_per_replica, 6))
        return Proposal(
            policy=self.name,
            kind=ProposalKind.DEMAND,
            reason="pending_target",
            message=(
                f"avg pending {avg:.2f} over {p.window_s:g}s / target {p.target_per_replica:g} "
                f"per replica -> {desired}"
            ),
            replicas=desired,
        )
