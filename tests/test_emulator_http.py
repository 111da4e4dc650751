"""The emulator over real HTTP on loopback: API contract, auth, errors, faults, inference plane."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from controller.clock import VirtualClock
from controller.emulator.load import Constant
from controller.emulator.platform import Platform, PlatformConfig, SimParams
from controller.emulator.server import EmulatorServer
from controller.platform.models import Endpoint, UserRef

T0 = 1_700_000_000.0
NS = "acme"
TOKEN = "bot-token"
HUMAN_TOKEN = "human-token"
TOKENS = {
    TOKEN: UserRef(id="u-1", name="governor-bot"),
    HUMAN_TOKEN: UserRef(id="u-2", name="alice"),
}


def create_body(name: str, **scaling: object) -> dict:
    return {
        "name": name,
        "type": "protected",
        "provider": {"vendor": "aws", "region": "us-east-1"},
        "compute": {
            "accelerator": "gpu",
            "instanceType": "nvidia-l4",
            "instanceSize": "x1",
            "scaling": {"minReplica": 1, "maxReplica": 3, **scaling},
        },
        "model": {"repository": "gpt2", "task": "text-generation", "env": {"A": "1"}},
        "tags": ["prod"],
    }


class World:
    def __init__(self, srv: EmulatorServer, clock: VirtualClock) -> None:
        self.srv = srv
        self.clock = clock
        self.platform = srv.platform
        self.api = httpx.AsyncClient(
            base_url=srv.base_url, headers={"Authorization": f"Bearer {TOKEN}"}
        )
        self.human = httpx.AsyncClient(
            base_url=srv.base_url, headers={"Authorization": f"Bearer {HUMAN_TOKEN}"}
        )
        self.admin = httpx.AsyncClient(base_url=srv.admin_url)
        self.raw = httpx.AsyncClient()

    async def close(self) -> None:
        for c in (self.api, self.human, self.admin, self.raw):
            await c.aclose()


@pytest.fixture
async def world():
    clock = VirtualClock(T0)
    platform = Platform(start=T0, seed=1, config=PlatformConfig(cold_start_s=60))
    platform.create(NS, create_body("chat"), by=TOKENS[TOKEN], ready=True, load=Constant(1.0))
    platform.create(
        NS,
        create_body("lazy", minReplica=0, scaleToZeroTimeout=5),
        by=TOKENS[TOKEN],
        ready=True,
        sim=SimParams(cold_start_s=30, service_time_s=1.0),
    )
    async with EmulatorServer(platform, clock=clock, tokens=TOKENS) as srv:
        w = World(srv, clock)
        try:
            yield w
        finally:
            await w.close()


# -- auth, shapes, errors --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer nope"}, {"Authorization": f"Basic {TOKEN}"}],
)
async def test_auth_required(world, headers):
    async with httpx.AsyncClient(base_url=world.srv.base_url, headers=headers) as c:
        r = await c.get(f"/endpoint/{NS}")
    assert r.status_code == 401
    assert "error" in r.json()
    assert r.headers["x-request-id"]


async def test_list_and_get_parse_into_models(world):
    r = await world.api.get(f"/endpoint/{NS}")
    assert r.status_code == 200
    assert r.headers["x-request-id"]
    items = r.json()["items"]
    assert [e["name"] for e in items] == ["chat", "lazy"]
    eps = [Endpoint.model_validate(e) for e in items]
    assert eps[0].state == "running"
    assert eps[1].state == "scaledToZero"
    assert eps[0].compute.id == "aws-us-east-1-nvidia-l4-x1"
    assert eps[0].status.url == f"{world.srv.root_url}/inference/{NS}/chat"
    r = await world.api.get(f"/endpoint/{NS}/chat")
    ep = Endpoint.model_validate(r.json())
    assert ep.health_route == "/health"
    assert ep.status.ready_replica == 1
    r = await world.api.get(f"/endpoint/{NS}/ghost")
    assert r.status_code == 404
    assert "ghost" in r.json()["error"]


async def test_create_then_duplicate_conflicts(world):
    r = await world.api.post(f"/endpoint/{NS}", json=create_body("fresh"))
    assert r.status_code == 202
    assert r.json()["status"]["state"] == "pending"
    assert r.json()["status"]["createdBy"]["name"] == "governor-bot"
    r = await world.api.post(f"/endpoint/{NS}", json=create_body("fresh"))
    assert r.status_code == 409


async def test_partial_put_changes_only_given_fields_and_records_who(world):
    before = (await world.api.get(f"/endpoint/{NS}/chat")).json()
    world.clock.advance(90)
    r = await world.human.put(
        f"/endpoint/{NS}/chat", json={"compute": {"scaling": {"maxReplica": 5}}}
    )
    assert r.status_code == 200
    after = r.json()
    assert after["compute"]["scaling"]["maxReplica"] == 5
    assert after["compute"]["scaling"]["minReplica"] == before["compute"]["scaling"]["minReplica"]
    assert after["model"] == before["model"]
    assert after["tags"] == before["tags"]
    assert after["compute"]["instanceType"] == "nvidia-l4"
    assert after["status"]["state"] == "running"  # scaling-only: no redeploy
    assert after["status"]["updatedBy"] == {"id": "u-2", "name": "alice"}
    assert after["status"]["updatedAt"] > before["status"]["updatedAt"]
    assert after["status"]["createdBy"] == before["status"]["createdBy"]


@pytest.mark.parametrize(
    ("body", "status", "needle"),
    [
        ("not json", 400, "JSON"),
        ({"compute": {"scaling": {"minReplica": "two"}}}, 422, "compute.scaling.minReplica"),
        ({"compute": {"scaling": {"maxReplica": -1}}}, 422, "compute.scaling.maxReplica"),
        ({"compute": {"scaling": {"min_replica": 1}}}, 422, "compute.scaling.min_replica"),
        ({"compute": {"scaling": {"minReplica": 4}}}, 400, "minReplica"),
        ({"compute": {"instanceSize": "x7"}}, 400, "compute.instanceType"),
        ({"model": {"task": None}}, 422, "model.task"),
        ({"tags": "prod"}, 422, "tags"),
        ({"name": "other"}, 400, "name"),
    ],
)
async def test_update_validation_errors_name_the_field(world, body, status, needle):
    if isinstance(body, str):
        r = await world.api.put(
            f"/endpoint/{NS}/chat", content=body, headers={"Content-Type": "application/json"}
        )
    else:
        r = await world.api.put(f"/endpoint/{NS}/chat", json=body)
    assert r.status_code == status
    assert needle in r.json()["error"]
    assert r.headers["x-request-id"]


async def test_pause_resume_scale_to_zero(world):
    r = await world.api.post(f"/endpoint/{NS}/chat/resume")
    assert r.status_code == 400
    assert "already running" in r.json()["error"]
    r = await world.api.post(f"/endpoint/{NS}/chat/scale-to-zero")
    assert r.json()["status"]["state"] == "scaledToZero"
    assert r.json()["status"]["url"]
    r = await world.api.post(f"/endpoint/{NS}/chat/pause")
    assert r.json()["status"]["state"] == "paused"
    assert r.json()["status"]["url"] is None
    r = await world.api.post(f"/endpoint/{NS}/chat/resume")
    assert r.status_code == 200
    assert r.json()["status"]["state"] == "pending"
    world.clock.advance(75)
    r = await world.api.get(f"/endpoint/{NS}/chat")
    assert r.json()["status"]["state"] == "running"
    r = await world.api.delete(f"/endpoint/{NS}/chat")
    assert r.status_code == 200
    assert (await world.api.get(f"/endpoint/{NS}/chat")).status_code == 404


async def test_quota_on_resume_and_provider_route(world):
    # chat holds 1 (running), lazy holds 3 (scaledToZero counts maxReplica)
    r = await world.admin.post(
        "/quota",
        json={"namespace": NS, "vendor": "aws", "accelerator": "gpu", "max_accelerators": 4},
    )
    assert r.status_code == 200
    r = await world.api.get(f"/provider/{NS}")
    l4 = next(
        c
        for v in r.json()["vendors"]
        if v["name"] == "aws"
        for reg in v["regions"]
        if reg["name"] == "us-east-1"
        for c in reg["computes"]
        if c["id"] == "aws-us-east-1-nvidia-l4-x1"
    )
    assert l4["pricePerHour"] == 0.8
    assert l4["numAccelerators"] == 1
    assert l4["quota"] == {"maxAccelerators": 4, "usedAccelerators": 4}
    await world.api.post(f"/endpoint/{NS}/chat/pause")
    r = await world.api.put(
        f"/endpoint/{NS}/lazy", json={"compute": {"scaling": {"maxReplica": 4}}}
    )
    assert r.status_code == 200
    r = await world.api.post(f"/endpoint/{NS}/chat/resume")
    assert r.status_code == 400
    assert "quota" in r.json()["error"]
    await world.api.post(f"/endpoint/{NS}/lazy/pause")  # frees the 4 units
    r = await world.api.post(f"/endpoint/{NS}/chat/resume")
    assert r.status_code == 200
    async with httpx.AsyncClient(base_url=world.srv.base_url) as anon:
        r = await anon.get("/provider")
    assert r.status_code == 200
    assert "quota" not in r.json()["vendors"][0]["regions"][0]["computes"][0]


async def test_open_metrics_feed(world):
    world.clock.advance(120)
    r = await world.api.get(f"/endpoint/{NS}/chat/open-metrics")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain; version=0.0.4")
    names = {f.name for f in text_string_to_metric_families(r.text)}
    assert {"latency_distribution", "http_requests", "pending_requests"} <= names
    assert {"cpu_usage_percent", "gpu_usage_percent", "memory_usage_percent"} <= names
    assert "gpu_memory_usage_percent" in names


# -- fault injection and call record ---------------------------------------------------------------


async def test_fault_500_twice_then_ok(world):
    r = await world.admin.post(
        "/faults", json={"route": "get", "endpoint": f"{NS}/chat", "status": 500, "count": 2}
    )
    assert r.status_code == 201
    codes = [(await world.api.get(f"/endpoint/{NS}/chat")).status_code for _ in range(3)]
    assert codes == [500, 500, 200]
    assert (await world.api.get(f"/endpoint/{NS}/lazy")).status_code == 200


async def test_fault_429_with_retry_after(world):
    await world.admin.post("/faults", json={"route": "*", "status": 429, "retry_after": 7})
    r = await world.api.get(f"/endpoint/{NS}")
    assert r.status_code == 429
    assert r.headers["retry-after"] == "7"
    assert "error" in r.json()
    assert (await world.api.get(f"/endpoint/{NS}")).status_code == 200


async def test_fault_garbage_metrics_body_and_clear(world):
    await world.admin.post(
        "/faults",
        json={"route": "open-metrics", "status": 200, "body": "%%% not metrics {{", "count": -1},
    )
    for _ in range(2):
        r = await world.api.get(f"/endpoint/{NS}/chat/open-metrics")
        assert r.status_code == 200
        assert r.text == "%%% not metrics {{"
    await world.admin.delete("/faults")
    r = await world.api.get(f"/endpoint/{NS}/chat/open-metrics")
    assert "latency_distribution" in r.text


async def test_bad_fault_is_rejected(world):
    r = await world.admin.post("/faults", json={"route": "everything", "status": 500})
    assert r.status_code == 422
    assert "route" in r.json()["error"]


async def test_calls_are_recorded(world):
    await world.admin.delete("/calls")
    await world.api.get(f"/endpoint/{NS}")
    await world.api.get(f"/endpoint/{NS}/chat/open-metrics")
    await world.human.put(f"/endpoint/{NS}/chat", json={"tags": ["x"]})
    calls = (await world.admin.get("/calls")).json()
    assert [(c["method"], c["route"], c["status"]) for c in calls] == [
        ("GET", "list", 200),
        ("GET", "open-metrics", 200),
        ("PUT", "update", 200),
    ]
    assert calls[2]["user"] == "alice"
    assert calls[2]["endpoint"] == f"{NS}/chat"


async def test_admin_state_and_load(world):
    r = await world.admin.post(
        "/load", json={"endpoint": f"{NS}/chat", "pattern": {"kind": "constant", "rps": 6}}
    )
    assert r.status_code == 200
    world.clock.advance(30)
    snap = (await world.admin.get("/state")).json()
    assert snap["endpoints"][f"{NS}/chat"]["load_rps"] == 6
    assert snap["endpoints"][f"{NS}/lazy"]["state"] == "scaledToZero"
    r = await world.admin.post("/load", json={"endpoint": f"{NS}/chat", "pattern": {"kind": "x"}})
    assert r.status_code == 422


# -- inference plane -------------------------------------------------------------------------------


async def _drive(clock: VirtualClock, task: asyncio.Task, step: float = 1.0) -> None:
    """Advance virtual time until `task` finishes (bounded)."""
    for _ in range(2000):
        if task.done():
            return
        await asyncio.sleep(0.002)
        clock.advance(step)
    raise AssertionError("request never finished")


async def test_inference_503_when_scaled_to_zero_then_200_with_scale_up_timeout(world):
    url = f"{world.srv.root_url}/inference/{NS}/lazy"
    assert (await world.raw.get(url + "/health")).status_code == 503
    r = await world.raw.post(url, json={"inputs": "hi"})
    assert r.status_code == 503
    assert "error" in r.json()
    state = (await world.api.get(f"/endpoint/{NS}/lazy")).json()["status"]["state"]
    assert state == "initializing"  # the request woke it
    await world.api.post(f"/endpoint/{NS}/lazy/scale-to-zero")
    task = asyncio.create_task(
        world.raw.post(url, json={"inputs": "hi"}, headers={"X-Scale-Up-Timeout": "120"})
    )
    await _drive(world.clock, task)
    r = task.result()
    assert r.status_code == 200
    assert r.json()["held"] is True
    assert (await world.raw.get(url + "/health")).status_code == 200
    feed = (await world.api.get(f"/endpoint/{NS}/lazy/open-metrics")).text
    fam = {f.name: f for f in text_string_to_metric_families(feed)}["http_requests"]
    by_code = {s.labels["status_code"]: s.value for s in fam.samples}
    assert by_code["503"] == 1
    assert by_code["200"] == 1


async def test_inference_served_request_takes_simulated_time(world):
    url = f"{world.srv.root_url}/inference/{NS}/chat/v1/chat/completions"
    start = world.clock.now()
    task = asyncio.create_task(world.raw.post(url, json={"messages": []}))
    await _drive(world.clock, task, step=0.25)
    r = task.result()
    assert r.status_code == 200
    assert 0.5 <= r.json()["latency_s"] <= 2.0
    assert world.clock.now() - start >= r.json()["latency_s"]


async def test_unknown_route_is_json_404(world):
    r = await world.api.get("/nothing/here")
    assert r.status_code == 404
    assert "error" in r.json()
    assert r.headers["x-request-id"]


# -- large worlds ----------------------------------------------------------------------------------


async def test_advance_quantum_lets_api_calls_skip_small_advances():
    """With `advance_quantum_s`, an API call advances the world only when it is at least that far
    behind the clock; the default (0) keeps advancing on every call."""
    from controller.emulator.app import EmulatorConfig

    clock = VirtualClock(T0)
    platform = Platform(start=T0, seed=1)
    platform.create(NS, create_body("chat"), by=TOKENS[TOKEN], ready=True, load=Constant(1.0))
    cfg = EmulatorConfig(advance_quantum_s=2.0)
    async with EmulatorServer(platform, clock=clock, tokens=TOKENS, config=cfg, tick_s=3600) as srv:
        headers = {"Authorization": f"Bearer {TOKEN}"}
        async with httpx.AsyncClient(base_url=srv.base_url, headers=headers) as c:
            await asyncio.sleep(0)  # let the ticker run its first (no-op) step
            clock.advance(1.5)
            assert (await c.get(f"/endpoint/{NS}/chat/open-metrics")).status_code == 200
            assert platform.now == T0  # within the quantum: not advanced
            clock.advance(1.0)
            assert (await c.get(f"/endpoint/{NS}")).status_code == 200
            assert platform.now == T0 + 2.5  # at least a quantum behind: advanced to the clock


def test_wire_copy_is_deep_and_equal():
    """The listing's JSON copy of a spec equals a deepcopy and shares no mutable part."""
    import copy

    from controller.emulator.platform import _copy_json

    spec = {"a": [1, {"b": None, "c": [True, 2.5, "x"]}], "d": {"e": {}}, "t": (1, [2])}
    out = _copy_json(spec)
    assert out == copy.deepcopy(spec)
    out["a"][1]["c"].append(0)
    out["d"]["e"]["new"] = 1
    out["t"][1].append(3)
    assert spec == {"a": [1, {"b": None, "c": [True, 2.5, "x"]}], "d": {"e": {}}, "t": (1, [2])}


async def test_held_request_outlasts_a_short_idle_timeout():
    """Issue 14 item 4: a scaled-to-zero endpoint whose cold start (120 s) exceeds its idle timeout
    (1 min) serves a request held with X-Scale-Up-Timeout: 600, instead of idling out again during
    initializing and answering 503 after 600 s."""
    clock = VirtualClock(T0)
    platform = Platform(start=T0, seed=1, config=PlatformConfig(cold_start_s=120))
    platform.create(
        NS, create_body("sleepy", minReplica=0, scaleToZeroTimeout=1), by=TOKENS[TOKEN], ready=True
    )
    srv = EmulatorServer(platform, clock=clock, tokens=TOKENS)
    async with srv, httpx.AsyncClient() as c:
        url = f"{srv.root_url}/inference/{NS}/sleepy"
        task = asyncio.create_task(c.post(url, json={}, headers={"X-Scale-Up-Timeout": "600"}))
        await _drive(clock, task, step=2.0)
        r = task.result()
        assert r.status_code == 200, r.text
        assert r.json()["held"] is True
        assert 120 <= clock.now() - T0 < 200


async def test_held_request_ends_with_503_when_the_endpoint_is_paused_meanwhile(world):
    url = f"{world.srv.root_url}/inference/{NS}/lazy"
    task = asyncio.create_task(world.raw.post(url, json={}, headers={"X-Scale-Up-Timeout": "600"}))
    for _ in range(50):
        await asyncio.sleep(0.002)
        world.clock.advance(0.5)
    assert not task.done()
    await world.api.post(f"/endpoint/{NS}/lazy/pause")
    start = world.clock.now()
    await _drive(world.clock, task, step=1.0)
    assert task.result().status_code == 503
    assert world.clock.now() - start < 10


@pytest.mark.parametrize("value", ["soon", "nan", "inf", "-1", "1e9"])
async def test_bad_scale_up_timeout_header_is_400(world, value):
    url = f"{world.srv.root_url}/inference/{NS}/lazy"
    r = await world.raw.post(url, json={}, headers={"X-Scale-Up-Timeout": value})
    assert r.status_code == 400
    assert "X-Scale-Up-Timeout" in r.json()["error"]
