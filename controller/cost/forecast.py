"""Periods and forecasts: day and month bounds in the ledger's zone, the billing model, and the
period-end projection from an hour-of-week profile of billed replicas.

Forecast = recorded spend + a projection of the rest of the period, hour by hour, from the profile
(the current count where the profile has less than `min_slot_s` of history), never below the floor.
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo

import structlog

from controller.platform.models import AnyEndpoint, EndpointState

log = structlog.get_logger("governor.cost")

S = EndpointState

__all__ = [
    "SLOTS_PER_WEEK",
    "Profile",
    "SlotArray",
    "billed_replicas",
    "day_bounds",
    "day_key",
    "forecast_period",
    "hour_of_week",
    "month_bounds",
    "period_hours",
    "period_slots",
    "project_spend",
]

# -- periods ------------------------------------------------------------------------------------


def _local(t: float, tz: ZoneInfo) -> datetime:
    return datetime.fromtimestamp(t, tz)


def day_bounds(t: float, tz: ZoneInfo) -> tuple[float, float]:
    """Start and end (epoch seconds) of the local day holding `t`."""
    d = _local(t, tz).replace(hour=0, minute=0, second=0, microsecond=0)
    nxt = (d + timedelta(days=1, hours=3)).replace(hour=0)  # safe across DST changes
    return d.timestamp(), nxt.timestamp()


def month_bounds(t: float, tz: ZoneInfo) -> tuple[float, float]:
    d = _local(t, tz).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    nxt = (d + timedelta(days=32)).replace(day=1)
    return d.timestamp(), nxt.timestamp()


def day_key(t: float, tz: ZoneInfo) -> str:
    return _local(t, tz).strftime("%Y-%m-%d")


def hour_of_week(t: float, tz: ZoneInfo) -> int:
    d = _local(t, tz)
    return d.weekday() * 24 + d.hour


# -- billing model ------------------------------------------------------------------------------


def billed_replicas(ep: AnyEndpoint) -> int:
    """Replicas the platform bills now: `targetReplica` while initializing, running or updating.

    Pending, paused, scaled-to-zero and failed endpoints have no replica and cost nothing.
    (While updating, the retiring old replicas are billed too but are not visible in the API.)
    """
    if ep.state in (S.INITIALIZING, S.RUNNING, S.UPDATING):
        return max(0, ep.status.target_replica)
    return 0


# -- forecast -----------------------------------------------------------------------------------


SLOTS_PER_WEEK = 7 * 24


class SlotArray(array):
    """Doubles indexed by hour-of-week slot, readable like the `Mapping` a `Profile` holds."""

    @classmethod
    def zeros(cls) -> SlotArray:
        return cls("d", bytes(8 * SLOTS_PER_WEEK))

    def get(self, slot: int, default: float = 0.0) -> float:
        return self[slot] if 0 <= slot < len(self) else default


@dataclass(frozen=True, slots=True)
class Profile:
    """Observed billed replicas per hour-of-week slot: replica-seconds and seconds observed.

    `slots`, when given, holds every slot with seconds observed (others are 0): the projection
    then visits those instead of every slot of the period. Mappings are their own keys.
    """

    replica_s: Mapping[int, float] | SlotArray
    seconds: Mapping[int, float] | SlotArray
    slots: Collection[int] | None = None

    def mean(self, slot: int, *, min_slot_s: float) -> float | None:
        secs = self.seconds.get(slot, 0.0)
        if secs < min_slot_s:
            return None
        return self.replica_s.get(slot, 0.0) / secs

    @staticmethod
    def empty() -> Profile:
        return Profile({}, {})


@lru_cache(maxsize=8)
def period_slots(start: float, end: float, tz: ZoneInfo) -> tuple[tuple[int, float], ...]:
    """Hours of [start, end) per hour-of-week slot, as (slot, hours) pairs in first-seen order.

    The split is the same for every endpoint of a tick (same period, same zone), so it is computed
    once per tick and period instead of once per endpoint: at 10,000 endpoints, walking a month's
    remaining hours per endpoint cost ~5 s of CPU per tick.
    """
    hours: dict[int, float] = {}
    t = start
    while t < end:
        nxt = min(end, (math.floor(t / 3600.0) + 1) * 3600.0)
        slot = hour_of_week(t, tz)
        hours[slot] = hours.get(slot, 0.0) + (nxt - t) / 3600.0
        t = nxt
    return tuple(hours.items())


@lru_cache(maxsize=8)
def period_hours(start: float, end: float, tz: ZoneInfo) -> tuple[dict[int, float], float]:
    """`period_slots` as a mapping slot -> hours, and the period's hours in all."""
    pairs = period_slots(start, end, tz)
    return dict(pairs), math.fsum(h for _, h in pairs)


def project_spend(
    start: float,
    end: float,
    *,
    usd_per_hour: float | None,
    profile: Profile,
    current_replicas: float,
    floor: float = 0.0,
    tz: ZoneInfo,
    min_slot_s: float = 1800.0,
) -> float | None:
    """Expected spend over [start, end): hour by hour, profile mean (else current) >= floor."""
    if usd_per_hour is None:
        return None
    if end <= start:
        return 0.0
    # `Profile.mean` inlined: this runs twice per endpoint per tick, over up to 168 slots.
    base = max(current_replicas, floor)
    seconds, replica_s = profile.seconds, profile.replica_s
    pairs = period_slots(start, end, tz)
    seen = profile.slots
    if seen is None and isinstance(seconds, Mapping):
        seen = seconds.keys()
    if seen is not None and len(seen) < len(pairs):
        # Few slots observed (a young ledger, a new endpoint): every hour at the base rate, then
        # the observed slots of the period corrected to their means.
        by_slot, span_h = period_hours(start, end, tz)
        total = base * span_h
        for slot in seen:
            hours = by_slot.get(slot)
            if hours is None:
                continue
            secs = seconds.get(slot, 0.0)
            if secs >= min_slot_s:
                total += (max(replica_s.get(slot, 0.0) / secs, floor) - base) * hours
        return total * usd_per_hour
    total = 0.0
    for slot, hours in pairs:
        secs = seconds.get(slot, 0.0)
        if secs < min_slot_s:
            total += base * hours
        else:
            total += max(replica_s.get(slot, 0.0) / secs, floor) * hours
    return total * usd_per_hour


def forecast_period(
    recorded_usd: float | None,
    now: float,
    period_end: float,
    **kw: Any,
) -> float | None:
    """Recorded spend so far + the projection of the rest of the period (None when unknown)."""
    proj = project_spend(now, period_end, **kw)
    if recorded_usd is None or proj is None:
        return None
    return recorded_usd + proj
