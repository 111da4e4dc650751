"""The emulator's quiet-second batches (`Platform._advance_alone`) against its per-second loop.

A platform of one endpoint passes a run of seconds in which nothing arrives, completes, becomes
ready or times out in one go (`_quiet_seconds`, `_pass_quiet`); with `batch_quiet` off every
second is one step. On random traces, service times, replica bounds, scale-to-zero timeouts,
holds, pauses and resumes and random advance chunks (whole, fractional, long), both must leave
exactly the same world after every advance: every request's record, counter, latency entry,
sample, replica (utilisation to the last bit), state and bill, the listing and the feed text.
"""

from __future__ import annotations

import math
from typing import Any

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from controller.backtest.simulate import BOT, NAME, NS, T0, _body
from controller.emulator.load import Trace
from controller.emulator.platform import EmulatorError, Platform, PlatformConfig, SimParams

INSTANCE = "aws/nvidia-l4/x1"


def _world(
    gaps: list[float],
    svc: list[float],
    *,
    min_r: int,
    max_r: int,
    stz: int | None,
    hold_s: float,
    batch: bool,
    down_s: int = 120,
) -> Platform:
    p = Platform(
        start=T0,
        seed=3,
        config=PlatformConfig(
            cold_start_s=40.0,
            concurrency=2,
            default_max_accelerators=1000,
            scale_down_interval_s=down_s,
        ),
    )
    p.batch_quiet = batch
    arrivals = [sum(gaps[: i + 1]) for i in range(len(gaps))]
    p.create(
        NS,
        _body(INSTANCE, min_r, max(min_r, max_r, 1), None, stz),
        by=BOT,
        sim=SimParams(cold_start_s=40.0, concurrency=2, hold_s=hold_s),
        load=Trace(tuple(arrivals), tuple(svc[: len(arrivals)])),
        ready=min_r == 0,
    )
    p.record_requests(NS, NAME)
    return p


def _act(p: Platform, kind: str, n: int) -> str:
    try:
        if kind == "bounds":
            lo = n % 3
            body = {"compute": {"scaling": {"minReplica": lo, "maxReplica": max(lo, n, 1)}}}
            p.update(NS, NAME, body, by=BOT)
        elif kind == "pause":
            p.pause(NS, NAME, by=BOT)
        elif kind == "resume":
            p.resume(NS, NAME, by=BOT)
        else:
            p.scale_to_zero(NS, NAME, by=BOT)
    except EmulatorError as exc:
        return f"{exc.status}"
    return "ok"


def _fingerprint(p: Platform) -> Any:
    ep = p._eps[(NS, NAME)]
    log = ep.log
    assert log is not None
    return (
        p.now,
        ep.state,
        ep.served,
        ep.rejected,
        ep.held,
        ep.trace_idx,
        ep.lat_count,
        ep.lat_sum,
        sorted(ep.counters.items()),
        list(ep.lat_window),
        list(ep.samples),
        [(r.id, r.util, r.busy, r.ready_at, r.retiring) for r in ep.replicas],
        [(a, b) for a, b, _ in ep.queue],
        [(f, lat) for f, _, _, lat, _ in ep.inflight],
        ep.last_request_at,
        ep.running_since,
        ep.first_ready_at,
        ep.last_scale_at,
        ep.closed_seconds,
        sorted(ep.closed_minutes.items()),
        list(log.arrival),
        [("nan" if math.isnan(w) else w) for w in log.wait],
        p.list(NS),
        p.render_metrics(NS, NAME),
    )


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    gaps=st.lists(st.one_of(st.floats(0.0, 4.0), st.floats(4.0, 400.0)), min_size=1, max_size=60),
    svc=st.lists(st.floats(0.05, 30.0), min_size=60, max_size=60),
    min_r=st.integers(0, 2),
    max_r=st.integers(1, 4),
    stz=st.sampled_from([None, 1, 3]),
    hold_s=st.sampled_from([0.0, 20.0]),
    moves=st.lists(
        st.tuples(
            st.sampled_from([15.0, 15.0, 60.0, 7.25, 0.5, 333.3, 900.0]),
            st.sampled_from(["none", "none", "bounds", "pause", "resume", "zero"]),
            st.integers(0, 4),
        ),
        min_size=1,
        max_size=40,
    ),
)
def test_quiet_batches_leave_the_same_world(gaps, svc, min_r, max_r, stz, hold_s, moves) -> None:
    kw: dict[str, Any] = {"min_r": min_r, "max_r": max_r, "stz": stz, "hold_s": hold_s}
    fast, slow = _world(gaps, svc, batch=True, **kw), _world(gaps, svc, batch=False, **kw)
    t = T0
    for dt, kind, n in moves:
        t += dt
        fast.advance_to(t)
        slow.advance_to(t)
        assert _fingerprint(fast) == _fingerprint(slow)
        if kind != "none":
            assert _act(fast, kind, n) == _act(slow, kind, n)
            assert _fingerprint(fast) == _fingerprint(slow)


def test_quiet_batches_are_taken() -> None:
    """The batches run (the comparison above is not of the per-second loop with itself): a
    sparse trace over an hour takes far fewer `_step` calls batched than per second."""
    calls = {True: 0, False: 0}
    for batch in (True, False):
        p = _world(
            [5.0, 700.0, 1.0, 1500.0],
            [2.0] * 4,
            min_r=1,
            max_r=2,
            stz=None,
            hold_s=0.0,
            batch=batch,
        )
        step = p._step

        def counted(ep: Any, a: float, b: float, *, _b: bool = batch, _s: Any = step) -> None:
            calls[_b] += 1
            _s(ep, a, b)

        p._step = counted  # type: ignore[method-assign]
        p.advance_to(T0 + 3600)
    assert calls[False] == 3600
    assert calls[True] < 3600 / 4, calls


def test_autoscaler_acts_inside_a_quiet_run() -> None:
    """The platform's own autoscaler scales up on a burst and back down in the quiet after it,
    on one of its interval seconds that falls in a quiet run: same moment, same replicas (a
    scale-down interval that is no multiple of the scale-up one, so each has its own seconds)."""
    gaps = [60.0] + [0.3] * 40 + [3000.0]
    worlds = [
        _world(gaps, [20.0] * 60, min_r=1, max_r=4, stz=None, hold_s=0.0, batch=b, down_s=97)
        for b in (True, False)
    ]
    peaks = []
    for p in worlds:
        p.advance_to(T0 + 150)
        peaks.append(p.replica_counts(NS, NAME)[0])
        p.advance_to(T0 + 2000)
    assert _fingerprint(worlds[0]) == _fingerprint(worlds[1])
    assert peaks[0] > 1, peaks
    assert worlds[0].replica_counts(NS, NAME)[0] == 1


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    gaps=st.lists(st.floats(0.0, 200.0), min_size=1, max_size=30),
    min_r=st.integers(0, 2),
    moves=st.lists(
        st.tuples(
            st.sampled_from([0.0, 1.0, 15.0, 60.0, 400.0]),
            st.sampled_from(["none", "bounds", "pause", "resume", "zero"]),
            st.integers(0, 4),
        ),
        min_size=1,
        max_size=30,
    ),
)
@example(  # a second replica becoming ready, nothing else changing
    gaps=[5.0] * 20, min_r=1, moves=[(300.0, "bounds", 2), (15.0, "none", 0), (60.0, "none", 0)]
)
def test_an_equal_listing_version_is_an_equal_listing(gaps, min_r, moves) -> None:
    """`listing_version` (what the fast replay's client compares instead of the listing): the
    version stays equal only while the listing does, through writes, ticks and cold starts."""
    p = _world(gaps, [2.0] * 30, min_r=min_r, max_r=3, stz=1, hold_s=0.0, batch=True)
    seen = [(p.listing_version(NS), p.list(NS))]
    t = T0
    for dt, kind, n in moves:
        t += dt
        p.advance_to(t)
        if kind != "none":
            _act(p, kind, n)
        version, listing = p.listing_version(NS), p.list(NS)
        for v, items in seen:
            if v == version:
                assert items == listing
        seen.append((version, listing))
