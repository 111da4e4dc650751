"""Builders for policy tests: views from plain numbers, windows from richer samples."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import replace
from typing import Any

from controller.platform.signals import FeedSample
from controller.platform.windows import EndpointWindow
from policies.base import EndpointView, FleetMember, QuotaView
from tests.helpers import T0, endpoint

__all__ = ["T0", "feed", "rich_window", "view"]


def feed(
    at: float,
    *,
    pending: float | None = None,
    served: float | None = None,
    cpu: Mapping[str, float] | None = None,
    gpu: Mapping[str, float] | None = None,
) -> FeedSample:
    """One sample: pending gauge, cumulative served requests, per-replica CPU/GPU percent."""
    return FeedSample(
        at=at,
        pending=pending,
        requests={} if served is None else {"2xx": served},
        cpu=dict(cpu or {}),
        gpu=dict(gpu or {}),
    )


def rich_window(samples: Iterable[FeedSample], *, retention_s: float = 3600) -> EndpointWindow:
    w = EndpointWindow(retention_s=retention_s)
    for s in samples:
        w.add(s)
    return w


def view(
    *,
    state: str = "running",
    current: int = 2,
    ready: int | None = None,
    window: EndpointWindow | None = None,
    memory: Mapping[str, Any] | None = None,
    accelerator: str = "gpu",
    min_replica: int | None = None,
    key_name: str = "chat",
    state_since: float | None = None,
    paused_by_governor: str | None = None,
    priority: int = 0,
    quota: QuotaView | None = None,
    fleet: tuple[FleetMember, ...] = (),
    floor: int = 0,
    ceiling: int = 10,
) -> EndpointView:
    ep = endpoint(state=state, target=current, ready=ready, min_replica=min_replica, name=key_name)
    if accelerator != "gpu":
        ep = ep.model_copy(
            update={"compute": ep.compute.model_copy(update={"accelerator": accelerator})}
        )
        ep.namespace = "org"
    v = EndpointView(
        key=ep.key,
        endpoint=ep,
        window=window,
        current=current,
        ready=current if ready is None else ready,
        floor=floor,
        ceiling=ceiling,
        state_since=state_since,
        paused_by_governor=paused_by_governor,
        priority=priority,
        quota=quota,
        fleet=fleet,
    )
    return replace(v, memory=dict(memory or {}))
