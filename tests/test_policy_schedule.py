"""schedule: weekly and cron windows, holidays, defaults, pre-warm and DST, at fixed instants."""

from __future__ import annotations

from calendar import timegm
from datetime import date
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from policies.schedule import ScheduleParams, SchedulePolicy
from tests.policy_support import feed, rich_window, view


def utc(y: int, mo: int, d: int, h: int = 0, mi: int = 0, s: int = 0) -> float:
    """A fixed instant (never the real date)."""
    return float(timegm((y, mo, d, h, mi, s, 0, 0, 0)))


def sched(**params: Any) -> SchedulePolicy:
    return SchedulePolicy(ScheduleParams.model_validate(params))


def effect(p) -> dict[str, Any]:
    fields = ("floor", "ceiling", "scale_to_zero_timeout_min", "state")
    return {f: getattr(p, f) for f in fields if getattr(p, f) is not None}


OFFICE = {"name": "office", "days": ["mon", "tue", "wed", "thu", "fri"], "start": "08:00"}
OFFICE |= {"end": "18:00", "floor": 2, "ceiling": 8}
NIGHT = {"name": "night", "start": "20:00", "end": "08:00", "state": "paused"}
DAY = {"name": "day", "start": "08:00", "end": "20:00", "state": "running", "floor": 1}
WED = (2026, 1, 7)  # a Wednesday
SAT = (2026, 1, 10)


@pytest.mark.parametrize(
    ("params", "now", "reason", "expected"),
    [
        pytest.param({"windows": [OFFICE]}, utc(*WED, 10), "window", {"floor": 2, "ceiling": 8}),
        pytest.param({"windows": [OFFICE]}, utc(*SAT, 10), "outside_windows", {}, id="weekend"),
        pytest.param(
            {"windows": [OFFICE], "default": {"ceiling": 1, "scale_to_zero_timeout_min": 15}},
            utc(*SAT, 10),
            "default",
            {"ceiling": 1, "scale_to_zero_timeout_min": 15},
            id="default-block",
        ),
        pytest.param(
            {"windows": [OFFICE], "default": {"ceiling": 1}},
            utc(*WED, 7, 56),
            "prewarm",
            {"floor": 2, "ceiling": 2},
            id="prewarm-raises-floor-and-lifts-ceiling",
        ),
        pytest.param(
            {"windows": [OFFICE], "default": {"ceiling": 1}, "prewarm_s": 0},
            utc(*WED, 7, 56),
            "default",
            {"ceiling": 1},
            id="no-prewarm",
        ),
        pytest.param(
            {"windows": [OFFICE], "default": {"ceiling": 1}},
            utc(*WED, 7, 54, 59),
            "default",
            {"ceiling": 1},
            id="before-prewarm-lead",
        ),
        pytest.param(
            {"windows": [OFFICE], "default": {"ceiling": 1}, "holidays": ["2026-01-07"]},
            utc(*WED, 10),
            "holiday",
            {"ceiling": 1},
            id="holiday-default",
        ),
        pytest.param(
            {"windows": [OFFICE], "holidays": ["2026-01-07"]},
            utc(*WED, 10),
            "holiday",
            {},
            id="holiday-no-opinion",
        ),
        pytest.param(
            {"windows": [OFFICE], "holidays": ["2026-01-07"]},
            utc(2026, 1, 6, 17, 59),
            "window",
            {"floor": 2, "ceiling": 8},
            id="day-before-holiday",
        ),
        pytest.param(
            {"windows": [{**NIGHT, "days": ["fri"]}]},
            utc(*SAT, 3),
            "window",
            {"state": "paused"},
            id="overnight-belongs-to-start-day",
        ),
        pytest.param(
            {"windows": [{**NIGHT, "days": ["fri"]}]},
            utc(2026, 1, 9, 3),
            "outside_windows",
            {},
            id="overnight-not-from-thursday",
        ),
        pytest.param(
            {"windows": [NIGHT, DAY]},
            utc(*WED, 7, 58),
            "prewarm",
            {"state": "running", "floor": 1},
            id="prewarm-resumes-paused",
        ),
        pytest.param(
            {"windows": [NIGHT, DAY]}, utc(*WED, 23), "window", {"state": "paused"}, id="night"
        ),
        pytest.param(
            {"windows": [{**OFFICE, "floor": 4}, {**DAY, "ceiling": 3, "floor": None}]},
            utc(*WED, 10),
            "window",
            {"floor": 4, "ceiling": 8, "state": "running"},
            id="first-listed-wins-per-field",
        ),
        pytest.param(
            {"windows": [{"cron": "0 9 * * 1-5", "duration_s": 3600, "floor": 3}]},
            utc(*WED, 9, 59, 59),
            "window",
            {"floor": 3},
            id="cron-window",
        ),
        pytest.param(
            {"windows": [{"cron": "0 9 * * 1-5", "duration_s": 3600, "floor": 3}]},
            utc(*WED, 10),
            "outside_windows",
            {},
            id="cron-window-over",
        ),
        pytest.param(
            {"windows": [{"cron": "0 9 * * 1-5", "duration_s": 3600, "floor": 3}]},
            utc(*WED, 8, 57),
            "prewarm",
            {"floor": 3},
            id="cron-prewarm",
        ),
        pytest.param(
            {
                "windows": [{"cron": "0 9 * * *", "duration_s": 3 * 86400, "floor": 3}],
                "holidays": ["2026-01-07"],
            },
            utc(*WED, 10),
            "window",
            {"floor": 3},
            id="cron-holiday-earlier-fire-still-on",
        ),
        pytest.param(
            {"windows": [{"start": "00:00", "end": "24:00", "scale_to_zero_timeout_min": 30}]},
            utc(*SAT, 23, 59, 59),
            "window",
            {"scale_to_zero_timeout_min": 30},
            id="whole-day",
        ),
    ],
)
def test_schedule_table(params, now, reason, expected):
    """Each scenario yields exactly the expected reason and constraint fields."""
    p = sched(**params).propose(view(), now)
    assert (p.reason, effect(p)) == (reason, expected), p.message
    assert p.kind == ("constraint" if expected else "no_opinion")
    assert p.replicas is None


BERLIN_OFFICE = {"timezone": "Europe/Berlin", "prewarm_s": 0, "windows": [OFFICE]}
NY_CRON = {
    "timezone": "America/New_York",
    "prewarm_s": 0,
    "windows": [{"cron": "0 8 * * 1-5", "duration_s": 36000, "floor": 2}],
}


def _win(tz: str, **w: Any) -> dict[str, Any]:
    return {"timezone": tz, "prewarm_s": 0, "windows": [{"floor": 1, **w}]}


GAP_END = _win("Europe/Berlin", days=["sun"], start="01:30", end="02:30")
GAP_START = _win("Europe/Berlin", days=["sun"], start="02:30", end="04:00")
FOLD = _win("Europe/Berlin", days=["sun"], start="02:00", end="02:30")
OVERNIGHT = _win("Europe/Berlin", start="22:00", end="06:00")
NY_GAP_CRON = _win("America/New_York", cron="30 2 * * *", duration_s=3600)
NY_FOLD_CRON = _win("America/New_York", cron="30 1 * * *", duration_s=1800)
NY_FOLD = _win("America/New_York", days=["sun"], start="01:00", end="01:45")


@pytest.mark.parametrize(
    ("params", "now", "on"),
    [
        # Berlin: CET -> CEST on Sun 2026-03-29 01:00Z; CEST -> CET on Sun 2026-10-25 01:00Z.
        pytest.param(BERLIN_OFFICE, utc(2026, 3, 27, 6, 30), False, id="ber-fri-0730-cet"),
        pytest.param(BERLIN_OFFICE, utc(2026, 3, 27, 7), True, id="ber-fri-0800-cet"),
        pytest.param(BERLIN_OFFICE, utc(2026, 3, 30, 5, 59), False, id="ber-mon-0759-cest"),
        pytest.param(BERLIN_OFFICE, utc(2026, 3, 30, 6), True, id="ber-mon-0800-cest"),
        pytest.param(BERLIN_OFFICE, utc(2026, 3, 30, 15, 59), True, id="ber-mon-1759-cest"),
        pytest.param(BERLIN_OFFICE, utc(2026, 3, 30, 16), False, id="ber-mon-1800-cest"),
        pytest.param(BERLIN_OFFICE, utc(2026, 10, 23, 6), True, id="ber-fri-0800-cest"),
        pytest.param(BERLIN_OFFICE, utc(2026, 10, 26, 6, 30), False, id="ber-mon-0730-cet"),
        pytest.param(BERLIN_OFFICE, utc(2026, 10, 26, 7), True, id="ber-mon-0800-cet"),
        pytest.param(GAP_END, utc(2026, 3, 29, 0, 29), False, id="ber-gap-end-before"),
        pytest.param(GAP_END, utc(2026, 3, 29, 0, 59, 59), True, id="ber-gap-end-0259cet"),
        pytest.param(GAP_END, utc(2026, 3, 29, 1), False, id="ber-gap-end-at-0300cest"),
        pytest.param(GAP_START, utc(2026, 3, 29, 0, 59, 59), False, id="ber-gap-start-before"),
        pytest.param(GAP_START, utc(2026, 3, 29, 1), True, id="ber-gap-start-at-0300cest"),
        pytest.param(GAP_START, utc(2026, 3, 29, 2), False, id="ber-gap-start-0400cest-end"),
        pytest.param(FOLD, utc(2026, 10, 25, 0, 15), True, id="ber-fold-first-pass"),
        pytest.param(FOLD, utc(2026, 10, 25, 0, 30), False, id="ber-fold-first-pass-end"),
        pytest.param(FOLD, utc(2026, 10, 25, 1, 15), False, id="ber-fold-second-pass-off"),
        pytest.param(OVERNIGHT, utc(2026, 10, 24, 19, 59), False, id="ber-night-before"),
        pytest.param(OVERNIGHT, utc(2026, 10, 24, 20), True, id="ber-night-2200-cest"),
        pytest.param(OVERNIGHT, utc(2026, 10, 25, 4, 59), True, id="ber-night-0559-cet"),
        pytest.param(OVERNIGHT, utc(2026, 10, 25, 5), False, id="ber-night-0600-cet"),
        # New York: EST -> EDT on Sun 2026-03-08 07:00Z; EDT -> EST on Sun 2026-11-01 06:00Z.
        pytest.param(NY_CRON, utc(2026, 3, 6, 12, 30), False, id="ny-fri-0730-est"),
        pytest.param(NY_CRON, utc(2026, 3, 6, 13), True, id="ny-fri-0800-est"),
        pytest.param(NY_CRON, utc(2026, 3, 9, 11, 59), False, id="ny-mon-0759-edt"),
        pytest.param(NY_CRON, utc(2026, 3, 9, 12), True, id="ny-mon-0800-edt"),
        pytest.param(NY_CRON, utc(2026, 3, 9, 21, 59), True, id="ny-mon-1759-edt"),
        pytest.param(NY_CRON, utc(2026, 3, 9, 22), False, id="ny-mon-1800-edt"),
        pytest.param(NY_CRON, utc(2026, 11, 2, 12, 30), False, id="ny-mon-0730-est"),
        pytest.param(NY_CRON, utc(2026, 11, 2, 13), True, id="ny-mon-0800-est"),
        pytest.param(NY_GAP_CRON, utc(2026, 3, 8, 6, 59), False, id="ny-gap-cron-before"),
        pytest.param(NY_GAP_CRON, utc(2026, 3, 8, 7), True, id="ny-gap-cron-at-0300edt"),
        pytest.param(NY_GAP_CRON, utc(2026, 3, 8, 8), False, id="ny-gap-cron-1h-later"),
        pytest.param(NY_FOLD_CRON, utc(2026, 11, 1, 5, 45), True, id="ny-fold-cron-first"),
        pytest.param(NY_FOLD_CRON, utc(2026, 11, 1, 6, 45), False, id="ny-fold-cron-once"),
        pytest.param(NY_FOLD, utc(2026, 11, 1, 5, 10), True, id="ny-fold-weekly-first"),
        pytest.param(NY_FOLD, utc(2026, 11, 1, 6, 10), False, id="ny-fold-weekly-second-off"),
    ],
)
def test_dst_transitions(params, now, on):
    """Windows open and close at the right instants across spring-forward and fall-back."""
    p = sched(**params).propose(view(), now)
    assert (p.reason == "window") is on, p.message


def test_prewarm_across_dst_uses_real_lead_time():
    """The pre-warm lead is real seconds before the local start, also on the first EDT Monday."""
    pol = sched(**{**NY_CRON, "prewarm_s": 600})
    assert pol.propose(view(), utc(2026, 3, 9, 11, 49, 59)).reason == "outside_windows"
    assert pol.propose(view(), utc(2026, 3, 9, 11, 50)).reason == "prewarm"


@pytest.mark.parametrize(
    ("paused_by", "state"),
    [
        pytest.param(None, None, id="human-pause-not-resumed"),
        pytest.param("pause_to_free_quota:idle_reclaim", "running", id="own-pause-resumed"),
    ],
)
def test_running_window_respects_human_pause(paused_by, state):
    """A window with `state: running` resumes only an endpoint Governor paused."""
    pol = sched(windows=[DAY])
    p = pol.propose(view(state="paused", current=0, paused_by_governor=paused_by), utc(*WED, 10))
    assert p.state == state
    assert p.floor == 1


def test_running_only_window_on_human_pause_has_no_opinion():
    """When `running` was the window's only effect, a person's pause leaves no opinion."""
    pol = sched(windows=[{"start": "08:00", "end": "20:00", "state": "running"}])
    p = pol.propose(view(state="paused", current=0), utc(*WED, 10))
    assert (p.kind, p.reason, p.state) == ("no_opinion", "human_pause", None)


@pytest.mark.parametrize(
    ("params", "match"),
    [
        pytest.param({"windows": [{"start": "08:00", "end": "18:00"}]}, "must set", id="no-effect"),
        pytest.param({"windows": [{"cron": "0 8 * * *", "floor": 1}]}, "duration_s", id="no-dur"),
        pytest.param({"windows": [{"cron": "0 8 * *", "duration_s": 1, "floor": 1}]}, "5 fields"),
        pytest.param({"windows": [{"cron": "0 25 * * *", "duration_s": 1, "floor": 1}]}, "cron"),
        pytest.param(
            {"windows": [{"cron": "0 8 * * *", "duration_s": 9, "start": "08:00", "floor": 1}]},
            "not both",
            id="both-forms",
        ),
        pytest.param({"windows": [{"start": "8:00", "end": "18:00", "floor": 1}]}, "HH:MM"),
        pytest.param({"windows": [{"start": "08:00", "end": "24:30", "floor": 1}]}, "HH:MM"),
        pytest.param({"windows": [{"start": "08:00", "end": "08:00", "floor": 1}]}, "equal"),
        pytest.param({"windows": [{**OFFICE, "days": ["monday"]}]}, "days", id="bad-day"),
        pytest.param({"windows": [{**OFFICE, "floor": 9}]}, "must not exceed", id="floor>ceil"),
        pytest.param({"windows": [{**NIGHT, "floor": 1}]}, "contradicts", id="paused-floor"),
        pytest.param({"windows": [OFFICE], "timezone": "Mars/Olympus"}, "time zone"),
        pytest.param({"windows": [OFFICE], "holidays": ["2026-13-01"]}, "holidays"),
        pytest.param({}, "at least one window", id="empty"),
        pytest.param({"windows": [OFFICE], "prewarm": 5}, "prewarm", id="unknown-key"),
    ],
)
def test_bad_params_are_rejected(params, match):
    """Invalid schedules fail at load time with a message naming the problem."""
    with pytest.raises(ValidationError, match=match):
        ScheduleParams.model_validate(params)


WINDOWS = st.sampled_from(
    [
        OFFICE,
        NIGHT,
        DAY,
        {"cron": "*/20 6-22 * * 1-5", "duration_s": 900, "ceiling": 3},
        {"cron": "30 2 * * 0", "duration_s": 7200, "state": "running", "floor": 2},
        {"days": ["sun"], "start": "01:30", "end": "03:15", "scale_to_zero_timeout_min": 5},
    ]
)


@settings(max_examples=150, deadline=None)
@given(
    tz=st.sampled_from(["UTC", "Europe/Berlin", "America/New_York", "Asia/Kolkata"]),
    windows=st.lists(WINDOWS, min_size=1, max_size=3),
    prewarm=st.sampled_from([0, 300, 3600]),
    holidays=st.lists(st.dates(date(2026, 1, 1), date(2026, 12, 31)), max_size=3),
    now=st.floats(utc(2026, 1, 1), utc(2027, 1, 1)),
    pending=st.floats(0, 100),
)
def test_schedule_is_a_function_of_time_and_params(tz, windows, prewarm, holidays, now, pending):
    """Two fresh instances agree at the same instant, whatever the metrics say."""
    params = {"timezone": tz, "windows": windows, "prewarm_s": prewarm, "holidays": holidays}
    a = sched(**params).propose(view(), now)
    busy = view(window=rich_window([feed(now - 5, pending=pending)]), current=5)
    b = sched(**params).propose(busy, now)
    assert a == b
    if a.floor is not None and a.ceiling is not None:
        assert a.floor <= a.ceiling
