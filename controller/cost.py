"""Cost truth, the pure parts: the price book, periods, forecasts, quota and budget levels.

Nothing here does I/O except reading the packaged pricing files; the ledger (`controller.ledger`)
records spend and calls these functions to turn it into forecasts and budget levels.

- **Price book.** The shipped table (`data/pricing.csv`, version in `data/pricing.version`) with
  the user's `pricing.overrides` on top. An instance in neither is *unknown*: it is warned about
  once and costed as `None`, never as zero.
- **Periods.** Days and months start at midnight in the ledger's time zone (UTC by default).
- **Forecast.** Period-end spend = recorded spend + a projection of the rest of the period, hour by
  hour, from an hour-of-week profile of observed billed replicas (the current count where the
  profile has less than `min_slot_s` of history), never below the configured floor.
- **Quota.** Accelerators held per (namespace, vendor, accelerator kind), counted the way the
  platform counts them.
- **Budgets.** `budget_status` maps spend and forecast against a cap to a `BudgetLevel`.
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import IntEnum
from functools import lru_cache
from importlib import resources
from typing import Any, Protocol
from zoneinfo import ZoneInfo

import structlog

from controller.errors import ConfigError
from controller.models import Endpoint, EndpointState
from controller.pricing import PriceRow, load_pricing

__all__ = [
    "SLOTS_PER_WEEK",
    "BudgetLevel",
    "PriceBook",
    "PriceDiff",
    "Profile",
    "QuotaLine",
    "SlotArray",
    "billed_replicas",
    "budget_status",
    "day_bounds",
    "forecast_period",
    "held_accelerators",
    "hour_of_week",
    "month_bounds",
    "period_slots",
    "pricing_version",
    "project_spend",
    "quota_lines",
    "quota_usage",
]

log = structlog.get_logger("governor.cost")

S = EndpointState

# -- price book ---------------------------------------------------------------------------------


@lru_cache(maxsize=1)
def pricing_version() -> dict[str, str]:
    """`version`, `source`, `retrieved` of the shipped pricing table."""
    text = (
        resources.files("controller").joinpath("data/pricing.version").read_text(encoding="utf-8")
    )
    out: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            k, _, v = line.partition("=")
            out[k.strip()] = v.strip()
    return out


@dataclass(frozen=True, slots=True)
class PriceDiff:
    vendor: str
    instance_type: str
    instance_size: str
    ours: float | None
    api: float | None


class _OverrideLike(Protocol):
    vendor: str
    instance_type: str
    instance_size: str
    usd_per_hour: float
    accelerators: int | None
    accelerator: str | None


class PriceBook:
    """Rates by `(vendor, instance_type, instance_size)`: the table, then the overrides.

    `lookup` returns None for an unknown instance, logs a warning the first time it sees it, and
    remembers it in `unknown` (exported as `governor_cost_unknown_instances`).
    """

    def __init__(
        self,
        overrides: Sequence[_OverrideLike] = (),
        *,
        table: Mapping[tuple[str, str, str], PriceRow] | None = None,
        where: str = "pricing.overrides",
    ) -> None:
        rows = dict(load_pricing() if table is None else table)
        for i, o in enumerate(overrides):
            key = (o.vendor, o.instance_type, o.instance_size)
            base = rows.get(key)
            if base is None:
                if o.accelerators is None:
                    raise ConfigError(
                        f"{where}[{i}].accelerators: required for {'/'.join(key)}, which is not "
                        "in the pricing table"
                    )
                kind = o.accelerator or ("gpu" if o.accelerators > 0 else "cpu")
                rows[key] = PriceRow(
                    vendor=o.vendor,
                    accelerator=kind,
                    instance_type=o.instance_type,
                    instance_size=o.instance_size,
                    usd_per_hour=o.usd_per_hour,
                    accelerators=o.accelerators,
                    accelerator_memory_gb=None,
                    vcpus=None,
                    ram_gb=None,
                    architecture="",
                    deprecated=False,
                )
            else:
                if o.accelerator is not None and o.accelerator != base.accelerator:
                    raise ConfigError(
                        f"{where}[{i}].accelerator: {'/'.join(key)} is {base.accelerator} in the "
                        f"pricing table, not {o.accelerator}"
                    )
                rows[key] = replace(
                    base,
                    usd_per_hour=o.usd_per_hour,
                    accelerators=base.accelerators if o.accelerators is None else o.accelerators,
                )
        self.rows = rows
        self.overridden = frozenset((o.vendor, o.instance_type, o.instance_size) for o in overrides)
        self.unknown: set[tuple[str, str, str]] = set()

    def lookup(self, vendor: str, instance_type: str, instance_size: str) -> PriceRow | None:
        key = (vendor, instance_type, instance_size)
        row = self.rows.get(key)
        if row is None and key not in self.unknown:
            self.unknown.add(key)
            log.warning(
                "price_unknown",
                instance="/".join(key),
                detail="no rate in the pricing table or pricing.overrides; its cost is reported "
                "as unknown, not zero",
            )
        return row

    def for_endpoint(self, ep: Endpoint) -> PriceRow | None:
        c = ep.compute
        return self.lookup(ep.provider.vendor, c.instance_type, c.instance_size)

    def diff_provider(self, provider: Mapping[str, Any]) -> list[PriceDiff]:
        """Rates that differ between this book and a `GET /provider[/{ns}]` answer."""
        api: dict[tuple[str, str, str], float] = {}
        for v in provider.get("vendors") or []:
            for r in v.get("regions") or []:
                for c in r.get("computes") or []:
                    try:
                        key = (v["name"], c["instanceType"], c["instanceSize"])
                        api[key] = float(c["pricePerHour"])
                    except (KeyError, TypeError, ValueError):
                        continue
        out = []
        for key in sorted(set(api) | set(self.rows)):
            ours = self.rows[key].usd_per_hour if key in self.rows else None
            theirs = api.get(key)
            if theirs is None or ours is None or abs(ours - theirs) > 1e-9:
                if theirs is None and key in self.overridden:
                    continue  # a private instance only we know about
                out.append(PriceDiff(*key, ours=ours, api=theirs))
        return out


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


def billed_replicas(ep: Endpoint) -> int:
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
    """Observed billed replicas per hour-of-week slot: replica-seconds and seconds observed."""

    replica_s: Mapping[int, float] | SlotArray
    seconds: Mapping[int, float] | SlotArray

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
    total = 0.0
    for slot, hours in period_slots(start, end, tz):
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
    endpoints: Iterable[Endpoint], prices: PriceBook
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
    ep: Endpoint, prices: PriceBook
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


# -- budgets ------------------------------------------------------------------------------------


class BudgetLevel(IntEnum):
    OK = 0
    ALERT = 1  # forecast >= alert x cap: metric and log only
    DEGRADE = 2  # forecast >= degrade x cap: lower ceilings, shorter idle timeouts
    HARD = 3  # spend >= hard x cap: pause non-protected endpoints


class _ThresholdsLike(Protocol):
    alert: float
    degrade: float
    hard: float


def budget_status(
    spend: float | None, forecast: float | None, cap: float, thresholds: _ThresholdsLike
) -> BudgetLevel:
    """The ladder step for one budget. Unknown figures (None) never relax a level: an unknown
    spend or forecast is treated as at least ALERT, so a missing price cannot hide a blow-out."""
    if cap <= 0:
        raise ValueError(f"cap must be > 0, got {cap}")
    if spend is not None and spend >= thresholds.hard * cap:
        return BudgetLevel.HARD
    if forecast is None or spend is None:
        return BudgetLevel.ALERT
    ratio = max(forecast, spend) / cap
    if ratio >= thresholds.degrade:
        return BudgetLevel.DEGRADE
    if ratio >= thresholds.alert:
        return BudgetLevel.ALERT
    return BudgetLevel.OK
