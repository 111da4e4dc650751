"""Time windows that set bounds, the scale-to-zero timeout or the state (paused/running).

A window is either a **cron window** (`cron`: when it starts, 5-field cron syntax; `duration_s`:
how long it lasts, in real seconds) or a **weekly window** (`days`, `start`, `end` as local
"HH:MM"; `end` <= `start` means it ends on the next day, "24:00" is midnight at the end of the day).
Times are read in the IANA `timezone`. Each window may set `floor`, `ceiling`,
`scale_to_zero_timeout_min` and `state`. The proposal is a *constraint*: the combiner clamps demand
with it.

Rules, in order:

1. **Holidays.** An occurrence that *starts* on a local date listed in `holidays` does not apply.
2. **Windows in force** at `now` set each field from the first window in list order that sets it
   (put the specific windows first). When no window is in force, the `default` block applies;
   without one the policy has no opinion.
3. **Pre-warm.** Within `prewarm_s` before an occurrence starts, that window's `floor` applies
   already (raising, never lowering the floor in force, and lifting a lower ceiling to it), and so
   does its `state: running` (it overrides a `paused` in force). Ceilings, timeouts and `paused`
   apply only from the start itself. Pre-warming covers the cold start.
4. **People first.** `running` is never proposed for an endpoint a person paused
   (`view.paused_by_governor` is None); the message says it was left out.

Daylight-saving time: weekly windows follow the wall clock. An edge that falls in a spring-forward
gap takes effect at the first instant after the gap (02:30 on a day when 02:00 jumps to 03:00
means 03:00); an edge in a repeated fall-back hour takes effect at its first occurrence. Cron
windows follow cron (via `cronsim`, Debian cron semantics): a fixed-time job in the gap starts at
the end of the gap, one in the repeated hour starts once; the duration is then counted in real
seconds, so a "0 8 * * *" window of 36000 s ends at 18:00 local on every day.

Reason codes:
- `window`: one or more windows are in force.
- `prewarm`: a window that starts within `prewarm_s` raised the floor or set running.
- `default`: no window is in force; the `default` block applies.
- `holiday`: a window would be in force but its day is a holiday (the default applies if set).
- `outside_windows`: no window in force and no default: no opinion.
- `human_pause`: the only effect was `running` and a person paused the endpoint: no opinion.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, ClassVar, Literal, Self
from zoneinfo import ZoneInfo

from cronsim import CronSim, CronSimError
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from policies.base import EndpointView, Proposal, ProposalKind, State, may_resume

__all__ = ["ScheduleEffect", "ScheduleParams", "SchedulePolicy", "ScheduleWindow"]

Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
_DAYS: tuple[Weekday, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_HHMM = re.compile(r"^([01]\d|2[0-4]):([0-5]\d)$")
_FIELDS = ("floor", "ceiling", "scale_to_zero_timeout_min", "state")
# A DST shift is at most 2 h anywhere; cron searches start this far out so a repeated hour is seen.
_DST_MARGIN_S = 7200
_MAX_FIRES = 20_000  # bound on cron fires scanned per tick (holidays of a per-minute window)


def _parse_hhmm(value: str) -> tuple[int, int]:
    m = _HHMM.match(value)
    if m is None or (m.group(1) == "24" and m.group(2) != "00"):
        raise ValueError(f"expected HH:MM between 00:00 and 24:00, got {value!r}")
    return int(m.group(1)), int(m.group(2))


class ScheduleEffect(BaseModel):
    """What a window (or the default block) imposes; unset fields have no opinion."""

    model_config = ConfigDict(extra="forbid")

    floor: int | None = Field(None, ge=0, le=1000, description="Minimum replicas.")
    ceiling: int | None = Field(None, ge=0, le=1000, description="Maximum replicas.")
    scale_to_zero_timeout_min: int | None = Field(
        None, ge=1, le=10_080, description="Platform scale-to-zero idle timeout, minutes."
    )
    state: State | None = Field(None, description="`paused` or `running`.")

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.floor is not None and self.ceiling is not None and self.floor > self.ceiling:
            raise ValueError(f"floor ({self.floor}) must not exceed ceiling ({self.ceiling})")
        if self.state == "paused" and self.floor:
            raise ValueError(f"state paused contradicts floor {self.floor}")
        return self

    def effects(self) -> dict[str, Any]:
        return {f: v for f in _FIELDS if (v := getattr(self, f)) is not None}


class ScheduleWindow(ScheduleEffect):
    """One recurring window: cron + duration, or weekdays + local start/end."""

    name: str | None = Field(None, description="Label used in messages.")
    cron: str | None = Field(None, description="Start times, 5-field cron, in `timezone`.")
    duration_s: float | None = Field(
        None, gt=0, le=7 * 86_400, description="Length of a cron window, seconds."
    )
    days: list[Weekday] | None = Field(None, description="Weekdays a weekly window starts on.")
    start: str | None = Field(None, description='Local start time, "HH:MM".')
    end: str | None = Field(None, description='Local end time, "HH:MM" ("24:00" = midnight).')

    @field_validator("cron")
    @classmethod
    def _cron(cls, v: str | None) -> str | None:
        if v is None:
            return v
        if len(v.split()) != 5:
            raise ValueError(f"cron needs 5 fields (minute hour day month weekday), got {v!r}")
        try:
            CronSim(v, datetime(2026, 1, 1, tzinfo=UTC))
        except CronSimError as exc:
            raise ValueError(f"invalid cron expression {v!r}: {exc}") from None
        return v

    @field_validator("start", "end")
    @classmethod
    def _hhmm(cls, v: str | None) -> str | None:
        if v is not None:
            _parse_hhmm(v)
        return v

    @model_validator(mode="after")
    def _form(self) -> Self:
        weekly = (self.days, self.start, self.end)
        if self.cron is not None:
            if self.duration_s is None:
                raise ValueError("a cron window needs duration_s")
            if any(x is not None for x in weekly):
                raise ValueError("a window is either cron + duration_s or days/start/end, not both")
        else:
            if self.duration_s is not None:
                raise ValueError("duration_s belongs to a cron window")
            if self.start is None or self.end is None:
                raise ValueError("a window needs cron + duration_s, or start and end")
            if self.start == self.end:
                raise ValueError(f"start and end are equal ({self.start})")
            if self.start == "24:00":
                raise ValueError("start must be before 24:00")
            if self.days is not None and not self.days:
                raise ValueError("days must not be empty (omit it for every day)")
        if not self.effects():
            raise ValueError("a window must set floor, ceiling, scale_to_zero_timeout_min or state")
        return self


class ScheduleParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    timezone: str = Field("UTC", description="IANA time zone the windows are read in.")
    windows: list[ScheduleWindow] = Field(
        default_factory=list, description="Windows; for each field, the first one in force wins."
    )
    default: ScheduleEffect | None = Field(None, description="Applies when no window is in force.")
    holidays: list[date] = Field(
        default_factory=list, description="Local dates (YYYY-MM-DD) on which no window starts."
    )
    prewarm_s: float = Field(
        300.0,
        ge=0,
        le=86_400,
        description="Lead time before a window starts when its floor and running apply, seconds.",
    )

    @field_validator("timezone")
    @classmethod
    def _tz(cls, v: str) -> str:
        try:
            ZoneInfo(v)
        except Exception:  # ZoneInfoNotFoundError, ValueError for malformed keys
            raise ValueError(f"unknown IANA time zone {v!r}") from None
        return v

    @model_validator(mode="after")
    def _something(self) -> Self:
        if not self.windows and self.default is None:
            raise ValueError("a schedule needs at least one window or a default")
        return self


@dataclass(frozen=True, slots=True)
class _Occurrence:
    index: int
    start: float
    end: float
    holiday: bool


def _wall(ts: float, tz: ZoneInfo) -> datetime:
    return datetime.fromtimestamp(ts, tz).replace(tzinfo=None)


def _resolve(day: date, hhmm: tuple[int, int], tz: ZoneInfo) -> float:
    """Epoch of local `day` at `hhmm`: the first instant the wall clock reads it (or passes it)."""
    hour, minute = hhmm
    if hour == 24:
        day, hour = day + timedelta(days=1), 0
    naive = datetime.combine(day, time(hour, minute))
    first = naive.replace(tzinfo=tz, fold=0)
    if _wall(first.timestamp(), tz) == naive:
        return first.timestamp()
    # In a spring-forward gap: find the transition, the first instant whose wall time is past it.
    a, b = first.timestamp(), naive.replace(tzinfo=tz, fold=1).timestamp()
    lo, hi = math.floor(min(a, b)), math.ceil(max(a, b))
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if _wall(mid, tz) >= naive:
            hi = mid
        else:
            lo = mid
    return float(hi)


class SchedulePolicy:
    name: ClassVar[str] = "schedule"
    Params: ClassVar[type[BaseModel]] = ScheduleParams

    def __init__(self, params: BaseModel) -> None:
        assert isinstance(params, ScheduleParams)
        self.params = params
        self._tz = ZoneInfo(params.timezone)
        self._holidays = frozenset(params.holidays)

    # -- occurrences --------------------------------------------------------------------------

    def _weekly(self, i: int, win: ScheduleWindow, now: float) -> Iterator[_Occurrence]:
        assert win.start is not None
        assert win.end is not None
        start, end = _parse_hhmm(win.start), _parse_hhmm(win.end)
        overnight = end <= start
        days = set(win.days or _DAYS)
        first = _wall(now, self._tz).date() - timedelta(days=1)
        last = _wall(now + self.params.prewarm_s, self._tz).date()
        day = first
        while day <= last:
            if _DAYS[day.weekday()] in days:
                s = _resolve(day, start, self._tz)
                e = _resolve(day + timedelta(days=1) if overnight else day, end, self._tz)
                if s < e:
                    yield _Occurrence(i, s, e, day in self._holidays)
            day += timedelta(days=1)

    def _cron(self, i: int, win: ScheduleWindow, now: float) -> Iterator[_Occurrence]:
        assert win.cron is not None
        assert win.duration_s is not None
        dur, tz = win.duration_s, self._tz
        # Latest fires at or before now, newest first, until one that is not a holiday.
        later = datetime.fromtimestamp(math.floor(now) + 1 + _DST_MARGIN_S, tz)
        back = CronSim(win.cron, later, reverse=True)
        for _, fire in zip(range(_MAX_FIRES), back, strict=False):
            at = fire.timestamp()
            if at > now:
                continue
            if at + dur <= now:
                break
            holiday = fire.date() in self._holidays
            yield _Occurrence(i, at, at + dur, holiday)
            if not holiday:
                break
        # Next fires within the pre-warm lead, until one that is not a holiday.
        ahead = CronSim(win.cron, datetime.fromtimestamp(math.floor(now) - _DST_MARGIN_S, tz))
        for _, fire in zip(range(_MAX_FIRES), ahead, strict=False):
            at = fire.timestamp()
            if at <= now:
                continue
            if at > now + self.params.prewarm_s:
                break
            holiday = fire.date() in self._holidays
            yield _Occurrence(i, at, at + dur, holiday)
            if not holiday:
                break

    def occurrences(self, now: float) -> list[_Occurrence]:
        """Occurrences in force at `now` or starting within the pre-warm lead (holidays marked)."""
        out: list[_Occurrence] = []
        horizon = now + self.params.prewarm_s
        for i, win in enumerate(self.params.windows):
            gen = self._cron(i, win, now) if win.cron is not None else self._weekly(i, win, now)
            out.extend(o for o in gen if o.start <= horizon and o.end > now)
        return out

    # -- proposal -----------------------------------------------------------------------------

    def _label(self, i: int) -> str:
        return self.params.windows[i].name or f"windows[{i}]"

    def propose(self, view: EndpointView, now: float) -> Proposal:
        p = self.params
        occ = self.occurrences(now)
        active = sorted({o.index for o in occ if o.start <= now and not o.holiday})
        held = sorted({o.index for o in occ if o.start <= now and o.holiday} - set(active))
        warming = sorted({o.index for o in occ if o.start > now and not o.holiday} - set(active))

        fx: dict[str, Any] = {}
        notes: list[str] = []
        if active:
            for i in active:
                for k, v in p.windows[i].effects().items():
                    fx.setdefault(k, v)
            reason = "window"
            notes.append("in window " + ", ".join(self._label(i) for i in active))
        elif p.default is not None:
            fx = p.default.effects()
            reason = "holiday" if held else "default"
            notes.append("holiday: default applies" if held else "outside windows: default")
        else:
            reason = "holiday" if held else "outside_windows"
            notes.append("holiday" if held else "outside all windows")
        if held and active:
            notes.append("holiday for " + ", ".join(self._label(i) for i in held))

        for i in warming:
            win = p.windows[i]
            changed = False
            if win.floor is not None and win.floor > fx.get("floor", 0):
                fx["floor"] = win.floor
                if fx.get("ceiling") is not None and fx["ceiling"] < win.floor:
                    fx["ceiling"] = win.floor
                changed = True
            if win.state == "running" and fx.get("state") != "running":
                fx["state"] = "running"
                changed = True
            if changed:
                reason = "prewarm"
                notes.append(f"pre-warming {self._label(i)} ({p.prewarm_s:g}s lead)")

        if fx.get("state") == "running" and not may_resume(view):
            del fx["state"]
            notes.append("not resuming: a person paused this endpoint")
            if not fx:
                reason = "human_pause"

        effects = ", ".join(f"{k}={v}" for k, v in fx.items())
        message = "; ".join(notes) + (f" -> {effects}" if effects else "")
        return Proposal(
            policy=self.name,
            kind=ProposalKind.CONSTRAINT if fx else ProposalKind.NO_OPINION,
            reason=reason,
            message=message,
            floor=fx.get("floor"),
            ceiling=fx.get("ceiling"),
            scale_to_zero_timeout_min=fx.get("scale_to_zero_timeout_min"),
            state=fx.get("state"),
        )
