"""The model's size from the Hub's model API, for right-sizing: the parsing of `safetensors`
(table-driven, bad shapes included), the precedence (`model_memory_gb` > the Hub > the feed), the
client's failures over real loopback HTTP against the emulator's `/api/models` (each a size of
None with a one-line reason), and the daemon end to end: an engine that preallocates 90 % of the
A100 hides the model from the feed, and only the Hub's size lets right-sizing see it fits an L4."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
import yaml

from controller.backtest.rightsize import evaluate_endpoint, model_memory
from controller.cli.main import main
from controller.cost.pricing import PriceBook
from controller.daemon.exporter import Metrics
from controller.daemon.rightsize import RightsizeRunner
from controller.daemon.store import StateStore
from controller.emulator.load import Constant
from controller.emulator.platform import SimParams
from controller.platform.hub import HubClient, HubSize, make_hub_client, model_size_from_info
from policies.right_sizing import RightSizingParams
from tests.conftest import HUMAN, NS, TOKEN, World, endpoint_body
from tests.test_rightsize_e2e import (
    _keep_logging,  # noqa: F401  (autouse: main() configures)
    settings_dict,
)

LLAMA = "meta-llama/Llama-3.1-8B-Instruct"
LLAMA_GB = 8_030_261_248 * 2 / 1e9

# -- parsing -----------------------------------------------------------------------------------

GOOD = [
    ({"BF16": 8_030_261_248}, LLAMA_GB),
    ({"F32": 137_022_720}, 137_022_720 * 4 / 1e9),
    ({"F32": 124_697_433, "I64": 514}, (124_697_433 * 4 + 514 * 8) / 1e9),  # roberta-base
    ({"F8_E4M3": 7_000_000_000, "BF16": 1_000_000_000}, 9.0),
    ({"I4": 8_000_000_000, "F16": 500_000_000}, 5.0),
    ({"F64": 1_000_000_000}, 8.0),
    ({"U8": 3_000_000_000, "BOOL": 0}, 3.0),
]


@pytest.mark.parametrize(("parameters", "gb"), GOOD)
def test_weights_are_the_counts_times_each_dtypes_width(parameters: dict[str, int], gb: float):
    info = {"id": "x", "safetensors": {"parameters": parameters, "total": sum(parameters.values())}}
    got = model_size_from_info(info, "x", None)
    assert got.weights_gb == pytest.approx(gb)
    assert got.parameters == sum(parameters.values())
    assert got.reason == ""


BAD = [
    ([], "not a JSON object"),
    ({"id": "x"}, "no safetensors"),
    ({"safetensors": None}, "no safetensors"),
    ({"safetensors": [1, 2]}, "safetensors: expected an object"),
    ({"safetensors": {"total": 5}}, "safetensors.parameters: expected a non-empty object"),
    ({"safetensors": {"parameters": [{"BF16": 5}]}}, "safetensors.parameters: expected"),
    ({"safetensors": {"parameters": {}}}, "safetensors.parameters: expected a non-empty"),
    ({"safetensors": {"parameters": {"BF16": "8e9"}}}, "safetensors.parameters.BF16: expected"),
    ({"safetensors": {"parameters": {"BF16": -1}}}, "safetensors.parameters.BF16: expected"),
    ({"safetensors": {"parameters": {"BF16": 1.5e9}}}, "safetensors.parameters.BF16: expected"),
    ({"safetensors": {"parameters": {"BF16": True}}}, "safetensors.parameters.BF16: expected"),
    ({"safetensors": {"parameters": {"Q4_K": 5}}}, "safetensors.parameters.Q4_K: unknown dtype"),
    ({"safetensors": {"parameters": {"BF16": 0}}}, "no weights"),
    ({"safetensors": {"parameters": {"BF16": 5}, "total": "5"}}, "safetensors.total: expected"),
]


@pytest.mark.parametrize(("info", "says"), BAD)
def test_a_bad_shape_is_no_size_with_a_reason_naming_the_field(info: Any, says: str):
    got = model_size_from_info(info, "x", None)
    assert got.weights_gb is None
    assert says in got.reason
    assert "\n" not in got.reason


# -- precedence ----------------------------------------------------------------------------------

A100 = PriceBook().lookup("aws", "nvidia-a100", "x1")
FEED_90 = {"instance": "aws/nvidia-a100/x1", "gpu_memory_peak": {"1": 90.0}, "gpu_use": {}}
HUB_OK = HubSize(LLAMA, None, LLAMA_GB, parameters=8_030_261_248, dtypes=("BF16",))
HUB_401 = HubSize(LLAMA, None, None, reason="the Hub answered 401 for x (gated or private)")


@pytest.mark.parametrize(
    ("configured", "hub", "feed", "gb", "source"),
    [
        (12.0, HUB_OK, FEED_90, 12.0, "model_memory_gb"),  # the operator wins
        (None, HUB_OK, FEED_90, LLAMA_GB, "hub"),  # the Hub over the feed's 90 %
        (None, HUB_401, FEED_90, 72.0, "feed"),  # the Hub failed: the feed
        (None, None, FEED_90, 72.0, "feed"),  # not asked: the feed
        (None, HUB_401, {}, None, ""),  # nothing tells
    ],
)
def test_precedence_configured_then_hub_then_feed(
    configured: float | None, hub: HubSize | None, feed: dict[str, Any], gb: float | None, source
):
    assert A100 is not None
    p = RightSizingParams(model_memory_gb=configured)
    got, kind, said = model_memory(p, A100, feed, hub)
    assert got == (pytest.approx(gb) if gb is not None else None)
    assert kind == source
    if hub is HUB_401:
        assert "401" in said  # the fallback says why the Hub did not tell


# -- the client over loopback HTTP --------------------------------------------------------------


def hub(world: World, **kw: Any) -> HubClient:
    return HubClient(world.server.root_url, TOKEN, **kw)


async def hub_calls(world: World) -> list[dict[str, Any]]:
    return [c for c in await world.admin("GET", "/calls") if c["route"] == "hub-model"]


async def test_reads_the_size_and_pins_the_revision(world: World):
    world.platform.hub.set(LLAMA, {"F32": 8_030_261_248}, revision="abc123")
    c = hub(world)
    try:
        main_ = await c.model_size(LLAMA)
        pinned = await c.model_size(LLAMA, "abc123")
    finally:
        await c.aclose()
    assert main_.weights_gb == pytest.approx(LLAMA_GB)
    assert main_.source().startswith(f"the Hub's safetensors parameters of {LLAMA}: 8.03B BF16")
    assert pinned.weights_gb == pytest.approx(2 * LLAMA_GB)
    paths = [c["path"] for c in await hub_calls(world)]
    assert paths == [f"/api/models/{LLAMA}", f"/api/models/{LLAMA}/revision/abc123"]


async def test_results_are_cached_per_repository_and_revision_for_the_ttl(world: World):
    now = [0.0]
    c = hub(world, cache_ttl_s=100.0, monotonic=lambda: now[0])
    try:
        for _ in range(3):
            assert (await c.model_size(LLAMA)).weights_gb is not None
        assert (await c.model_size("nobody/nothing")).weights_gb is None  # failures too
        assert (await c.model_size("nobody/nothing")).weights_gb is None
        assert c.fetches == 2
        now[0] = 101.0
        await c.model_size(LLAMA)
        assert c.fetches == 3
    finally:
        await c.aclose()
    assert len(await hub_calls(world)) == 3


FAULTS = [
    ({"status": 500}, "the Hub answered 500"),
    ({"status": 404}, "(404)"),
    ({"status": 200, "body": "{not json", "content_type": "application/json"}, "not valid JSON"),
    ({"status": 200, "body": '{"safetensors": {"parameters": {"BF16": "x"}}}'}, "BF16: expected"),
    ({"status": 200, "body": "[" * 10 + "]" * 10}, "not a JSON object"),
    ({"status": 200, "body": " " * 5000}, "larger than 4096 bytes"),
    ({"status": None, "delay_s": 1.0}, "did not answer within 0.3s"),
]


@pytest.mark.parametrize(("fault", "says"), FAULTS)
async def test_every_failure_is_no_size_with_a_one_line_reason(
    world: World, fault: dict[str, Any], says: str
):
    await world.admin("POST", "/faults", json={"route": "hub-model", "endpoint": LLAMA, **fault})
    c = hub(world, timeout_s=0.3, max_body_bytes=4096)
    try:
        got = await c.model_size(LLAMA)
    finally:
        await c.aclose()
    assert got.weights_gb is None
    assert says in got.reason, got.reason
    assert "\n" not in got.reason
    assert TOKEN not in got.reason


async def test_gated_no_safetensors_unknown_and_unreachable(world: World):
    world.platform.hub.set("acme/gated", {"BF16": 10**9}, gated=True)
    world.platform.hub.set("acme/gguf-only", None)
    anonymous = HubClient(world.server.root_url, None)
    c = hub(world)
    dead = HubClient("http://127.0.0.1:9", TOKEN, timeout_s=2.0)
    try:
        refused = await anonymous.model_size("acme/gated")
        allowed = await c.model_size("acme/gated")  # the token is sent as a Bearer
        gguf = await c.model_size("acme/gguf-only")
        unknown = await c.model_size("acme/never-heard-of")
        bad_id = await c.model_size("../../etc/passwd")
        down = await dead.model_size(LLAMA)
    finally:
        for x in (anonymous, c, dead):
            await x.aclose()
    assert refused.weights_gb is None
    assert "401" in refused.reason
    assert "gated" in refused.reason
    assert allowed.weights_gb == pytest.approx(2.0)
    assert gguf.weights_gb is None
    assert "no safetensors" in gguf.reason
    assert unknown.weights_gb is None
    assert "404" in unknown.reason
    assert bad_id.weights_gb is None
    assert "not a Hub repository id" in bad_id.reason
    assert down.weights_gb is None
    assert "could not be reached" in down.reason
    assert TOKEN not in repr(c)


async def test_the_emulator_serves_a_deployed_models_size_from_the_scenario(world: World):
    """A repository not in the emulator's table answers the size the endpoint deploying it was
    simulated with (`SimParams.model_gb`), as BF16 parameters."""
    world.platform.create(
        NS,
        endpoint_body("custom", repository="acme/custom-7b"),
        by=HUMAN,
        ready=True,
        sim=SimParams(model_gb=14.0),
    )
    c = hub(world)
    try:
        got = await c.model_size("acme/custom-7b")
    finally:
        await c.aclose()
    assert got.weights_gb == pytest.approx(14.0)
    assert got.dtypes == ("BF16",)


# -- end to end through the daemon and `governor rightsize` -------------------------------------

BIG = "big"
KEY = f"{NS}/{BIG}"
# An 8B model on an A100 under light load, whose engine reserves 90 % of the card (vLLM).
SIM = SimParams(
    cold_start_s=60.0,
    concurrency=32,
    service_time_s=0.5,
    model_gb=16.0,
    gpu_memory_reserved=0.9,
)


async def recorded(world: World, **rs: Any) -> tuple[Any, StateStore, RightsizeRunner]:
    """An hour of the real loop on the endpoint, then one evaluation with the Hub client."""
    from controller.settings import load_settings

    world.platform.create(
        NS,
        endpoint_body(
            BIG,
            min_replica=1,
            max_replica=4,
            tags=["managed"],
            instance=("gpu", "nvidia-a100", "x1"),
            repository=LLAMA,
        ),
        by=HUMAN,
        load=Constant(0.1),
        ready=True,
        sim=SIM,
    )
    s = load_settings(None, overrides=settings_dict(world, **rs), env={"HF_TOKEN": TOKEN})
    store = StateStore(world.tmp / "state.sqlite")
    metrics = Metrics()
    gov = world.governor(s, world.client(s, metrics), metrics=metrics, store=store)
    await world.run_ticks(gov, 61, step=60.0)
    runner = RightsizeRunner(store=store, evaluator=evaluate_endpoint, hub=make_hub_client(s))
    gov.rightsize = runner
    await world.run_ticks(gov, 1, step=60.0)  # the Hub lookup, then the replay in a thread
    await runner.wait()
    await world.run_ticks(gov, 1, step=60.0)  # harvest
    return gov, store, runner


async def close(gov: Any, store: StateStore, runner: RightsizeRunner) -> None:
    assert runner.hub is not None
    await runner.hub.aclose()
    await gov.client.aclose()
    store.close()


async def test_daemon_sizes_the_model_from_the_hub_where_the_feed_shows_the_reservation(
    world: World,
):
    gov, store, runner = await recorded(world)
    st = runner.state[KEY]
    assert st.action == "change", st.last
    assert st.best in ("aws/nvidia-l4/x1", "aws/nvidia-a10g/x1")
    assert f"model {LLAMA_GB:.1f} GB (from the Hub's safetensors parameters of {LLAMA}" in st.last
    assert len(await hub_calls(world)) == 1
    await close(gov, store, runner)


async def test_daemon_falls_back_to_the_feed_when_the_hub_fails(world: World):
    await world.admin("POST", "/faults", json={"route": "hub-model", "status": 503, "count": -1})
    gov, store, runner = await recorded(world)
    st = runner.state[KEY]
    # the feed's 90 % of 80 GB is 72 GB: nothing smaller fits, the A100 is kept, and it says why
    assert st.action == "keep", st.last
    assert "from the feed's peak GPU memory 90%; the Hub's size unknown: " in st.last
    assert "the Hub answered 503" in st.last
    assert gov.health.ticks >= 63  # the failure never stopped a tick
    await close(gov, store, runner)


async def test_configured_model_memory_wins_and_the_hub_is_not_asked(world: World, capsys):
    gov, store, runner = await recorded(world, model_memory_gb=20.0)
    st = runner.state[KEY]
    assert "model 20.0 GB (from model_memory_gb)" in st.last
    assert await hub_calls(world) == []
    await close(gov, store, runner)
    # `governor rightsize` reads the model the policy recorded and asks the Hub itself
    cfg = world.tmp / "governor.yaml"
    cfg.write_text(yaml.safe_dump(settings_dict(world)))
    argv = ["rightsize", "-c", str(cfg), "--endpoint", KEY, "-o", "json"]
    capsys.readouterr()
    assert await asyncio.to_thread(main, argv) == 0
    rec = json.loads(capsys.readouterr().out)
    assert rec["model_memory_source"] == "hub"
    assert rec["model_memory_gb"] == pytest.approx(LLAMA_GB)
    assert rec["action"] == "change"
    assert len(await hub_calls(world)) == 1
