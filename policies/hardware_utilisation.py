"""Hardware-utilisation target tracking: the Kubernetes HPA formula on GPU (or CPU) use.

desired = ceil(ready x avg_util / target_util_percent), where avg_util is the mean utilisation of
the ready replicas over `window_s`. The signal is GPU use on GPU instances
(`compute.accelerator == "gpu"`) and CPU use otherwise, unless `signal` names one. While the ratio
avg_util / target stays within `tolerance` of 1, the policy proposes the current count (HPA's
10 % dead band), so noise never moves it.

Initializing replicas are ignored: they report exactly 0 % until ready. While ready < current,
the window's per-sample means would be dragged down by them, so the policy then uses the latest
sample's replicas with a non-zero value (the ready ones) instead of the window mean, and it never
proposes fewer than `current` (the starting replicas are already on their way; no direction flip,
as in HPA's replica calculator). It never proposes 0: utilisation cannot see demand at zero
replicas, so going to zero is left to the scale-to-zero timeout and the pending-requests policy.

Reason codes:
- `utilisation_target`: the HPA formula gave a new count.
- `within_tolerance`: the ratio is within the tolerance band; proposes `current`.
- `initializing`: replicas are still starting; proposes at least `current`.
- `no_data`: no utilisation sample in the window, or no ready replica to measure (invalid).
"""

from __future__ import annotations

import math
from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from controller.platform.signals import Signal
from policies.base import EndpointView, Proposal, ProposalKind

__all__ = ["HardwareUtilisationParams", "HardwareUtilisationPolicy"]


class HardwareUtilisationParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    target_util_percent: float = Field(
        70.0, gt=0, le=100, description="Average utilisation per ready replica to aim for, percent."
    )
    tolerance: float = Field(
        0.1,
        ge=0,
        lt=1,
        description="No change while |avg/target - 1| <= this (HPA default 0.1 = 10 %).",
    )
    window_s: float = Field(
        60.0, gt=0, le=3600, description="Span the utilisation average is taken over."
    )
    signal: Literal["auto", "gpu", "cpu"] = Field(
        "auto", description="Which utilisation to track; auto = GPU on GPU instances, else CPU."
    )


class HardwareUtilisationPolicy:
    name: ClassVar[str] = "hardware_utilisation"
    Params: ClassVar[type[BaseModel]] = HardwareUtilisationParams

    def __init__(self, params: BaseModel) -> None:
        assert isinstance(params, HardwareUtilisationParams)
        self.params = params

    def _signal(self, view: EndpointView) -> Signal:
        if self.params.signal != "auto":
            return self.params.signal
        return "gpu" if view.endpoint.compute.accelerator == "gpu" else "cpu"

    def _invalid(self, message: str) -> Proposal:
        return Proposal(
            policy=self.name,
            kind=ProposalKind.DEMAND,
            reason="no_data",
            message=message,
            valid=False,
        )

    def propose(self, view: EndpointView, now: float) -> Proposal:
        p = self.params
        signal = self._signal(view)
        w = view.window
        starting = view.ready < view.current
        if view.ready <= 0:
            if view.current > 0:
                return Proposal(
                    policy=self.name,
                    kind=ProposalKind.DEMAND,
                    reason="initializing",
                    message=f"no ready replica yet ({view.current} starting); hold {view.current}",
                    replicas=view.current,
                )
            return self._invalid(f"no ready replica to measure {signal} use on")
        if w is None:
            return self._invalid(f"no {signal} sample")
        if starting:
            latest = w.latest
            fresh = latest is not None and now - p.window_s < latest.at <= now
            per_replica = getattr(latest, signal) if fresh else {}
            ready_values = [v for v in per_replica.values() if v != 0.0]
            avg = sum(ready_values) / len(ready_values) if ready_values else None
            basis = f"latest {signal} of {len(ready_values)} ready replica(s)"
        else:
            avg = w.mean(signal, span_s=p.window_s, now=now)
            basis = f"avg {signal} over {p.window_s:g}s"
        if avg is None:
            return self._invalid(f"no {signal} sample in the last {p.window_s:g}s")

        ratio = avg / p.target_util_percent
        head = f"{basis} {avg:.1f}% vs target {p.target_util_percent:g}% (ratio {ratio:.2f})"
        if abs(ratio - 1.0) <= p.tolerance:
            return Proposal(
                policy=self.name,
                kind=ProposalKind.DEMAND,
                reason="within_tolerance",
                message=f"{head} within ±{p.tolerance:g}; keep {view.current}",
                replicas=view.current,
            )
        # Round first so float noise does not add a replica; never 0 (see the module docstring).
        desired = max(1, math.ceil(round(view.ready * ratio, 6)))
        if starting and desired < view.current:
            return Proposal(
                policy=self.name,
                kind=ProposalKind.DEMAND,
                reason="initializing",
                message=(
                    f"{head}: {view.ready} ready x {ratio:.2f} -> {desired}, but "
                    f"{view.current - view.ready} replica(s) still starting; hold {view.current}"
                ),
                replicas=view.current,
            )
        return Proposal(
            policy=self.name,
            kind=ProposalKind.DEMAND,
            reason="utilisation_target",
            message=f"{head}: {view.ready} ready x {ratio:.2f} -> {desired}",
            replicas=desired,
        )
