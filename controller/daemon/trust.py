"""What a listing may say before Governor believes it: replica counts within reason, no future.

A bogus `targetReplica: 1000` on an endpoint whose ceiling is 4 must not drive writes or be billed
as 1000 replicas; an `updatedAt` in 2099 must not be stored (it would make every later change look
older than Governor's last look and switch off the detection of people's changes). Such an item is
skipped for the tick and counted; the next listing is judged afresh.
"""

from __future__ import annotations

from controller.platform.models import AnyEndpoint

__all__ = ["implausible"]


def implausible(
    ep: AnyEndpoint,
    *,
    now: float,
    max_skew_s: float,
    max_replicas: int,
    last_target: int | None,
) -> str | None:
    """Why `ep` cannot be believed, or None. `last_target` is the last believed target."""
    st = ep.status
    sc = ep.compute.scaling
    for name, value in (("targetReplica", st.target_replica), ("readyReplica", st.ready_replica)):
        if value < 0:
            return f"status.{name} is {value} (negative)"
    # The platform scales within [minReplica, maxReplica]; right after the bounds are lowered the
    # target may still be the old one, so the last believed target is allowed too.
    cap = min(max_replicas, max(sc.max_replica, sc.min_replica, last_target or 0))
    for name, value in (("targetReplica", st.target_replica), ("readyReplica", st.ready_replica)):
        if value > cap:
            return (
                f"status.{name} is {value}, above what the endpoint allows "
                f"(maxReplica {sc.max_replica}, platform limit {max_replicas})"
            )
    if sc.max_replica > max_replicas or sc.min_replica < 0:
        return f"compute.scaling {sc.min_replica}..{sc.max_replica} outside 0..{max_replicas}"
    for name, ts in (("updatedAt", st.updated_at), ("createdAt", st.created_at)):
        t = ts.timestamp()
        if t > now + max_skew_s:
            return (
                f"status.{name} is {ts.isoformat()}, in the future "
                f"(clock skew allowance {max_skew_s:g}s)"
            )
    return None
