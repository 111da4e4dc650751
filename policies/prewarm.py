"""Predictive pre-warm: the rise the endpoint's own history shows one cold start ahead.

A replica asked for now serves a cold start from now. Load that recurs (a job on every hour, the
morning after an idle night, Monday 09:00) arrives before a reactive controller's replicas. The
loop hands the policy the recorded per-minute load at the same phase of earlier periods
(`DemandHistory`: an hour, two, three ago, a day, two, three ago, a week, two ago). For each lag,
the *rise* that followed then is the peak over the next lead (cold start + margin) minus the load
at that instant; the forecast is today's load plus the `confirm`-th largest rise among the lags.

Why a rise and not the level: on a load that falls through the afternoon, an hour ago was busier
than now at every phase, but nothing rose: the rise is 0 and nothing is pre-warmed. Why the
`confirm`-th largest: a level is used only when at least `confirm` earlier periods rose that much
at this phase (a pattern that recurred), so a one-off flash crowd is never replayed. The lags of
all periods count together, so a burst seen an hour ago and a day ago confirms (a load looped
every hour of a morning, the next morning).

**Unseen bursts.** A burst that never happened at this phase before is not in those lags, and
one shorter than a cold start is over before a replica started for it is ready. What the
endpoint's own recent traffic does say is how bursty it is: `burst_excess` reads, for one scrape
interval, the arrivals beyond what a Poisson process at the median rate of the intervals around
it yields (`z` standard deviations over), so Poisson noise (the queueing model's business) and
a sustained rise (a step, a ramp, a start from idle: the median follows it, and the reactive
sizing answers it one cold start later) count as 0, and a spike of seconds counts in full.
`burst_headroom` is the largest such excess per minute over the lookback, each faded by its age
(half-life), so the headroom held decays once the bursts stop.

Pure: the history and `now` in, a forecast out; the loop reads the store.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from policies.base import DemandHistory

__all__ = ["Forecast", "burst_excess", "burst_headroom", "fold_peak", "forecast_rise", "lag_label"]


@dataclass(frozen=True, slots=True)
class Forecast:
    """The rise expected within `lead_s`, and the lags whose own rise was at least that."""

    rise: float
    support: tuple[float, ...]
    known: int

    def describe(self) -> str:
        lags = ", ".join(lag_label(x) for x in self.support)
        n = len(self.support)
        return f"a rise of +{self.rise:.2f} in flight seen {n} of {self.known} lags ago ({lags})"


def lag_label(lag_s: float) -> str:
    """1h, 2d, 1w: how a lag reads in a reason."""
    for unit, span in (("w", 604_800.0), ("d", 86_400.0), ("h", 3_600.0), ("m", 60.0)):
        if lag_s >= span and lag_s % span == 0:
            return f"{lag_s / span:g}{unit}"
    return f"{lag_s:g}s"


def _rise(
    history: DemandHistory, lag: float, loads: tuple[float | None, ...], now: float, lead_s: float
) -> float | None:
    """Peak load over [now - lag, now - lag + lead] minus the load at now - lag; None if the
    history does not cover it."""
    base = math.floor((history.at - lag) / 60.0)
    first = math.floor((now - lag) / 60.0) - base
    last = math.floor((now - lag + lead_s) / 60.0) - base
    if first < 0 or last >= len(loads):
        return None
    present = loads[first] or 0.0
    peak = max((v or 0.0) for v in loads[first : last + 1])
    return peak - present


def forecast_rise(
    history: DemandHistory | None, *, now: float, lead_s: float, confirm: int
) -> Forecast | None:
    """The `confirm`-th largest rise over the next `lead_s` among the lags the record covers;
    None when fewer lags are known, or the rise is not positive (nothing recurred)."""
    if history is None or confirm < 1:
        return None
    rises: list[tuple[float, float]] = []
    for lag, loads in history.lags:
        if lag > history.recorded_s + (now - history.at):
            continue  # before the first record: unknown, not quiet
        r = _rise(history, lag, loads, now, lead_s)
        if r is not None:
            rises.append((r, lag))
    if len(rises) < confirm:
        return None
    level = sorted((r for r, _ in rises), reverse=True)[confirm - 1]
    if level <= 0:
        return None
    support = tuple(sorted(lag for r, lag in rises if r >= level))
    return Forecast(rise=level, support=support, known=len(rises))


def burst_excess(arrivals: Sequence[float], spans: Sequence[float], mid: int, z: float) -> float:
    """Arrivals per second of interval `mid` beyond the median rate of all the intervals given
    (`arrivals[i]` requests over `spans[i]` seconds) plus `z` x the square root of the count
    that median expects; 0 when none."""
    if not arrivals or len(arrivals) != len(spans) or not 0 <= mid < len(arrivals):
        return 0.0
    dt = spans[mid]
    if dt <= 0:
        return 0.0
    median = statistics.median(
        n / s if s > 0 else 0.0 for n, s in zip(arrivals, spans, strict=True)
    )
    expected = median * dt
    return max(0.0, arrivals[mid] - expected - z * math.sqrt(expected)) / dt


def fold_peak(
    peaks: list[list[float]], *, bucket: int, value: float, oldest: int
) -> list[list[float]]:
    """`peaks` ([bucket, largest value], oldest first) with `value` folded into `bucket`, and the
    buckets before `oldest` dropped."""
    kept = [[float(b), float(v)] for b, v in peaks if int(b) >= oldest]
    if bucket < oldest:
        return kept
    if kept and int(kept[-1][0]) == bucket:
        kept[-1][1] = max(kept[-1][1], value)
    elif not kept or int(kept[-1][0]) < bucket:
        kept.append([float(bucket), value])
    return kept


def burst_headroom(
    peaks: Sequence[Sequence[float]], *, now: float, bucket_s: float, half_life_s: float
) -> tuple[float, float]:
    """The largest peak, each faded by 0.5 ** (age / half_life_s) (age from its bucket's end),
    and the largest as recorded: (headroom, top)."""
    best, top = 0.0, 0.0
    for b, v in peaks:
        age = max(0.0, now - (b + 1) * bucket_s)
        best = max(best, v * 0.5 ** (age / half_life_s))
        top = max(top, v)
    return best, top
