"""Pending-requests target tracking with a Knative-style panic window.

Stable mode: desired = ceil(mean pending over `window_s` / target_per_replica). How fast that is
followed (prompt up, stabilised down) is the combiner's job. "Pending" is the feed's
pending-requests series; on a feed without one (the platform's published sample) it is the
in-flight count derived by Little's law (`EndpointWindow.in_flight`, docs/signals.md), and the
reason says which.

Panic mode (Knative KPA): the same formula over the short `panic_window_s` gives the *panic
desired*. When it reaches `panic_threshold` x the ready replicas (at least 1), the policy panics:
it proposes max(stable desired, panic desired, the highest panic desired seen since panicking,
current) — so it scales up at once and never proposes fewer replicas than the endpoint has. Every
tick still over the threshold restarts the calm clock; the panic ends once a full `window_s` has
passed with no tick over it. The panic state lives in `Proposal.memory` (`panic_since`: entry time,
`panic_last`: last tick over the threshold, `panic_max`: highest panic desired), so it survives a
restart of Governor.

Reason codes:
- `pending_target`: stable-window proposal.
- `panic`: panicking (entered this tick or still within one calm window).
- `no_data`: no pending sample and nothing to derive one from in the stable window (invalid
  proposal: the combiner will not scale down on the other signals). An ongoing panic is kept in
  memory.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from policies.base import EndpointView, Proposal, ProposalKind

__all__ = ["PendingRequestsParams", "PendingRequestsPolicy"]


class PendingRequestsParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    target_per_replica: float = Field(
        2.0, gt=0, le=10_000, description="Pending requests one replica should carry on average."
    )
    window_s: float = Field(
        60.0,
        gt=0,
        le=3600,
        description="Stable window: span the pending average is taken over; also the calm time "
        "needed to leave panic.",
    )
    panic_window_s: float = Field(
        15.0,
        gt=0,
        le=3600,
        description="Panic window: short span for burst detection; keep it >= the scrape interval "
        "or it often holds no sample.",
    )
    panic_threshold: float = Field(
        2.0,
        gt=1.0,
        le=100.0,
        description="Panic when panic-window desired replicas >= this x ready replicas (Knative "
        "200 % = 2.0).",
    )

    @model_validator(mode="after")
    def _windows(self) -> Self:
        if self.panic_window_s > self.window_s:
            raise ValueError(
                f"panic_window_s ({self.panic_window_s:g}) must not exceed window_s "
                f"({self.window_s:g})"
            )
        return self


def _desired(avg: float, target: float) -> int:
    # Round first so float noise (2.0000000001 / 2) does not add a replica.
    return math.ceil(round(avg / target, 6))


class PendingRequestsPolicy:
    name: ClassVar[str] = "pending_requests"
    Params: ClassVar[type[BaseModel]] = PendingRequestsParams

    def __init__(self, params: BaseModel) -> None:
        assert isinstance(params, PendingRequestsParams)
        self.params = params

    def propose(self, view: EndpointView, now: float) -> Proposal:
        p = self.params
        w = view.window
        reading = w.in_flight(span_s=p.window_s, now=now) if w is not None else None
        if reading is None:
            return Proposal(
                policy=self.name,
                kind=ProposalKind.DEMAND,
                reason="no_data",
                message=f"no pending-requests sample, nor requests and latency to derive one "
                f"from, in the last {p.window_s:g}s",
                valid=False,
            )
        avg = reading.value
        stable = _desired(avg, p.target_per_replica)
        source = "" if reading.source == "pending" else f" ({reading.describe()})"
        stable_msg = (
            f"avg pending {avg:.2f}{source} over {p.window_s:g}s / target "
            f"{p.target_per_replica:g} per replica -> {stable}"
        )

        mem = view.memory
        panic_since: float | None = mem.get("panic_since")
        panic_last: float | None = mem.get("panic_last")
        panic_max = int(mem.get("panic_max", 0))
        if panic_last is not None and now - panic_last >= p.window_s:
            panic_since = panic_last = None  # one full stable window of calm: leave panic
            panic_max = 0

        quick = w.in_flight(span_s=p.panic_window_s, now=now) if w is not None else None
        short = quick.value if quick is not None else None
        burst = _desired(short, p.target_per_replica) if short is not None else None
        capacity = max(view.ready, 1)
        over = burst is not None and burst >= p.panic_threshold * capacity
        if over:
            assert burst is not None
            panic_since = now if panic_since is None else panic_since
            panic_last = now
            panic_max = max(panic_max, burst)

        if panic_since is None:
            return Proposal(
                policy=self.name,
                kind=ProposalKind.DEMAND,
                reason="pending_target",
                message=stable_msg,
                replicas=stable,
                memory={},
            )
        assert panic_last is not None
        desired = max(stable, burst or 0, panic_max, view.current)
        if over:
            why = (
                f"panic: avg pending {short:.2f} over {p.panic_window_s:g}s wants {burst} >= "
                f"{p.panic_threshold:g} x {capacity} ready"
            )
        else:
            calm_left = p.window_s - (now - panic_last)
            why = f"panic since {now - panic_since:.0f}s ago, calm for {calm_left:.0f}s more"
        memory: dict[str, Any] = {
            "panic_since": panic_since,
            "panic_last": panic_last,
            "panic_max": panic_max,
        }
        return Proposal(
            policy=self.name,
            kind=ProposalKind.DEMAND,
            reason="panic",
            message=f"{why}; no scale-down while panicking ({stable_msg}) -> {desired}",
            replicas=desired,
            memory=memory,
        )
