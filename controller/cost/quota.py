"""Quota accounting: accelerators held per (namespace, vendor, accelerator kind), counted the way
the platform counts them (paused endpoints hold none; scaled-to-zero ones hold their maximum).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Protocol

from controller.cost.pricing import PriceBook
from controller.platform.models import AnyEndpoint, EndpointState

S = EndpointState

__all__ = ["QuotaLine", "held_accelerators", "quota_lines", "quota_usage"]

# -- quota --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class QuotaLine:
    namespace: str
    vendor: str
    accelerator: str
    used: int
    limit: int | None

    @property
    def free(self) -> int | None:
        return None if self.limit is None else self.limit - self.used


def quota_usage(
    endpoints: Iterable[AnyEndpoint], prices: PriceBook
) -> dict[tuple[str, str, str], int]:
    """Accelerators held per (namespace, vendor, kind), counted as the platform counts them:
    running/initializing/updating: target replicas; pending: max(min, 1); scaledToZero: max
    replicas; paused/failed: nothing. CPU instances hold no accelerators and are left out."""
    out: dict[tuple[str, str, str], int] = {}
    for ep in endpoints:
        held = held_accelerators(ep, prices)
        if held is not None:
            key, n, _ = held
            out[key] = out.get(key, 0) + n
    return out


def held_accelerators(
    ep: AnyEndpoint, prices: PriceBook
) -> tuple[tuple[str, str, str], int, int] | None:
    """One endpoint's (quota group, accelerators held, accelerators per replica), by the rules of
    `quota_usage`; None for CPU or unpriced instances, which hold no accelerator quota."""
    row = prices.for_endpoint(ep)
    if row is None or row.accelerators == 0:
        return None
    sc = ep.compute.scaling
    st = ep.state
    if st in (S.INITIALIZING, S.RUNNING, S.UPDATING):
        n = ep.status.target_replica
    elif st == S.PENDING:
        n = max(sc.min_replica, 1)
    elif st == S.SCALED_TO_ZERO:
        n = sc.max_replica
    else:
        n = 0
    key = (ep.namespace or "", ep.provider.vendor, ep.compute.accelerator)
    return key, n * row.accelerators, row.accelerators


class _LimitLike(Protocol):
    namespace: str
    vendor: str
    accelerator: str
    max_accelerators: int


def quota_lines(
    usage: Mapping[tuple[str, str, str], int], limits: Iterable[_LimitLike]
) -> list[QuotaLine]:
    lim = {(q.namespace, q.vendor, q.accelerator): q.max_accelerators for q in limits}
    keys = sorted(set(usage) | set(lim))
    return [QuotaLine(*k, used=usage.get(k, 0), limit=lim.get(k)) for k in keys]
