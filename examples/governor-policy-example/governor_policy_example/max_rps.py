"""`max_rps_per_replica`: enough replicas that each serves at most N requests per second.

desired = ceil(request rate over `window_s` / max_rps_per_replica). A demand proposal: the
combiner takes the max over demand policies, then stabilises and clamps it.

Reason codes:
- `rps_target`: the rate gave a count.
- `no_data`: fewer than two samples in the window (invalid: no scale-down on other signals).
"""

from __future__ import annotations

import math
from typing import ClassVar

from pydantic import BaseModel, ConfigDict, Field

from policies.base import EndpointView, Proposal, ProposalKind

__all__ = ["MaxRpsPerReplicaParams", "MaxRpsPerReplicaPolicy"]


class MaxRpsPerReplicaParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    max_rps_per_replica: float = Field(
        gt=0, le=100_000, description="Requests per second one replica may serve."
    )
    window_s: float = Field(60.0, gt=0, le=3600, description="Span the rate is measured over.")


class MaxRpsPerReplicaPolicy:
    name: ClassVar[str] = "max_rps_per_replica"
    Params: ClassVar[type[BaseModel]] = MaxRpsPerReplicaParams

    def __init__(self, params: BaseModel) -> None:
        assert isinstance(params, MaxRpsPerReplicaParams)
        self.params = params

    def propose(self, view: EndpointView, now: float) -> Proposal:
        p = self.params
        w = view.window
        rate = w.request_rate(span_s=p.window_s, now=now) if w is not None else None
        if rate is None:
            return Proposal(
                policy=self.name,
                kind=ProposalKind.DEMAND,
                reason="no_data",
                message=f"no request rate over the last {p.window_s:g}s",
                valid=False,
            )
        desired = math.ceil(round(rate / p.max_rps_per_replica, 6))
        return Proposal(
            policy=self.name,
            kind=ProposalKind.DEMAND,
            reason="rps_target",
            message=f"{rate:.2f} req/s / {p.max_rps_per_replica:g} per replica -> {desired}",
            replicas=desired,
        )
