"""Issue 14's numbered findings, one test (or table) each, over loopback HTTP against the emulator.

Each failed on the emulator as it was when the issue was filed; see the issue for the findings.
"""

from __future__ import annotations

import httpx
import pytest

from controller.clock import VirtualClock
from controller.emulator.platform import Platform
from controller.emulator.server import EmulatorServer
from controller.platform.models import UserRef

T0 = 1_700_000_000.0
NS = "acme"
TOKEN = "bot-token"
BOT = UserRef(id="u-1", name="governor-bot")


def create_body(name: str, *, instance: tuple[str, str, str] = ("gpu", "nvidia-l4", "x1")) -> dict:
    acc, itype, isize = instance
    return {
        "name": name,
        "type": "authenticated",
        "provider": {"vendor": "aws", "region": "us-east-1"},
        "compute": {
            "accelerator": acc,
            "instanceType": itype,
            "instanceSize": isize,
            "scaling": {"minReplica": 1, "maxReplica": 2, "scaleToZeroTimeout": None},
        },
        "model": {
            "repository": "gpt2",
            "framework": "pytorch",
            "revision": None,
            "image": {"huggingface": {}},
        },
    }


@pytest.fixture
async def api():
    clock = VirtualClock(T0)
    platform = Platform(start=T0, seed=1)
    platform.create(NS, {**create_body("chat"), "tags": ["t"]}, by=BOT, ready=True)
    platform.create(NS, create_body("cpu", instance=("cpu", "intel-spr", "x2")), by=BOT, ready=True)
    async with (
        EmulatorServer(platform, clock=clock, tokens={TOKEN: BOT}) as srv,
        httpx.AsyncClient(
            base_url=srv.base_url, headers={"Authorization": f"Bearer {TOKEN}"}
        ) as client,
    ):
        client.srv = srv  # type: ignore[attr-defined]
        yield client


async def assert_store_readable(api: httpx.AsyncClient) -> None:
    """Every endpoint and the listing still answer 200 with JSON."""
    r = await api.get(f"/endpoint/{NS}")
    assert r.status_code == 200, r.text
    for item in r.json()["items"]:
        g = await api.get(f"/endpoint/{NS}/{item['name']}")
        assert g.status_code == 200, g.text
    assert (await api.get("/provider")).status_code == 200


def raw_json(text: str) -> dict:
    return {"content": text.encode(), "headers": {"Content-Type": "application/json"}}


# -- 1. a create without task ----------------------------------------------------------------------


async def test_create_without_task_answers_task_null(api):
    r = await api.post(f"/endpoint/{NS}", json=create_body("notask"))
    assert r.status_code == 202, r.text
    assert "task" in r.json()["model"]
    assert r.json()["model"]["task"] is None
    items = (await api.get(f"/endpoint/{NS}")).json()["items"]
    assert all("task" in e["model"] for e in items)
    # what the official client indexes directly
    for e in items:
        for key in ("repository", "framework", "revision", "task"):
            assert key in e["model"]
        assert {"state", "createdAt", "updatedAt"} <= set(e["status"])
        assert {"name", "healthRoute", "type"} <= set(e)


# -- 2. NaN / Infinity -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        '{"compute":{"scaling":{"measure":{"hardwareUsage":Infinity}}}}',
        '{"compute":{"scaling":{"measure":{"pendingRequests":NaN}}}}',
        '{"compute":{"scaling":{"measure":{"hardwareUsage":1e400}}}}',
        '{"compute":{"scaling":{"measure":{"hardwareUsage":-Infinity}}}}',
    ],
)
async def test_non_finite_numbers_are_400_and_the_store_stays_readable(api, text):
    r = await api.put(f"/endpoint/{NS}/chat", **raw_json(text))
    assert r.status_code == 400, r.text
    assert "error" in r.json()
    await assert_store_readable(api)


# -- 3. a huge replica count -----------------------------------------------------------------------


async def test_huge_replica_update_on_cpu_is_refused_at_once(api):
    body = {"compute": {"scaling": {"minReplica": 1_000_000_000, "maxReplica": 1_000_000_000}}}
    r = await api.put(f"/endpoint/{NS}/cpu", json=body)
    assert r.status_code == 400, r.text
    assert "maxReplica" in r.json()["error"]
    assert (await api.get("/provider")).status_code == 200
    await assert_store_readable(api)
    assert (await api.get(f"/endpoint/{NS}/cpu")).json()["compute"]["scaling"]["maxReplica"] == 2


# -- 5. authorization by namespace ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/endpoint/stranger"),
        ("POST", "/endpoint/stranger"),
        ("GET", "/endpoint/stranger/chat"),
        ("PUT", "/endpoint/stranger/chat"),
        ("DELETE", "/endpoint/stranger/chat"),
        ("POST", "/endpoint/stranger/chat/pause"),
        ("POST", "/endpoint/stranger/chat/resume"),
        ("POST", "/endpoint/stranger/chat/scale-to-zero"),
        ("GET", "/endpoint/stranger/chat/open-metrics"),
        ("GET", "/provider/stranger"),
    ],
)
async def test_a_foreign_namespace_is_403_on_every_route(api, method, path):
    r = await api.request(method, path, json=create_body("intruder"))
    assert r.status_code == 403, r.text
    assert "stranger" in r.json()["error"]
    assert r.headers["x-request-id"]
    assert api.srv.platform.list("stranger") == []


async def test_a_namespace_stays_accessible_after_its_last_endpoint_is_deleted(api):
    for name in ("chat", "cpu"):
        assert (await api.delete(f"/endpoint/{NS}/{name}")).status_code == 200
    r = await api.get(f"/endpoint/{NS}")
    assert r.status_code == 200
    assert r.json() == {"items": []}
    assert (await api.post(f"/endpoint/{NS}", json=create_body("again"))).status_code == 202


async def test_tokens_are_granted_namespaces():
    """A token given namespaces sees only those; another token sees every known namespace."""
    clock = VirtualClock(T0)
    platform = Platform(start=T0, seed=1)
    platform.create("team-a", create_body("a"), by=BOT, ready=True)
    platform.create("team-b", create_body("b"), by=BOT, ready=True)
    alice = UserRef(id="u-2", name="alice")
    srv = EmulatorServer(
        platform,
        clock=clock,
        tokens={TOKEN: BOT, "alice-token": alice},
        namespaces={"alice-token": ["team-a", "alice"]},
    )
    async with srv, httpx.AsyncClient(base_url=srv.base_url) as c:
        bot = {"Authorization": f"Bearer {TOKEN}"}
        al = {"Authorization": "Bearer alice-token"}
        assert (await c.get("/endpoint/team-b", headers=bot)).status_code == 200
        assert (await c.get("/endpoint/team-a", headers=al)).status_code == 200
        assert (await c.get("/endpoint/team-b", headers=al)).status_code == 403
        assert (await c.get("/endpoint/alice", headers=al)).json() == {"items": []}
        r = await c.post("/endpoint/alice", headers=al, json=create_body("mine"))
        assert r.status_code == 202
        assert (await c.get("/endpoint/alice", headers=bot)).status_code == 200
        assert (await c.get("/endpoint/team-b", headers={})).status_code == 401


# -- 6. 500s instead of 4xx ------------------------------------------------------------------------


async def test_deep_nesting_is_a_clean_400(api):
    deep = "[" * 100_000 + "]" * 100_000
    r = await api.put(f"/endpoint/{NS}/chat", **raw_json(deep))
    assert r.status_code == 400
    assert "nested" in r.json()["error"]
    r = await api.post(f"/endpoint/{NS}", **raw_json('{"name": "x", "tags": ' + deep + "}"))
    assert r.status_code == 400
    await assert_store_readable(api)


@pytest.mark.parametrize(
    ("path", "text"),
    [
        ("/faults", '{"route": ["x"]}'),
        ("/faults", '{"route": {"a": 1}, "status": 500}'),
        ("/faults", '{"route": "get", "status": 1e400}'),
        (
            "/quota",
            '{"namespace":"acme","vendor":"aws","accelerator":"gpu","max_accelerators":1e400}',
        ),
        (
            "/quota",
            '{"namespace":["acme"],"vendor":"aws","accelerator":"gpu","max_accelerators":1}',
        ),
        ("/load", '{"endpoint": ["acme/chat"], "pattern": null}'),
        ("/load", '{"endpoint": "acme/chat", "pattern": {"kind": ["constant"]}}'),
        ("/force-state", '{"endpoint": {"x": 1}, "state": "failed"}'),
        # patterns the world cannot step: a zero period divides by zero, a huge rate never ends
        (
            "/load",
            '{"endpoint": "acme/chat", "pattern": {"kind": "diurnal", "base": 1, '
            '"peak": 2, "period_s": 0}}',
        ),
        ("/load", '{"endpoint": "acme/chat", "pattern": {"kind": "constant", "rps": 1e9}}'),
        ("/load", '{"endpoint": "acme/chat", "pattern": {"kind": "constant", "rps": true}}'),
        (
            "/load",
            '{"endpoint": "acme/chat", "pattern": {"kind": "piecewise", "points": [[0, -5]]}}',
        ),
        (
            "/load",
            '{"endpoint": "acme/chat", "pattern": {"kind": "trace", "arrivals": [1], '
            '"service_s": [-1]}}',
        ),
        ("/faults", "[" * 50_000 + "]" * 50_000),
    ],
)
async def test_admin_routes_answer_bad_bodies_with_json_4xx(api, path, text):
    async with httpx.AsyncClient(base_url=api.srv.admin_url) as admin:
        r = await admin.post(path, **raw_json(text))
    assert 400 <= r.status_code < 500, r.text
    assert r.headers["content-type"].startswith("application/json")
    assert r.json()["error"]
    await assert_store_readable(api)


# -- 7. loose validation outside compute, no size limit --------------------------------------------


@pytest.mark.parametrize(
    ("patch", "field"),
    [
        ({"foo": 1}, "foo"),
        ({"model": {"weights": "x"}}, "model.weights"),
        ({"cacheHttpResponses": "yes"}, "cacheHttpResponses"),
        ({"model": {"env": {"A": 1}}}, "model.env.A"),
        ({"model": {"secrets": {"A": ["x"]}}}, "model.secrets.A"),
        ({"model": {"command": "python"}}, "model.command"),
        ({"model": {"args": [1]}}, "model.args"),
        ({"route": "x"}, "route"),
        ({"route": {"path": "no-slash"}}, "route.path"),
        ({"model": {"image": {"custom": {"port": 80}}}}, "custom.url"),
        ({"model": {"image": {"nope": {}}}}, "model.image"),
        ({"tags": [1]}, "tags"),
        ({"privateService": {"accountId": 7}}, "privateService.accountId"),
    ],
)
async def test_update_rejects_unknown_keys_and_wrong_types(api, patch, field):
    before = (await api.get(f"/endpoint/{NS}/chat")).json()
    r = await api.put(f"/endpoint/{NS}/chat", json=patch)
    assert r.status_code == 422, r.text
    assert field in r.json()["error"]
    after = (await api.get(f"/endpoint/{NS}/chat")).json()
    assert after == before


async def test_create_rejects_unknown_keys_and_wrong_types(api):
    body = create_body("typo")
    body["model"]["weights"] = "x"
    r = await api.post(f"/endpoint/{NS}", json=body)
    assert r.status_code == 422
    assert "model.weights" in r.json()["error"]
    assert (await api.get(f"/endpoint/{NS}/typo")).status_code == 404


async def test_an_oversized_body_is_413_and_not_stored(api):
    body = create_body("big")
    body["model"]["env"] = {"BLOB": "x" * 8_000_000}
    r = await api.post(f"/endpoint/{NS}", json=body)
    assert r.status_code == 413
    assert "bytes" in r.json()["error"]
    assert (await api.get(f"/endpoint/{NS}/big")).status_code == 404
    r = await api.get(f"/endpoint/{NS}")
    assert len(r.content) < 100_000


# -- 9. secrets, health route, partial route update ------------------------------------------------


async def test_secrets_and_registry_password_are_redacted(api):
    body = create_body("secret")
    body["model"]["secrets"] = {"HF_TOKEN": "hf_very_secret_value"}
    body["model"]["image"] = {
        "custom": {
            "url": "registry.example/app:1",
            "credentials": {"username": "bob", "password": "hunter2-registry"},
        }
    }
    r = await api.post(f"/endpoint/{NS}", json=body)
    assert r.status_code == 202, r.text
    for resp in (r, await api.get(f"/endpoint/{NS}/secret"), await api.get(f"/endpoint/{NS}")):
        text = resp.text
        assert "hf_very_secret_value" not in text
        assert "hunter2-registry" not in text
    model = r.json()["model"]
    assert model["secrets"] == {"HF_TOKEN": None}
    assert model["image"]["custom"]["credentials"] == {"username": "", "password": None}


async def test_custom_image_health_route_is_the_endpoint_health_route(api):
    body = create_body("probe")
    body["model"]["image"] = {"custom": {"url": "registry.example/app:1", "healthRoute": "/ready"}}
    r = await api.post(f"/endpoint/{NS}", json=body)
    assert r.json()["healthRoute"] == "/ready"
    r = await api.put(
        f"/endpoint/{NS}/chat",
        json={"model": {"image": {"tgi": {"url": "ghcr.io/tgi:3", "healthRoute": "/healthz"}}}},
    )
    assert r.status_code == 200, r.text
    assert r.json()["healthRoute"] == "/healthz"


async def test_route_updates_merge(api):
    r = await api.put(f"/endpoint/{NS}/chat", json={"route": {"domain": "a.example", "path": "/m"}})
    assert r.json()["route"] == {"domain": "a.example", "path": "/m"}
    r = await api.put(f"/endpoint/{NS}/chat", json={"route": {"domain": "b.example"}})
    assert r.status_code == 200
    assert r.json()["route"] == {"domain": "b.example", "path": "/m"}


# -- 8. quota grouping and hardware ----------------------------------------------------------------


def computes(provider: dict) -> dict[str, dict]:
    return {
        c["id"]: c for v in provider["vendors"] for reg in v["regions"] for c in reg["computes"]
    }


async def test_quota_is_counted_per_vendor_region_and_instance_type(api):
    """chat (aws us-east-1 nvidia-l4, 1 replica) holds 1 unit of the us-east-1 L4 group only; the
    x1 and x4 sizes of that type share the group; other types and regions are untouched."""
    by_id = computes((await api.get(f"/provider/{NS}")).json())
    assert by_id["aws-us-east-1-nvidia-l4-x1"]["quota"]["usedAccelerators"] == 1
    assert by_id["aws-us-east-1-nvidia-l4-x4"]["quota"]["usedAccelerators"] == 1
    assert by_id["aws-us-east-1-nvidia-a10g-x1"]["quota"]["usedAccelerators"] == 0
    assert by_id["aws-eu-west-1-nvidia-l4-x1"]["quota"]["usedAccelerators"] == 0
    assert by_id["gcp-us-east4-nvidia-l4-x1"]["quota"]["usedAccelerators"] == 0


async def test_cpu_replicas_count_their_vcpus(api):
    """cpu (intel-spr x2, 1 replica) holds 2 vCPU units; a create beyond the group's limit fails."""
    by_id = computes((await api.get(f"/provider/{NS}")).json())
    spr = by_id["aws-us-east-1-intel-spr-x2"]
    assert spr["numAccelerators"] == 2
    assert spr["quota"] == {"maxAccelerators": 32, "usedAccelerators": 2}
    assert by_id["aws-us-east-1-intel-spr-x16"]["quota"]["usedAccelerators"] == 2
    big = create_body("cpu-big", instance=("cpu", "intel-spr", "x16"))
    big["compute"]["scaling"]["minReplica"] = 2
    r = await api.post(f"/endpoint/{NS}", json=big)
    assert r.status_code == 400
    assert "quota" in r.json()["error"]


async def test_every_compute_option_has_memory_and_cpus(api):
    for c in computes((await api.get(f"/provider/{NS}")).json()).values():
        assert isinstance(c["memoryGb"], float), c["id"]
        assert c["memoryGb"] > 0, c["id"]
        assert isinstance(c["numCpus"], int), c["id"]
        assert c["numCpus"] > 0, c["id"]
    l4 = computes((await api.get("/provider")).json())["aws-us-east-1-nvidia-l4-x1"]
    assert (l4["numCpus"], l4["memoryGb"], l4["gpuMemoryGb"]) == (7, 30.0, 24)


async def test_switching_an_endpoint_between_accelerator_kinds_is_refused(api):
    patch = {"compute": {"accelerator": "cpu", "instanceType": "intel-spr", "instanceSize": "x2"}}
    r = await api.put(f"/endpoint/{NS}/chat", json=patch)
    assert r.status_code == 400
    assert "compute.accelerator" in r.json()["error"]
    assert (await api.get(f"/endpoint/{NS}/chat")).json()["compute"]["accelerator"] == "gpu"


# -- 9. latency_distribution_count: windowed like the published sample, or cumulative ------------


@pytest.mark.parametrize(("mode", "late_count"), [("window", 0), ("cumulative", None)])
def test_latency_count_covers_the_quantile_window_or_all_time(mode, late_count):
    """Requests served in the first minute: a minute after the window they are gone from
    `latency_distribution_count` in the windowed mode, still counted in the cumulative one."""
    from controller.emulator.load import Constant
    from controller.emulator.platform import PlatformConfig

    config = PlatformConfig(latency_summary=mode, latency_window_s=60.0)
    platform = Platform(start=T0, seed=1, config=config)
    platform.create(NS, create_body("chat"), by=BOT, load=Constant(2.0), ready=True)
    platform.advance_to(T0 + 60)
    served = platform.snapshot()["endpoints"][f"{NS}/chat"]["served"]
    count, total = platform.latency_totals(NS, "chat")
    assert count == served > 50
    assert total > 0
    platform.set_load(NS, "chat", None)
    platform.advance_to(T0 + 200)
    served = platform.snapshot()["endpoints"][f"{NS}/chat"]["served"]  # with those in flight
    count, _ = platform.latency_totals(NS, "chat")
    assert count == (served if late_count is None else late_count)
    feed = platform.render_metrics(NS, "chat")
    assert f"latency_distribution_count {count}\n" in feed
