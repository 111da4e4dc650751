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

Pure: the history and `now` in, a forecast out; the loop reads the store.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from policies.base import DemandHistory

__all__ = ["Forecast", "forecast_rise", "lag_label"]


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
