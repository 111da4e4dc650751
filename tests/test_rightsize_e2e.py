"""Right-sizing end to end: an over-sized endpoint (an 8B-class model on an A100 under light load)
run by the real Governor over loopback HTTP against the emulator, its traffic recorded in a real
SQLite state file; `governor rightsize` replays it per candidate instance and recommends the
cheapest meeting the SLO; the apply path updates, watches, probes and, on an injected start
failure, rolls back, all through the emulator's API."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import pytest
import structlog
import yaml

from controller.backtest.rightsize import evaluate_endpoint
from controller.cli.main import main
from controller.daemon.exporter import Metrics
from controller.daemon.rightsize import RightsizeRunner
from controller.daemon.store import StateStore
from controller.emulator.load import Constant
from controller.emulator.platform import SimParams
from tests.conftest import HUMAN, NS, TOKEN, World, endpoint_body, make_world, metric


@pytest.fixture(autouse=True)
def _keep_logging():
    """`main()` sets structlog's level and stream; later tests in the worker must get theirs."""
    saved = structlog.get_config()
    yield
    structlog.configure(**saved)


BIG = "big"
KEY = f"{NS}/{BIG}"
CURRENT = "aws/nvidia-a100/x1"
# 8,030,261,248 BF16 parameters on the (emulated) Hub: 16.06 GB of weights, SIM's model_gb
MODEL = "meta-llama/Llama-3.1-8B-Instruct"
# Light traffic: 0.1 req/s of 0.5 s requests on a card that batches 32 (GPU use far below 20 %).
SIM = SimParams(cold_start_s=60.0, concurrency=32, service_time_s=0.5, model_gb=16.0)
RS = {
    "instance_types": ["nvidia-l4", "nvidia-a10g", "nvidia-a100"],
    "max_candidates": 2,
    "min_busy_minutes": 30,
    "history_days": 1,
    "probation_s": 600,
    "update_timeout_s": 900,
}


def policies(**rs: Any) -> dict[str, Any]:
    return {"slo_target": {}, "right_sizing": {**RS, **rs}}


def settings_dict(world: World, **rs: Any) -> dict[str, Any]:
    return {
        "api": {
            "base_url": world.server.base_url,
            "backoff_initial_s": 0.5,
            "hub_url": world.server.root_url,
        },
        "namespaces": [NS],
        "manage": {"tags": ["managed"]},
        "loop": {"tick_interval_s": 60, "dry_run": False},
        "scrape": {"max_age_s": 120},
        "state": {"path": str(world.tmp / "state.sqlite")},
        "defaults": {
            "floor": 1,
            "ceiling": 4,
            "capacity_per_replica": 32,
            "cold_start_s": 60,
            "policies": policies(**rs),
        },
    }


def add_big(world: World) -> None:
    world.platform.create(
        NS,
        endpoint_body(
            BIG,
            min_replica=1,
            max_replica=4,
            tags=["managed"],
            instance=("gpu", "nvidia-a100", "x1"),
            repository=MODEL,
        ),
        by=HUMAN,
        load=Constant(0.1),
        ready=True,
        sim=SIM,
    )


async def record_an_hour(world: World, **rs: Any) -> tuple[Any, StateStore, Metrics]:
    """Governor runs the endpoint for an hour of virtual time; returns (gov, store, metrics)."""
    from controller.settings import load_settings

    add_big(world)
    s = load_settings(None, overrides=settings_dict(world, **rs), env={"HF_TOKEN": TOKEN})
    store = StateStore(world.tmp / "state.sqlite")
    metrics = Metrics()
    client = world.client(s, metrics)
    gov = world.governor(s, client, metrics=metrics, store=store)
    await world.run_ticks(gov, 61, step=60.0)
    return gov, store, metrics


def instance(world: World) -> str:
    snap = world.platform.snapshot()["endpoints"][KEY]
    return snap["instance"]


async def test_rightsize_recommends_the_cheapest_instance_meeting_the_slo(world: World, capsys):
    gov, store, _ = await record_an_hour(world)
    await gov.client.aclose()
    mem = store.load_memory()[KEY].policy_memory["right_sizing"]
    assert mem["instance"] == CURRENT  # observed on the A100, GPU memory recorded per hour
    assert mem["gpu_memory_peak"]
    store.close()
    cfg = world.tmp / "governor.yaml"
    doc = settings_dict(world)
    cfg.write_text(yaml.safe_dump(doc))
    assert await asyncio.to_thread(main, ["rightsize", "-c", str(cfg), "--endpoint", KEY]) == 0
    table = capsys.readouterr().out
    assert (
        await asyncio.to_thread(
            main, ["rightsize", "-c", str(cfg), "--endpoint", KEY, "-o", "json"]
        )
        == 0
    )
    rec = json.loads(capsys.readouterr().out)
    assert rec["kind"] == "governor.rightsize"
    assert rec["current"] == CURRENT
    cands = {c["instance"]: c for c in rec["candidates"]}
    assert set(cands) == {CURRENT, "aws/nvidia-l4/x1", "aws/nvidia-a10g/x1"}
    # the model is sized from the Hub's safetensors counts (the policy recorded which model)
    assert mem["model"] == {"repository": MODEL, "revision": None}
    assert rec["model_memory_source"] == "hub"
    assert rec["model_memory_gb"] == pytest.approx(8_030_261_248 * 2 / 1e9)
    assert cands[CURRENT]["meets_slo"]
    meeting = [c for c in rec["candidates"] if c["meets_slo"]]
    cheapest = min(meeting, key=lambda c: c["usd_per_month"])
    assert rec["action"] == "change", table
    assert rec["recommended"] == cheapest["instance"] != CURRENT
    saving = cands[CURRENT]["usd_per_month"] - cheapest["usd_per_month"]
    assert rec["saving_usd_per_month"] == pytest.approx(saving, abs=0.01)
    assert saving > 500  # an A100 at $2.50/h against a card at $1/h or less, over 730 h
    assert cheapest["delta_usd_per_month"] == pytest.approx(-saving, abs=0.01)
    assert f"saves ${saving:,.2f}/mo" in table
    assert "<- recommended" in table


def spy_instance_updates(gov: Any) -> list[dict[str, Any]]:
    """Every instance update the client sends (it still goes to the emulator over HTTP)."""
    sent: list[dict[str, Any]] = []
    real = gov.client.update_instance

    async def update_instance(ns: str, name: str, **kw: Any) -> Any:
        sent.append(kw)
        return await real(ns, name, **kw)

    gov.client.update_instance = update_instance
    return sent


async def evaluated(world: World, gov: Any, store: StateStore) -> RightsizeRunner:
    """A runner with the real evaluator, its first evaluation started and finished."""
    runner = RightsizeRunner(store=store, evaluator=evaluate_endpoint)
    gov.rightsize = runner
    await world.run_ticks(gov, 1, step=60.0)  # starts the evaluation (a worker thread)
    await runner.wait()
    return runner


async def test_apply_updates_watches_and_confirms_after_probation(world: World):
    gov, store, _metrics = await record_an_hour(
        world, apply=True, maintenance=[{"start": "00:00", "end": "24:00"}]
    )
    sent = spy_instance_updates(gov)
    runner = await evaluated(world, gov, store)
    await world.run_ticks(gov, 1, step=60.0)  # harvest, quota check, PUT
    st = runner.state[KEY]
    best = st.to_instance
    assert best is not None
    assert st.phase == "updating"
    assert sent == [{"instance_type": best.split("/")[1], "instance_size": "x1"}]
    assert world.platform.snapshot()["endpoints"][KEY]["state"] == "updating"
    scraped = await world.scrape_metrics(gov)
    assert metric(
        scraped, "governor_rightsize_saving_dollars_per_month", namespace=NS, endpoint=BIG
    ) == pytest.approx(st.saving_month_usd)
    await world.run_ticks(gov, 3, step=60.0)  # the redeploy's cold start (60 s)
    assert instance(world) == best
    assert st.phase == "probation"
    await world.run_ticks(gov, 11, step=60.0)  # probation 600 s
    assert st.phase == "idle"
    assert any("confirmed" in h for h in st.history), st.history
    assert instance(world) == best
    # idempotent: no second update was issued, and the state file says what happened
    assert len(sent) == 1
    saved = json.loads(store.load_rightsize()[KEY])
    assert saved["phase"] == "idle"
    scraped = await world.scrape_metrics(gov)
    for action in ("recommend", "apply", "running", "confirmed"):
        assert metric(scraped, "governor_rightsize_actions_total", action=action) == 1.0
    await gov.client.aclose()
    store.close()


async def test_a_new_instance_that_fails_to_start_is_rolled_back(world: World):
    gov, store, _metrics = await record_an_hour(
        world, apply=True, maintenance=[{"start": "00:00", "end": "24:00"}]
    )
    world.platform.inject_start_failure(NS, BIG)
    sent = spy_instance_updates(gov)
    runner = await evaluated(world, gov, store)
    await world.run_ticks(gov, 1, step=60.0)
    st = runner.state[KEY]
    assert st.phase == "updating"
    await world.run_ticks(gov, 2, step=60.0)  # the start fails: updateFailed, then the rollback
    assert st.phase in ("rolling_back", "idle")
    await world.run_ticks(gov, 3, step=60.0)
    assert st.phase == "idle"
    assert instance(world) == CURRENT
    assert world.platform.snapshot()["endpoints"][KEY]["state"] == "running"
    assert len(sent) == 2  # the update and the rollback
    assert sent[-1] == {"instance_type": "nvidia-a100", "instance_size": "x1"}
    assert any("rollback" in h and "failed to start" in h for h in st.history)
    scraped = await world.scrape_metrics(gov)
    assert metric(scraped, "governor_rightsize_actions_total", action="rollback") == 1.0
    assert metric(scraped, "governor_rightsize_actions_total", action="rolled_back") == 1.0
    # not tried again before min_change_interval_s
    await world.run_ticks(gov, 3, step=60.0)
    assert len(sent) == 2
    await gov.client.aclose()
    store.close()


async def test_a_new_instance_that_misses_the_slo_in_probation_is_rolled_back(world: World):
    """The capacity model is told (wrongly) that an L4 decodes as fast as an A100: the replay
    recommends it, the emulator's L4 is really 6.8x slower, the live latency over the probation
    misses the SLO and the old instance comes back."""
    same = {"nvidia-l4": 2039.0, "nvidia-a10g": 2039.0, "nvidia-a100": 2039.0}
    gov, store, _ = await record_an_hour(
        world, apply=True, maintenance=[{"start": "00:00", "end": "24:00"}], throughput=same
    )
    sent = spy_instance_updates(gov)
    runner = await evaluated(world, gov, store)
    await world.run_ticks(gov, 1, step=60.0)
    st = runner.state[KEY]
    assert st.to_instance == "aws/nvidia-l4/x1"
    await world.run_ticks(gov, 3, step=60.0)
    assert st.phase == "probation"
    (ep,) = [e for e in await gov.client.list_endpoints(NS) if e.name == BIG]
    # the configured batch (32, stated for the A100) is replaced by the replay's for the L4
    assert gov.endpoint_settings(ep).capacity_per_replica == st.capacity["aws/nvidia-l4/x1"] < 32
    await world.run_ticks(gov, 11, step=60.0)  # the probation ends: live attainment is checked
    assert any("rollback" in h and "below the SLO" in h for h in st.history), st.history
    await world.run_ticks(gov, 3, step=60.0)
    assert st.phase == "idle"
    assert instance(world) == CURRENT
    assert sent[-1] == {"instance_type": "nvidia-a100", "instance_size": "x1"}
    (ep,) = [e for e in await gov.client.list_endpoints(NS) if e.name == BIG]
    assert gov.endpoint_settings(ep).capacity_per_replica == 32
    await gov.client.aclose()
    store.close()


async def test_dry_run_says_what_it_would_do_and_changes_nothing(tmp_path, monkeypatch, capsys):
    # `governor plan` reads the emulator on the wall clock: the world's time runs two hours behind
    async with make_world(tmp_path, start=float(int(time.time()) // 60 * 60 - 7200)) as world:
        await dry_run_then_plan(world, monkeypatch, capsys)


async def dry_run_then_plan(world: World, monkeypatch: Any, capsys: Any) -> None:
    rs = {"apply": True, "maintenance": [{"start": "00:00", "end": "24:00"}]}
    gov, store, _ = await record_an_hour(world, **rs)
    gov.actuator.dry_run = True
    sent = spy_instance_updates(gov)
    runner = await evaluated(world, gov, store)
    await world.run_ticks(gov, 3, step=60.0)
    assert sent == []
    assert instance(world) == CURRENT
    st = runner.state[KEY]
    assert st.phase == "idle"
    assert any("dry_run: would update" in h for h in st.history)
    scraped = await world.scrape_metrics(gov)
    assert metric(scraped, "governor_rightsize_actions_total", action="dry_run") == 1.0
    # `governor plan` shows the daemon's last recommendation, the best candidate
    cfg = world.tmp / "governor.yaml"
    cfg.write_text(yaml.safe_dump(settings_dict(world, **rs)))
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    capsys.readouterr()
    assert await asyncio.to_thread(main, ["plan", "-c", str(cfg), "-o", "json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert len(doc["endpoints"]) == 1, json.dumps(doc)
    (entry,) = doc["endpoints"]
    assert entry["rightsize"]["action"] == "change"
    assert entry["rightsize"]["recommended"] == st.best
    assert entry["rightsize"]["saving_usd_per_month"] == pytest.approx(st.saving_month_usd)
    assert await asyncio.to_thread(main, ["plan", "-c", str(cfg)]) == 0
    table = capsys.readouterr().out
    assert f"{KEY}: right-sizing: {CURRENT} -> {st.best}, saves $" in table
    await gov.client.aclose()
    store.close()


def test_state_file_path_is_used(tmp_path: Path):
    """A rightsize without a recorded state file is a one-line configuration error."""
    cfg = tmp_path / "g.yaml"
    cfg.write_text(
        yaml.safe_dump(
            {
                "namespaces": [NS],
                "state": {"path": str(tmp_path / "none.sqlite")},
                "defaults": {"policies": {"right_sizing": {}}},
            }
        )
    )
    import os

    os.environ.setdefault("HF_TOKEN", "hf_x")
    assert main(["rightsize", "-c", str(cfg), "--endpoint", KEY]) == 2
