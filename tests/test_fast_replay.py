"""The fast replay (`SimConfig.mode="fast"`) against the full one (HTTP through the emulator's app).

Two levels: the default feed read without text (`direct.feed_sample`) is the sample the parser
gets from the rendered text, on random platform states; and whole Governor replays make the same
decisions (every tick's decision signature and actuation result), the same replica timeline, the
same cost and the same attainment, exactly, on a slice of every load of the suite and on random
small traces, for several policy sets. Nothing in them is specific to one policy: any change to a
policy or the loop runs in both modes.
"""

from __future__ import annotations

import asyncio
import math
from typing import Any

import pytest
import structlog
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from controller.backtest.direct import feed_sample
from controller.backtest.loads import LOADS
from controller.backtest.simulate import (
    NAME,
    NS,
    T0,
    PolicySpec,
    SimConfig,
    _bounds,
    _governor_once,
    _Progress,
    _score,
    load_sim_config,
    prepare,
)
from controller.backtest.traces import RequestTrace
from controller.emulator.load import Trace
from controller.emulator.platform import Platform, PlatformConfig, SimParams
from controller.errors import ConfigError
from controller.logs import configure_logging
from controller.platform.scrape import parse_feed


@pytest.fixture(autouse=True)
def _quiet_logging():
    """The replays log every decision at debug; rendering 2 x 200 ticks of it per test costs
    more than the replays. Errors still show; the configuration is put back after."""
    saved = structlog.get_config()
    configure_logging(fmt="console", level="error")
    yield
    structlog.configure(**saved)


# -- the feed without text ---------------------------------------------------------------------


def _world(instance: tuple[str, str, str], arrivals: list[float], svc: list[float], seed: int):
    from controller.backtest.simulate import _body

    p = Platform(start=T0, seed=seed, config=PlatformConfig(cold_start_s=30.0, concurrency=2))
    p.create(
        NS,
        _body("/".join(instance), 1, 3, None, None),
        sim=SimParams(cold_start_s=30.0, concurrency=2),
        load=Trace(tuple(arrivals), tuple(svc)),
    )
    return p


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    gaps=st.lists(st.floats(0.0, 20.0), min_size=1, max_size=60),
    svc=st.floats(0.05, 40.0),
    seed=st.integers(0, 5),
    steps=st.lists(st.floats(1.0, 90.0), min_size=1, max_size=8),
    gpu=st.booleans(),
    bounds=st.lists(st.integers(1, 3), min_size=1, max_size=8),
)
def test_feed_sample_is_the_parsed_feed(gaps, svc, seed, steps, gpu, bounds) -> None:
    arrivals = [sum(gaps[: i + 1]) for i in range(len(gaps))]
    instance = ("aws", "nvidia-l4", "x1") if gpu else ("aws", "intel-spr", "x2")
    p = _world(instance, arrivals, [svc] * len(arrivals), seed)
    t = T0
    for i, dt in enumerate(steps):
        t += dt
        p.advance_to(t)
        n = bounds[i % len(bounds)]
        p.update(NS, NAME, {"compute": {"scaling": {"minReplica": n, "maxReplica": n}}})
        p.advance_to(t + 0.5)
        text, _ = p.render_feed(NS, NAME)
        want = parse_feed(text, at=p.now, endpoint=f"{NS}/{NAME}")
        got = feed_sample(p, NS, NAME, at=p.now)
        assert got == want, f"step {i}: {got} != {want}"


def test_feed_sample_leaves_other_shapes_to_the_parser() -> None:
    p = Platform(start=T0, config=PlatformConfig(feed_shape="vllm"))
    from controller.backtest.simulate import _body

    p.create(NS, _body("aws/nvidia-l4/x1", 1, 1, None, None))
    assert feed_sample(p, NS, NAME, at=T0) is None


# -- whole replays -----------------------------------------------------------------------------

SLICE_S = 1200.0  # of each load, after the usual lead-in (seconds, not minutes, of test time)


def _replay(cfg: SimConfig, trace: RequestTrace, spec: PolicySpec) -> dict[str, Any]:
    prep = prepare(cfg, trace)
    b = _bounds(cfg, spec)
    decisions: list[Any] = []
    p, tl, applied = asyncio.run(
        _governor_once(cfg, prep, spec.governor, b, _Progress(None, "", 1), record=decisions)
    )
    r = _score(
        cfg,
        prep,
        p,
        tl,
        policy=spec.name,
        kind="governor",
        detail="",
        api_actions=applied,
        started=0.0,
    )
    return {
        "decisions": decisions,
        "timeline": r.timeline,
        "cost": r.cost_usd,
        "attainment": r.slo_attainment,
        "waits": (r.wait_p50_ms, r.wait_p95_ms, r.wait_p99_ms),
        "rejected": r.rejected_503,
        "actions": r.api_actions,
        "requests": r.requests,
    }


def _both(cfg: SimConfig, trace: RequestTrace, spec: PolicySpec) -> tuple[dict, dict]:
    cfg.mode = "fast"
    fast = _replay(cfg, trace, spec)
    cfg.mode = "full"
    full = _replay(cfg, trace, spec)
    return fast, full


def _same(fast: dict, full: dict) -> None:
    assert len(fast["decisions"]) == len(full["decisions"])
    for a, b in zip(fast["decisions"], full["decisions"], strict=True):
        assert a == b, f"first different tick: fast {a} != full {b}"
    assert fast == full


GOVERNORS = {
    "default": PolicySpec("governor-default", "governor"),
    "hpa": PolicySpec(
        "hpa-utilisation",
        "governor",
        governor={"defaults": {"policies": {"hardware_utilisation": {}}}},
    ),
    "zero": PolicySpec(
        "pending-zero",
        "governor",
        floor=0,
        governor={"defaults": {"policies": {"pending_requests": {"target_per_replica": 4}}}},
    ),
}


@pytest.mark.parametrize("load", [ld.name for ld in LOADS])
def test_fast_replay_decides_as_the_full_one_on_the_suite(load: str) -> None:
    ld = next(x for x in LOADS if x.name == load)
    whole = ld.trace()
    # From the load's first request: the cold start, the first scale-ups and idle spells.
    trace = whole.window(whole.offsets[0], SLICE_S)
    cfg = load_sim_config(None)
    fast, full = _both(cfg, trace, GOVERNORS["default"])
    _same(fast, full)
    assert len(fast["decisions"]) >= cfg.lead_in_s / cfg.tick_interval_s


@pytest.mark.parametrize("which", ["hpa", "zero"])
@pytest.mark.parametrize("load", ["azure-code", "flash-crowd", "sparse"])
def test_fast_replay_other_policies(load: str, which: str) -> None:
    ld = next(x for x in LOADS if x.name == load)
    trace = ld.trace()
    start = max(0.0, trace.offsets[0] - 60.0)
    trace = trace.window(start, SLICE_S)
    cfg = load_sim_config(None, scale_up_timeout_s=60.0 if which == "zero" else None)
    _same(*_both(cfg, trace, GOVERNORS[which]))


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    gaps=st.lists(st.floats(0.0, 40.0), min_size=1, max_size=200),
    tokens=st.lists(st.tuples(st.integers(1, 4000), st.integers(1, 400)), min_size=1),
    which=st.sampled_from(sorted(GOVERNORS)),
    concurrency=st.integers(1, 8),
    tick=st.sampled_from([5.0, 15.0, 30.0]),
)
def test_fast_replay_on_random_traces(gaps, tokens, which, concurrency, tick) -> None:
    offsets = [sum(gaps[: i + 1]) for i in range(len(gaps))]
    ins = tuple(tokens[i % len(tokens)][0] for i in range(len(offsets)))
    outs = tuple(tokens[i % len(tokens)][1] for i in range(len(offsets)))
    trace = RequestTrace("random", tuple(offsets), ins, outs)
    cfg = load_sim_config(None, lead_in_s=120.0, tick_interval_s=tick, cold_start_s=60.0)
    cfg.service.concurrency = concurrency
    _same(*_both(cfg, trace, GOVERNORS[which]))


def test_engine_feed_goes_through_the_real_parser() -> None:
    """A pinned preset or the engine source is read by the real scraper over the in-process
    client, and still decides as the full replay does."""
    ld = next(x for x in LOADS if x.name == "azure-conv")
    trace = ld.trace().window(0.0, 900.0)
    spec = PolicySpec(
        "engine-source",
        "governor",
        governor={"defaults": {"feed_source": "engine", "policies": {"pending_requests": {}}}},
    )
    _same(*_both(load_sim_config(None), trace, spec))


def test_mode_is_validated() -> None:
    with pytest.raises(ConfigError, match="mode must be one of"):
        load_sim_config(None, mode="quick")
    assert load_sim_config(None).mode == "fast"
    assert not math.isnan(load_sim_config(None, mode="full").slo_s)
