"""Demand recording in the store, export-trace, the autopilot's replay and choice, its guardrails
in the daemon, `governor tune`, and the backtest's rolling protocol."""

from __future__ import annotations

import asyncio
import json
import random
from dataclasses import dataclass
from pathlib import Path

import pytest
import structlog
import yaml

from controller.backtest import autopilot as ap
from controller.backtest.simulate import PolicySpec, SimConfig, prepare
from controller.backtest.traces import RequestTrace, load_trace
from controller.cli.main import main
from controller.core.params import EndpointSettings, apply_override
from controller.daemon.autopilot import AutopilotRunner, live_attainment
from controller.daemon.store import DemandMinute, DemandRecorder, StateStore
from controller.platform.signals import FeedSample
from controller.settings import AutopilotSettings, load_settings

T0 = 1_800_000_000.0  # a whole minute


@pytest.fixture(autouse=True)
def _keep_logging():
    """`main()` points logging at the captured stderr; later tests must not log to it closed."""
    saved = structlog.get_config()
    yield
    structlog.configure(**saved)


def _sample(at: float, served: float, pending: float, lat_n: float, lat_sum: float) -> FeedSample:
    return FeedSample(
        at=at,
        pending=pending,
        requests={"2xx": served},
        latency_count=lat_n,
        latency_sum=lat_sum,
    )


def _poisson(rate: float, seconds: float, seed: int) -> RequestTrace:
    rng = random.Random(seed)
    t, out = 0.0, []
    while True:
        t += rng.expovariate(rate)
        if t >= seconds:
            break
        out.append(t)
    return RequestTrace(f"poisson-{seed}", tuple(out))


# -- recording -------------------------------------------------------------------------------------


def test_recorder_folds_samples_into_minutes_and_store_adds_ticks(tmp_path):
    """Increases between samples land in the sample's minute; a counter reset counts its new
    value; a second tick's rows add to the stored minute; prune drops old minutes."""
    rec = DemandRecorder()
    store = StateStore(tmp_path / "s.sqlite")
    rec.add("a/x", _sample(T0 + 0, 100, 2, 50, 250), ready=1)  # baseline only
    rec.add("a/x", _sample(T0 + 15, 110, 4, 60, 300), ready=1)
    rec.add("a/x", _sample(T0 + 30, 5, 6, 3, 12), ready=2)  # engine restart: counters reset
    store.record_demand(rec.drain())
    rec.add("a/x", _sample(T0 + 45, 15, 8, 13, 62), ready=2)
    rec.add("a/x", _sample(T0 + 60, 20, 0, 18, 87), ready=2)  # next minute
    store.record_demand(rec.drain())
    rows = store.demand("a/x")
    assert [r.minute for r in rows] == [int(T0 // 60), int(T0 // 60) + 1]
    m0, m1 = rows
    assert m0.requests == 10 + 5 + 10
    assert m0.latency_count == 10 + 3 + 10
    assert m0.mean_latency_s == pytest.approx((50 + 12 + 50) / 23)
    assert (m0.samples, m0.pending_max, m0.mean_pending) == (4, 8, 5.0)
    assert m0.mean_ready == pytest.approx(1.5)
    assert m1.requests == 5
    # the pending gauge's change since the sample before (arrivals = answered + growth)
    assert (m0.queue_growth, m1.queue_growth) == (6.0, -8.0)
    assert (m0.arrivals, m1.arrivals) == (31.0, 0.0)
    assert store.prune_demand(before=T0 + 60) == 1
    assert [r.minute for r in store.demand("a/x")] == [int(T0 // 60) + 1]
    assert store.demand_keys() == ["a/x"]
    store.close()


def test_a_state_file_without_queue_growth_gains_the_column(tmp_path):
    """A file written before the demand's queue_growth column opens, its rows read as growth 0."""
    import sqlite3

    path = tmp_path / "old.sqlite"
    db = sqlite3.connect(path)
    db.executescript(
        "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);"
        "INSERT INTO meta VALUES ('schema', '1');"
        "CREATE TABLE demand (key TEXT NOT NULL, minute INTEGER NOT NULL, requests REAL NOT NULL,"
        " latency_sum REAL NOT NULL, latency_count REAL NOT NULL, pending_sum REAL NOT NULL,"
        " pending_max REAL NOT NULL, ready_sum REAL NOT NULL, samples INTEGER NOT NULL,"
        " PRIMARY KEY (key, minute)) WITHOUT ROWID;"
        "INSERT INTO demand VALUES ('a/x', 7, 30, 60, 30, 4, 1, 4, 4);"
    )
    db.commit()
    db.close()
    store = StateStore(path)
    store.record_demand([DemandMinute("a/x", 7, 30, 60, 30, 4, 1, 4, 4, queue_growth=5.0)])
    (row,) = store.demand("a/x")
    assert (row.requests, row.queue_growth, row.arrivals) == (60, 5.0, 65.0)
    store.close()


def test_loop_records_the_demand_it_scrapes(tmp_path):
    """A Governor run against the emulator over HTTP records every request of the load in the
    state file, minute by minute."""
    trace = _poisson(1.0, 600, seed=3)
    cfg = SimConfig(lead_in_s=0.0, policies=[], mode="full")
    prep = prepare(cfg, trace)
    store = StateStore(tmp_path / "state.sqlite")
    spec = PolicySpec("default", "governor")
    res = asyncio.run(ap._run_switching(cfg, prep, spec, [], None, store=store))
    rows = store.demand("sim/llm")
    recorded = sum(r.requests for r in rows)
    # Every answered request counts, the 503s of the cold start included (they are demand too);
    # only what completed after the last scrape is not seen.
    assert res.rejected_503 > 0
    assert res.requests - 20 <= recorded <= res.requests
    assert all(r.samples >= 3 for r in rows[1:-1])
    store.close()


def test_retention_setting_is_validated():
    assert load_settings(None, env={}).state.demand_retention_days == 14
    with pytest.raises(Exception, match="demand_retention_days"):
        load_settings(None, overrides={"state": {"demand_retention_days": -1}}, env={})


# -- export-trace ----------------------------------------------------------------------------------


def _config(tmp_path: Path, **extra) -> str:
    cfg = {
        "api": {"base_url": "http://127.0.0.1:9/v2"},
        "namespaces": ["acme"],
        "state": {"path": str(tmp_path / "state.sqlite")},
        **extra,
    }
    p = tmp_path / "governor.yaml"
    p.write_text(yaml.safe_dump(cfg))
    return str(p)


def _record(tmp_path: Path, counts: list[float], latency: float = 5.0) -> None:
    store = StateStore(tmp_path / "state.sqlite")
    now_min = int(__import__("time").time() // 60) - len(counts)
    store.record_demand(
        DemandMinute("acme/chat", now_min + i, c, c * latency, c, c, c, 60.0, 4)
        for i, c in enumerate(counts)
    )
    store.close()


def test_export_trace_writes_a_trace_simulate_reads(tmp_path, capsys):
    counts = [3.0, 0.0, 7.5, 2.5, 10.0]
    _record(tmp_path, counts)
    out = tmp_path / "chat.csv"
    cfg = _config(tmp_path)
    assert main(["export-trace", "-c", cfg, "--endpoint", "acme/chat", "--out", str(out)]) == 0
    trace = load_trace(out)
    assert trace.start_epoch is not None
    first = int(trace.start_epoch // 60)
    per_min = [0] * 5
    for o in trace.offsets:
        per_min[int((trace.start_epoch + o) // 60) - first] += 1
    assert per_min == [3, 0, 7, 3, 10]  # fractions carried to the next minute
    assert trace.start_epoch is not None
    assert "23 requests" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "code", "msg"),
    [
        (["--endpoint", "chat"], 2, "NAMESPACE/NAME"),
        (["--endpoint", "acme/other"], 1, "no recorded requests"),
        (["--endpoint", "acme/chat", "--days", "0"], 2, "--days"),
    ],
)
def test_export_trace_bad_input(tmp_path, capsys, argv, code, msg):
    _record(tmp_path, [1.0])
    assert main(["export-trace", "-c", _config(tmp_path), *argv]) == code
    err = capsys.readouterr().err
    assert msg in err
    assert "Traceback" not in err


def test_export_trace_without_a_state_file(tmp_path, capsys):
    assert main(["export-trace", "-c", _config(tmp_path), "--endpoint", "acme/chat"]) == 2
    assert "does not exist" in capsys.readouterr().err


# -- the autopilot's pieces ------------------------------------------------------------------------


def test_trace_from_demand_keeps_counts_and_is_seeded():
    rows = [DemandMinute("k", 100 + i, c) for i, c in enumerate([0.4, 0.4, 0.4, 5.0])]
    a = ap.trace_from_demand(rows, name="k", seed=1)
    b = ap.trace_from_demand(rows, name="k", seed=1)
    assert a.offsets == b.offsets
    assert len(a) == 6  # 0.4 + 0.4 + 0.4 carries one request into minute 2
    assert a.start_epoch == 6000.0


def test_service_from_demand_ignores_queued_minutes():
    rows = [DemandMinute("k", i, 10, 50, 10) for i in range(6)]
    rows += [DemandMinute("k", 10 + i, 10, 300, 10) for i in range(2)]  # queueing minutes
    assert ap.service_from_demand(rows) == pytest.approx(5.0)
    assert ap.service_from_demand([DemandMinute("k", 1)]) is None


@pytest.mark.parametrize(
    ("current", "step", "expected"),
    [
        (0.5, 1, [0.25, 0.5, 1.0]),
        (0.125, 1, [0.125, 0.25]),
        (1.0, 2, [0.25, 0.5, 1.0]),
        (0.3, 1, [0.125, 0.25, 0.5]),  # off-grid: the nearest grid value is the centre
    ],
)
def test_candidates_are_bounded_around_the_value_in_force(current, step, expected):
    assert ap.candidates_near(current, max_step=step) == expected


def test_choose_cheapest_meeting_else_keep():
    c = [
        ap.Comparison(0.25, 9.0, 0.995, True),
        ap.Comparison(0.5, 8.0, 0.991, True, current=True),
        ap.Comparison(1.0, 7.0, 0.97, False),
    ]
    keep = ap.choose("k", c, current=0.5, at=0)
    assert (keep.action, keep.safety_to) == ("keep", 0.5)
    cheaper = [*c[:2], ap.Comparison(1.0, 7.0, 0.992, True)]
    adopt = ap.choose("k", cheaper, current=0.5, at=0)
    assert (adopt.action, adopt.safety_to) == ("adopt", 1.0)
    assert "safety 0.5 -> 1" in adopt.explain()
    none = ap.choose("k", [ap.Comparison(1.0, 7.0, 0.9, False)], current=0.5, at=0)
    assert (none.action, none.safety_to) == ("keep", 0.5)


def test_live_attainment():
    rows = [DemandMinute("k", 1, 90, 90 * 5, 90), DemandMinute("k", 2, 10, 10 * 9, 10)]
    assert live_attainment(rows, service_s=5.0, queue_delay_s=1.0) == pytest.approx(0.9)
    assert live_attainment([], service_s=5.0, queue_delay_s=1.0) is None


def test_apply_override_merges_policy_params():
    es = EndpointSettings(policies={"slo_target": {"window_s": 90}})
    out = apply_override(
        es, {"policies": {"slo_target": {"safety": 0.25}}, "slo": {"attainment": 0.95}}
    )
    assert out.policies["slo_target"] == {"window_s": 90, "safety": 0.25}
    assert out.slo.attainment == 0.95
    assert out.slo.queue_delay_ms == 1000


def test_plan_endpoint_replays_recorded_demand_over_the_candidates():
    """30 recorded minutes of ~2 requests/s at 5 s latency replay over three candidates, each a
    real Governor run against the emulator; the adoption is the cheapest meeting the SLO."""
    rng = random.Random(5)
    rows = [
        DemandMinute("acme/chat", 1000 + i, float(rng.randint(100, 140)), 0, 0) for i in range(30)
    ]
    for r in rows:
        r.latency_count, r.latency_sum = r.requests, r.requests * 5.0
    es = EndpointSettings(ceiling=10)
    a = ap.plan_endpoint("acme/chat", es, rows, {}, instance="aws/nvidia-l4/x1", at=0.0)
    assert a is not None
    assert [c.safety for c in a.comparisons] == [0.25, 0.5, 1.0]
    meeting = [c for c in a.comparisons if c.meets_slo]
    if meeting:
        best = min(meeting, key=lambda c: c.cost_usd)
        assert a.safety_to == best.safety
    else:
        assert a.action == "keep"
    other = EndpointSettings(policies={"pending_requests": {}})
    assert ap.plan_endpoint("acme/chat", other, rows, {}, instance="aws/nvidia-l4/x1", at=0) is None


# -- the daemon's guardrails -----------------------------------------------------------------------


@dataclass
class _Adoption:
    key: str
    at: float
    action: str
    safety_from: float
    safety_to: float
    reason: str = "test planner"

    def explain(self) -> str:
        return f"autopilot {self.action}: safety {self.safety_from:g} -> {self.safety_to:g}"


class _Gov:
    """The parts of `Governor` the runner uses: real metrics, memory, overrides, settings."""

    def __init__(self) -> None:
        from controller.core.types import EndpointMemory
        from controller.daemon.exporter import Metrics

        self.metrics = Metrics()
        self.overrides: dict = {}
        self.memory = {
            "acme/chat": EndpointMemory(
                first_seen=T0, policy_memory={"slo_target": {"service_s": 5.0}}
            )
        }

    def endpoint_settings(self, ep):
        es = EndpointSettings()
        over = self.overrides.get(ep.key)
        return apply_override(es, over) if over else es


def _ep():
    from tests.helpers import endpoint

    ep = endpoint(name="chat")
    ep.namespace = "acme"
    return ep


async def _step(runner, gov, now):
    runner.step(gov, [_ep()], now)
    await runner.wait()
    runner.step(gov, [_ep()], now)


def test_runner_adopts_persists_and_reverts_on_live_attainment(tmp_path):
    store = StateStore(tmp_path / "s.sqlite")
    now = T0 + 7200
    store.record_demand(
        DemandMinute("acme/chat", int(T0 // 60) + i, 100, 500, 100) for i in range(90)
    )
    calls = []

    def planner(key, es, rows, pmem, *, instance, at, max_step):
        calls.append((key, len(rows), instance, max_step, pmem.get("service_s")))
        return _Adoption(key, at, "adopt", 0.5, 1.0)

    settings = AutopilotSettings(enabled=True, revert_after_s=600)
    runner = AutopilotRunner(settings, store=store, planner=planner)
    gov = _Gov()
    asyncio.run(_step(runner, gov, now))
    assert calls == [("acme/chat", 90, "aws/nvidia-l4/x1", 1, 5.0)]
    assert gov.overrides["acme/chat"] == {"policies": {"slo_target": {"safety": 1.0}}}
    assert gov.metrics.autopilot_decisions.labels("adopt")._value.get() == 1
    # persisted: a new runner on the same file has it in force
    again = AutopilotRunner(settings, store=store, planner=planner)
    assert again.overrides() == gov.overrides
    # no second run within the interval
    asyncio.run(_step(runner, gov, now + 60))
    assert len(calls) == 1
    # live minutes after the adoption wait 4 s past the service time: below the SLO -> revert
    store.record_demand(
        DemandMinute("acme/chat", int(now // 60) + i, 100, 100 * 10.0, 100) for i in range(15)
    )
    asyncio.run(_step(runner, gov, now + 900))
    assert "acme/chat" not in runner.overrides() or runner.overrides()["acme/chat"] == {
        "policies": {"slo_target": {"safety": 0.5}}
    }
    assert gov.metrics.autopilot_decisions.labels("revert")._value.get() == 1
    assert "revert" in json.loads(store.load_autopilot()["acme/chat"])["last"]
    store.close()


def test_runner_is_off_unless_enabled(tmp_path):
    store = StateStore(tmp_path / "s.sqlite")
    store.record_demand(DemandMinute("acme/chat", i, 100, 500, 100) for i in range(90))

    def planner(*a, **k):  # pragma: no cover - must not run
        raise AssertionError("the autopilot ran while disabled")

    runner = AutopilotRunner(AutopilotSettings(), store=store, planner=planner)
    gov = _Gov()
    asyncio.run(_step(runner, gov, T0))
    assert gov.overrides == {}
    store.close()


def test_runner_keeps_settings_when_the_replay_fails(tmp_path):
    store = StateStore(tmp_path / "s.sqlite")
    store.record_demand(DemandMinute("acme/chat", i, 100, 500, 100) for i in range(90))

    def planner(*a, **k):
        raise RuntimeError("replay broke")

    runner = AutopilotRunner(AutopilotSettings(enabled=True), store=store, planner=planner)
    gov = _Gov()
    asyncio.run(_step(runner, gov, T0 + 7200))
    assert gov.overrides == {}
    store.close()


# -- the backtest's rolling protocol ---------------------------------------------------------------


def test_run_autopilot_learns_on_earlier_days_and_acts_on_the_next():
    """Three short 'days': day 1 runs the shipped default, days 2 and 3 what the replay of the
    days before them chose; the run is continuous and scored like any other."""
    trace = _poisson(1.5, 3 * 900, seed=11)
    cfg = SimConfig(lead_in_s=300.0, policies=[])
    prep = prepare(cfg, trace)
    spec = PolicySpec("governor-autopilot", "autopilot")
    res = asyncio.run(ap.run_autopilot(cfg, prep, spec, None, day_s=900.0))
    assert res.kind == "autopilot"
    assert [f"day {d}: safety" in res.detail for d in (1, 2, 3, 4)] == [True, True, True, False]
    assert "safety 0.25: $" in res.detail  # day 2's comparison is in the explanation
    assert "day 1: safety 0.5 (shipped default)" in res.detail
    assert res.requests == len(trace)


def test_run_autopilot_prewarms_from_the_days_it_has_run():
    """The rolling run records its demand in a state store as the daemon does, so its pre-warm
    works: on a 2-minute job at 00:10, 01:10 and 02:10 the third job finds replicas started for
    it (seen twice before), the second does not (seen once). Without the store (the defect) the
    run never forecast and both found the same replicas."""
    rng = random.Random(5)
    hour, offsets, t = 3600.0, [], 0.0
    while t < 2 * hour + 900:
        busy = 600 <= (t % hour) < 720
        t += rng.expovariate(5.0 if busy else 0.2)
        offsets.append(t)
    trace = RequestTrace("hourly-job", tuple(offsets))
    cfg = SimConfig(policies=[])
    prep = prepare(cfg, trace)
    res = asyncio.run(ap.run_autopilot(cfg, prep, PolicySpec("ap", "autopilot"), None))
    assert "day 1: safety 0.5 (shipped default)" in res.detail

    def ready_before(job_at: float) -> float:
        pairs = zip(res.timeline["t_s"], res.timeline["ready"], strict=True)
        return [rd for ts, rd in pairs if ts < cfg.lead_in_s + job_at][-1]

    assert ready_before(2 * hour + 600) >= ready_before(hour + 600) + 2


def test_plan_reads_what_the_autopilot_has_in_force(tmp_path):
    """`governor plan` puts the stored adoption in force and shows its explanation."""
    from controller.cli.plan import _autopilot_state

    store = StateStore(tmp_path / "state.sqlite")
    store.save_autopilot("acme/chat", json.dumps({"safety": 1.0, "last": "autopilot adopt: x"}))
    store.close()
    on = load_settings(_config(tmp_path, autopilot={"enabled": True}), env={"HF_TOKEN": "t"})
    assert _autopilot_state(on) == {"acme/chat": {"safety": 1.0, "last": "autopilot adopt: x"}}
    off = load_settings(_config(tmp_path), env={"HF_TOKEN": "t"})
    assert _autopilot_state(off) == {}
