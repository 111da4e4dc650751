"""The emulated platform as a pure simulation: states, autoscaler, billing, quota, feed."""

from __future__ import annotations

import itertools
import math

import pytest
from prometheus_client.parser import text_string_to_metric_families

from controller.cost.pricing import load_pricing, lookup_price
from controller.emulator.load import (
    Burst,
    Constant,
    Diurnal,
    Piecewise,
    Ramp,
    pattern_from_json,
    pattern_to_json,
)
from controller.emulator.platform import EmulatorError, Platform, PlatformConfig, SimParams
from controller.emulator.scenario import build_platform, default_scenario
from controller.platform.models import Endpoint, UserRef

T0 = 1_700_000_000.0
NS = "acme"
BOT = UserRef(id="u-1", name="governor-bot")
HUMAN = UserRef(id="u-2", name="alice")


def body(
    name: str = "ep",
    *,
    min_replica: int = 1,
    max_replica: int = 1,
    instance_type: str = "nvidia-l4",
    instance_size: str = "x1",
    accelerator: str = "gpu",
    timeout: int | None = None,
    measure: dict | None = None,
) -> dict:
    scaling: dict = {"minReplica": min_replica, "maxReplica": max_replica}
    if timeout is not None:
        scaling["scaleToZeroTimeout"] = timeout
    if measure is not None:
        scaling["measure"] = measure
    return {
        "name": name,
        "type": "protected",
        "provider": {"vendor": "aws", "region": "us-east-1"},
        "compute": {
            "accelerator": accelerator,
            "instanceType": instance_type,
            "instanceSize": instance_size,
            "scaling": scaling,
        },
        "model": {"repository": "gpt2", "task": "text-generation"},
    }


def state(p: Platform, name: str = "ep") -> str:
    return p.get(NS, name)["status"]["state"]


# -- pricing and load patterns -------------------------------------------------------------------


def test_pricing_loads_from_package():
    rows = load_pricing()
    l4 = lookup_price("aws", "nvidia-l4", "x1")
    assert l4 is not None
    assert l4.usd_per_hour == 0.8
    assert l4.accelerators == 1
    assert l4.accelerator == "gpu"
    assert rows[("aws", "inf2", "x12")].accelerator == "neuron"
    assert rows[("aws", "intel-icl", "x1")].deprecated
    assert lookup_price("aws", "nope", "x1") is None


@pytest.mark.parametrize(
    ("pattern", "t", "expected"),
    [
        (Constant(3.0), 10.0, 3.0),
        (Constant(3.0), -1.0, 0.0),
        (Piecewise(((0, 0.5), (1800, 12), (3600, 0.5))), 900, 6.25),
        (Piecewise(((0, 0.5), (1800, 12), (3600, 0.5))), 1800, 12.0),
        (Piecewise(((0, 0.5), (1800, 12), (3600, 0.5))), 9999, 0.5),
        (Ramp(1.0, 11.0, 100.0), 50.0, 6.0),
        (Ramp(1.0, 11.0, 100.0), 500.0, 11.0),
        (Diurnal(base=2.0, peak=10.0, period_s=100.0), 0.0, 2.0),
        (Diurnal(base=2.0, peak=10.0, period_s=100.0), 50.0, 10.0),
        (Burst(base=1.0, peak=9.0, start_s=10.0, duration_s=5.0, period_s=100.0), 12.0, 9.0),
        (Burst(base=1.0, peak=9.0, start_s=10.0, duration_s=5.0, period_s=100.0), 16.0, 1.0),
        (Burst(base=1.0, peak=9.0, start_s=10.0, duration_s=5.0, period_s=100.0), 111.0, 9.0),
    ],
)
def test_load_pattern_rates(pattern, t, expected):
    assert pattern.rate(t) == pytest.approx(expected)
    assert pattern_from_json(pattern_to_json(pattern)) == pattern


def test_pattern_from_json_names_bad_field():
    with pytest.raises(ValueError, match=r"pattern\.kind"):
        pattern_from_json({"kind": "zigzag"})
    with pytest.raises(ValueError, match="rps"):
        pattern_from_json({"kind": "constant", "rps": "lots"})
    # null only where the field's default is null: a null rate once broke every later step
    with pytest.raises(ValueError, match=r"pattern\.rps"):
        pattern_from_json({"kind": "constant", "rps": None})
    with pytest.raises(ValueError, match=r"pattern\.peak: required"):
        pattern_from_json({"kind": "diurnal", "base": 1})
    assert pattern_from_json(
        {"kind": "burst", "base": 0, "peak": 1, "start_s": 0, "duration_s": 5, "period_s": None}
    ) == Burst(0, 1, 0, 5, None)


@pytest.mark.parametrize(
    "pattern",
    [
        Diurnal(base=0, peak=2, period_s=5e-324),
        Diurnal(base=0, peak=2, phase_s=1.7e308),
        Piecewise(points=((-1.7e308, 0.0), (1.7e308, 20.0))),
    ],
)
def test_extreme_finite_patterns_have_finite_rates(pattern):
    """cos(inf) raised inside the world's step, inf / inf gave NaN: both from finite fields."""
    for t in (0.0, 0.5, 1.0, 3600.5, 1e9):
        r = pattern.rate(t)
        assert math.isfinite(r)
        assert 0 <= r <= 20


# -- states ----------------------------------------------------------------------------------------


def test_create_goes_pending_initializing_running_with_cold_start():
    p = Platform(start=T0, config=PlatformConfig(pending_s=10, cold_start_s=120))
    ep = p.create(NS, body(), by=BOT)
    assert ep["status"]["state"] == "pending"
    assert ep["status"]["url"] is None
    Endpoint.model_validate(ep)
    p.advance_to(T0 + 11)
    st = p.get(NS, "ep")["status"]
    assert (st["state"], st["readyReplica"], st["targetReplica"]) == ("initializing", 0, 1)
    p.advance_to(T0 + 129)
    assert state(p) == "initializing"
    p.advance_to(T0 + 131)
    st = p.get(NS, "ep")["status"]
    assert (st["state"], st["readyReplica"]) == ("running", 1)
    assert st["url"].endswith(f"/inference/{NS}/ep")


def test_pause_resume_scale_to_zero_transitions():
    p = Platform(start=T0)
    p.create(NS, body(), by=BOT, ready=True)
    with pytest.raises(EmulatorError, match="already running") as exc:
        p.resume(NS, "ep", by=BOT)
    assert exc.value.status == 400
    ep = p.scale_to_zero(NS, "ep", by=BOT)
    assert ep["status"]["state"] == "scaledToZero"
    assert ep["status"]["url"] is not None
    ep = p.pause(NS, "ep", by=BOT)
    assert ep["status"]["state"] == "paused"
    assert ep["status"]["url"] is None
    assert p.resume(NS, "ep", by=BOT)["status"]["state"] == "pending"
    p.advance_to(T0 + 200)
    assert state(p) == "running"
    p.delete(NS, "ep")
    with pytest.raises(EmulatorError) as exc:
        p.get(NS, "ep")
    assert exc.value.status == 404


def test_instance_update_goes_through_updating_and_keeps_serving():
    p = Platform(start=T0, config=PlatformConfig(cold_start_s=100))
    p.create(NS, body(), by=BOT, ready=True, load=Constant(1.0))
    ep = p.update(NS, "ep", {"compute": {"instanceType": "nvidia-a10g"}}, by=HUMAN)
    assert ep["status"]["state"] == "updating"
    assert ep["compute"]["instanceType"] == "nvidia-a10g"
    p.advance_to(T0 + 50)
    assert state(p) == "updating"
    assert p.snapshot()["endpoints"][f"{NS}/ep"]["rejected"] == 0  # old replica still serves
    p.advance_to(T0 + 102)
    snap = p.snapshot()["endpoints"][f"{NS}/ep"]
    assert snap["state"] == "running"
    assert len(snap["replicas"]) == 1
    assert snap["instance"] == "aws/nvidia-a10g/x1"


def test_bounds_changes_clamp_immediately():
    p = Platform(start=T0, config=PlatformConfig(cold_start_s=60))
    p.create(NS, body(max_replica=5), by=BOT, ready=True)
    p.update(NS, "ep", {"compute": {"scaling": {"minReplica": 3}}}, by=BOT)
    st = p.get(NS, "ep")["status"]
    assert (st["state"], st["readyReplica"], st["targetReplica"]) == ("running", 1, 3)
    p.advance_to(T0 + 61)
    assert p.get(NS, "ep")["status"]["readyReplica"] == 3
    p.update(NS, "ep", {"compute": {"scaling": {"minReplica": 1, "maxReplica": 2}}}, by=BOT)
    st = p.get(NS, "ep")["status"]
    assert (st["readyReplica"], st["targetReplica"]) == (2, 2)


# -- own autoscaler ------------------------------------------------------------------------------


def test_platform_autoscaler_scales_up_under_load_and_down_after_stabilisation():
    p = Platform(start=T0, seed=3, config=PlatformConfig(cold_start_s=60))
    sim = SimParams(concurrency=4, service_time_s=1.0)
    # 10 rps for 15 minutes, then 0.2 rps
    load = Piecewise(((0, 10.0), (900, 10.0), (901, 0.2)))
    p.create(
        NS,
        body(max_replica=6, measure={"pendingRequests": 1.5}),
        by=BOT,
        ready=True,
        sim=sim,
        load=load,
    )
    p.advance_to(T0 + 900)
    st = p.get(NS, "ep")["status"]
    assert st["targetReplica"] >= 4
    assert st["updatedBy"]["name"] == "governor-bot"  # the platform's own scaling is not an update
    history = []
    for s in range(1, 3001):
        p.advance_to(T0 + 900 + s)
        history.append((s, p.get(NS, "ep")["status"]["targetReplica"]))
    downs = [s for (s, n), (_, prev) in zip(history[1:], history, strict=False) if n < prev]
    steps = [prev - n for (_, n), (_, prev) in zip(history[1:], history, strict=False) if n < prev]
    assert downs
    assert all(step == 1 for step in steps)
    assert all(b - a >= 300 for a, b in itertools.pairwise(downs))  # stabilisation
    assert history[-1][1] == 1


def test_scale_to_zero_after_timeout_and_request_wakes_it():
    p = Platform(start=T0, config=PlatformConfig(cold_start_s=30))
    p.create(NS, body(min_replica=0, max_replica=2, timeout=5), by=BOT, ready=True)
    assert state(p) == "scaledToZero"
    ticket = p.submit_request(NS, "ep", at=T0 + 1)
    assert (ticket.status, ticket.status_code) == ("rejected", 503)
    assert state(p) == "initializing"
    p.advance_to(T0 + 32)
    assert state(p) == "running"
    ticket = p.submit_request(NS, "ep", at=T0 + 40)
    assert ticket.status == "running"
    assert ticket.finish is not None
    p.advance_to(ticket.finish + 0.01)
    assert (ticket.status, ticket.status_code) == ("done", 200)
    p.advance_to(ticket.finish + 5 * 60 - 2)  # idle counts from the last request's completion
    assert state(p) == "running"
    p.advance_to(ticket.finish + 5 * 60 + 1)
    ep = p.get(NS, "ep")
    assert ep["status"]["state"] == "scaledToZero"
    assert ep["status"]["url"]
    assert ep["status"]["updatedBy"]["name"] == "governor-bot"


# -- billing and quota ---------------------------------------------------------------------------


def test_billing_one_hour_at_known_price_is_exact():
    p = Platform(start=T0)
    p.create(NS, body(), by=BOT, ready=True)  # nvidia-l4 x1, $0.80/h
    p.advance_to(T0 + 3600)
    assert p.replica_seconds(NS, "ep") == 3600
    assert p.billed_usd(NS, "ep") == pytest.approx(0.8, abs=1e-12)
    p.pause(NS, "ep", by=BOT)
    p.advance_to(T0 + 7200)
    assert p.billed_usd(NS, "ep") == pytest.approx(0.8, abs=1e-12)  # paused costs nothing


@pytest.mark.parametrize(("seconds", "minutes"), [(1, 1), (60, 1), (61, 2), (119.5, 2), (600, 10)])
def test_billing_rounds_each_replica_up_to_whole_minutes(seconds, minutes):
    p = Platform(start=T0)
    p.create(NS, body(instance_type="nvidia-a10g"), by=BOT, ready=True)  # $1/h
    p.advance_to(T0 + seconds)
    p.pause(NS, "ep", by=BOT)
    assert p.billed_usd(NS, "ep") == pytest.approx(minutes / 60.0)
    assert p.replica_seconds(NS, "ep") == pytest.approx(seconds)


def test_quota_counts_max_when_scaled_to_zero_and_nothing_when_paused():
    p = Platform(start=T0)
    p.set_quota(NS, "aws", "gpu", 4)
    p.create(NS, body("a", min_replica=0, max_replica=3), by=BOT, ready=True)
    assert p.quota_used(NS, "aws", "gpu") == 3
    with pytest.raises(EmulatorError, match="quota") as exc:
        p.create(NS, body("b", min_replica=2, max_replica=2), by=BOT, ready=True)
    assert exc.value.status == 400
    p.create(NS, body("b"), by=BOT, ready=True)
    assert p.quota_used(NS, "aws", "gpu") == 4
    p.pause(NS, "a", by=BOT)
    assert p.quota_used(NS, "aws", "gpu") == 1
    p.update(NS, "b", {"compute": {"scaling": {"minReplica": 4, "maxReplica": 4}}}, by=BOT)
    with pytest.raises(EmulatorError, match="quota"):
        p.resume(NS, "a", by=BOT)
    with pytest.raises(EmulatorError, match="quota"):
        p.update(NS, "b", {"compute": {"scaling": {"minReplica": 5, "maxReplica": 5}}}, by=BOT)
    assert p.quota_used(NS, "aws", "cpu") == 0


# -- validation ------------------------------------------------------------------------------------


def _mutate(path: str, value: object) -> dict:
    b = body()
    *parents, last = path.split(".")
    node = b
    for k in parents:
        node = node[k]
    node[last] = value
    return b


@pytest.mark.parametrize(
    ("payload", "status", "field"),
    [
        (_mutate("compute.scaling.minReplica", -1), 422, "compute.scaling.minReplica"),
        (_mutate("compute.scaling.maxReplica", "3"), 422, "compute.scaling.maxReplica"),
        (_mutate("compute.scaling.minReplica", 4), 400, "minReplica"),
        (_mutate("compute.instanceType", "nvidia-zz"), 400, "compute.instanceType"),
        (_mutate("compute.accelerator", "cpu"), 400, "compute.accelerator"),
        (_mutate("provider.region", "mars-1"), 400, "provider.region"),
        (_mutate("model.task", None), 422, "model.task"),
        (_mutate("name", "Bad_Name"), 400, "name"),
        ({"name": "x"}, 422, "provider"),
    ],
)
def test_create_validation(payload, status, field):
    p = Platform(start=T0)
    with pytest.raises(EmulatorError) as exc:
        p.create(NS, payload, by=BOT)
    assert exc.value.status == status
    assert field in exc.value.message


# -- feed, determinism, speed ----------------------------------------------------------------------


def test_metrics_feed_parses_and_has_the_documented_names():
    p = Platform(start=T0, seed=1)
    p.create(NS, body(max_replica=3), by=BOT, ready=True, load=Constant(3.0))
    p.advance_to(T0 + 120)
    text = p.render_metrics(NS, "ep")
    assert "# EOF" not in text
    assert "_total" not in text
    assert "# TYPE http_requests counter" in text
    assert "# UNIT cpu_usage_percent percent" in text
    fams = {f.name: f for f in text_string_to_metric_families(text)}
    assert {
        "latency_distribution",
        "http_requests",
        "pending_requests",
        "cpu_usage_percent",
        "gpu_usage_percent",
        "memory_usage_percent",
        "gpu_memory_usage_percent",
    } <= set(fams)
    assert fams["latency_distribution"].type == "summary"
    reqs = [s for s in fams["http_requests"].samples if s.labels["status_code"] == "200"]
    assert sum(s.value for s in reqs) > 200
    assert all(len(s.labels["replica_id"]) == 14 for s in reqs)
    q = {s.labels.get("quantile"): s.value for s in fams["latency_distribution"].samples}
    assert 0.7 <= q["0.5"] <= 3.0


def test_cpu_feed_has_no_gpu_series_and_idle_quantiles_are_nan():
    p = Platform(start=T0)
    p.create(NS, body(instance_type="intel-spr", instance_size="x2", accelerator="cpu"), ready=True)
    text = p.render_metrics(NS, "ep")
    assert "gpu_usage_percent" not in text
    fams = {f.name: f for f in text_string_to_metric_families(text)}
    assert all(math.isnan(s.value) for s in fams["latency_distribution"].samples[:4])


def _run(seed: int, chunk: float) -> dict:
    spec = default_scenario()
    p = build_platform(spec, start=T0, seed=seed)
    t = T0
    while t < T0 + 1800:
        t += chunk
        p.advance_to(t)
    return p.snapshot()


def test_same_seed_same_world():
    assert _run(7, 10.0) == _run(7, 10.0)
    assert _run(7, 10.0) != _run(8, 10.0)


def test_chunking_does_not_change_the_world():
    assert _run(5, 1.0) == _run(5, 7.5)


def test_demo_world_runs_ninety_minutes():
    """The demo's 90 minutes in one advance (no timing asserted: tests never time)."""
    spec = default_scenario()
    p = build_platform(spec, start=T0, seed=0)
    p.advance_to(T0 + 5400)
    snap = p.snapshot()["endpoints"]
    assert snap["demo-org/chat-llm"]["served"] > 10_000


# -- scale-to-zero semantics (issue 14, item 4) ----------------------------------------------------


def test_scale_to_zero_timer_does_not_run_while_initializing():
    """A new min-0 endpoint whose cold start is longer than its idle timeout still reaches
    running; the timer starts when it is running, not at creation."""
    p = Platform(start=T0, config=PlatformConfig(pending_s=10, cold_start_s=120))
    p.create(NS, body(min_replica=0, max_replica=1, timeout=1), by=BOT)
    seen = set()
    for s in range(1, 131):
        p.advance_to(T0 + s)
        seen.add(state(p))
    assert seen == {"pending", "initializing", "running"}
    p.advance_to(T0 + 130 + 58)
    assert state(p) == "running"  # idle for less than the timeout since it became running
    p.advance_to(T0 + 130 + 61)
    assert state(p) == "scaledToZero"


def test_woken_endpoint_reaches_running_before_its_idle_timer_counts():
    """A request that wakes a scaled-to-zero endpoint (cold start 120 s > 1 min timeout) lets it
    come up; it then idles out one timeout after it became running."""
    p = Platform(start=T0, config=PlatformConfig(cold_start_s=120))
    p.create(NS, body(min_replica=0, max_replica=1, timeout=1), by=BOT, ready=True)
    assert p.submit_request(NS, "ep", at=T0 + 1).status == "rejected"
    p.advance_to(T0 + 1 + 121)
    assert state(p) == "running"
    p.advance_to(T0 + 1 + 120 + 61)
    assert state(p) == "scaledToZero"


def test_held_and_in_flight_requests_count_as_activity():
    """While a request is held for the endpoint, or one is still being served, the endpoint is
    not idle: it does not scale to zero under it."""
    p = Platform(start=T0, config=PlatformConfig(cold_start_s=30, service_jitter=0.0))
    sim = SimParams(service_time_s=200.0)
    p.create(NS, body(min_replica=0, max_replica=1, timeout=1), by=BOT, ready=True, sim=sim)
    p.hold(NS, "ep")  # a request with X-Scale-Up-Timeout waits: wakes the endpoint
    assert state(p) == "initializing"
    p.advance_to(T0 + 31)
    assert state(p) == "running"
    p.advance_to(T0 + 300)  # still held (the client has not been answered yet)
    assert state(p) == "running"
    ticket = p.submit_request(NS, "ep", at=T0 + 300)
    p.release(NS, "ep")
    assert ticket.status == "running"
    p.advance_to(T0 + 300 + 199)  # in service for longer than the idle timeout
    assert state(p) == "running"
    p.advance_to(T0 + 501)
    assert ticket.status == "done"
    p.advance_to(T0 + 500 + 59)
    assert state(p) == "running"
    p.advance_to(T0 + 500 + 61)
    assert state(p) == "scaledToZero"


def test_quota_rules_narrow_by_region_and_instance_type_and_can_pool_by_kind():
    p = Platform(start=T0)
    p.set_quota(NS, "aws", "gpu", 4)  # every AWS GPU group
    p.set_quota(NS, "aws", "gpu", 1, instance_type="nvidia-a10g")  # narrower: wins for A10G
    p.create(NS, body("l4", min_replica=3, max_replica=3), by=BOT, ready=True)
    with pytest.raises(EmulatorError, match="quota"):
        p.create(NS, body("l4b", min_replica=2, max_replica=2), by=BOT, ready=True)
    p.create(NS, body("a10g", instance_type="nvidia-a10g"), by=BOT, ready=True)
    with pytest.raises(EmulatorError, match="quota"):
        p.create(NS, body("a10g2", instance_type="nvidia-a10g"), by=BOT, ready=True)
    assert p.quota_max(NS, "aws", "gpu", instance_type="nvidia-a10g") == 1
    assert p.quota_max(NS, "aws", "gpu", instance_type="nvidia-l4") == 4
    assert p.quota_used(NS, "aws", "gpu") == 4
    assert p.quota_used(NS, "aws", "gpu", instance_type="nvidia-l4") == 3

    pooled = Platform(start=T0, config=PlatformConfig(quota_scope="accelerator"))
    pooled.set_quota(NS, "aws", "gpu", 4)
    pooled.create(NS, body("l4", min_replica=3, max_replica=3), by=BOT, ready=True)
    with pytest.raises(EmulatorError, match="quota"):  # shares the pool with the L4s
        pooled.create(NS, body("a", instance_type="nvidia-a10g", min_replica=2, max_replica=2))
