"""The official `huggingface_hub` client, unchanged, over its whole Inference Endpoints call set
against the emulator: create (with and without every optional argument), update of each field,
pause, resume (with and without `running_ok`), scale-to-zero, delete, `wait`, `fetch`, the
hardware listing, and the errors it raises (401, 403, 404, 409, 400).

The only change a user makes is pointing the library's API base (`constants.
INFERENCE_ENDPOINTS_ENDPOINT`) at loopback. The client is synchronous, so each call runs in a
thread while the emulator serves on this test's event loop. The world runs on the wall clock
with sub-second pending and cold-start times, so `wait()` sees the real state flow in well
under a second. Skipped when huggingface_hub is not installed."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from controller.clock import WallClock
from controller.emulator.platform import Platform, PlatformConfig
from controller.emulator.server import EmulatorServer
from tests.conftest import BOT, HUMAN, HUMAN_TOKEN, NS, TOKEN, endpoint_body

hf = pytest.importorskip("huggingface_hub", reason="huggingface_hub not installed")
from huggingface_hub import HfApi, InferenceEndpoint, constants  # noqa: E402
from huggingface_hub.errors import (  # noqa: E402
    HfHubHTTPError,
    InferenceEndpointError,
    InferenceEndpointTimeoutError,
)

FAST = PlatformConfig(pending_s=0.1, cold_start_s=0.2, update_delay_s=0.2)
REFRESH = 0.05  # seconds between wait()'s polls (the client accepts any positive number)
SHA = "0cb88a4f764b7a12671c53f0838cd831a0843b95"
REQUIRED: dict[str, Any] = {
    "repository": "gpt2",
    "framework": "pytorch",
    "accelerator": "gpu",
    "instance_size": "x1",
    "instance_type": "nvidia-l4",
    "region": "us-east-1",
    "vendor": "aws",
    "namespace": NS,
}


@dataclass
class Hub:
    """The emulator on loopback and an `HfApi` pointed at it."""

    srv: EmulatorServer
    api: HfApi

    @property
    def platform(self) -> Platform:
        return self.srv.platform

    async def call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        return await asyncio.to_thread(fn, *args, **kwargs)

    async def error(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> HfHubHTTPError:
        with pytest.raises(HfHubHTTPError) as info:
            await self.call(fn, *args, **kwargs)
        return info.value

    def running(self, name: str, **body: Any) -> None:
        """An endpoint already running at its min replicas (created by a person)."""
        b = endpoint_body(name)
        b.update(body)
        self.platform.create(NS, b, by=HUMAN, ready=True)


@pytest.fixture
async def hub(monkeypatch) -> AsyncIterator[Hub]:
    clock = WallClock()
    platform = Platform(start=clock.now(), seed=3, config=FAST)
    tokens = {TOKEN: BOT, HUMAN_TOKEN: HUMAN}
    async with EmulatorServer(platform, clock=clock, tokens=tokens, tick_s=0.05) as srv:
        platform.add_namespace(NS)
        monkeypatch.setattr(constants, "INFERENCE_ENDPOINTS_ENDPOINT", srv.base_url)
        # The `InferenceEndpoint` objects' own methods (wait, fetch, pause, ...) authenticate with
        # the environment's token, not the HfApi's: set it, as a user's environment would.
        monkeypatch.setenv("HF_TOKEN", TOKEN)
        yield Hub(srv=srv, api=HfApi(token=TOKEN))


def status_of(err: HfHubHTTPError) -> int:
    return err.response.status_code


# -- create ---------------------------------------------------------------------------------------


async def test_create_with_required_arguments_only_then_wait_until_running(hub):
    """The client's minimal create: no task (the response has `model.task` null, which the
    client indexes), the pending -> initializing -> running flow, then the health route."""
    api = hub.api
    ep = await hub.call(api.create_inference_endpoint, "plain", **REQUIRED)
    assert isinstance(ep, InferenceEndpoint)
    assert (ep.name, ep.namespace, ep.status, ep.url) == ("plain", NS, "pending", None)
    assert ep.task is None
    assert ep.type == "authenticated"
    assert ep.raw["compute"]["scaling"] == {
        "minReplica": 1,
        "maxReplica": 1,
        "scaleToZeroTimeout": None,
        "metric": "hardwareUsage",
        "measure": {"hardwareUsage": None},
    }
    await hub.call(ep.wait, timeout=30, refresh_every=REFRESH)
    assert ep.status == "running"
    assert ep.url == hub.platform.url_of(NS, "plain")
    assert ep.raw["status"]["readyReplica"] == 1
    async with httpx.AsyncClient() as c:
        assert (await c.get(ep.url + ep.health_route)).status_code == 200
    # the namespace stays listable with a task-less endpoint in it
    listed = await hub.call(api.list_inference_endpoints, namespace=NS)
    assert [(e.name, e.task) for e in listed] == [("plain", None)]


async def test_create_with_every_optional_argument(hub):
    api = hub.api
    ep = await hub.call(
        api.create_inference_endpoint,
        "full",
        **REQUIRED | {"instance_type": "nvidia-a10g"},
        min_replica=0,
        max_replica=3,
        scaling_metric="pendingRequests",
        scaling_threshold=2.5,
        scale_to_zero_timeout=15,
        revision=SHA,
        task="text-generation",
        custom_image={"url": "registry.example/app:1", "port": 8080, "healthRoute": "/ready"},
        container_registry_username="bob",
        container_registry_password="hunter2-registry",
        container_command=["python", "-m", "app"],
        container_args=["--port", "8080"],
        env={"MODE": "fast"},
        secrets={"API_KEY": "very-secret-value"},
        type="public",
        domain="models.example",
        path="/full",
        cache_http_responses=False,
        tags=["prod", "chat"],
        private_link_account_id="123456789012",
        private_link_region="us-east-1",
    )
    raw = ep.raw
    assert ep.type == "public"
    assert (ep.task, ep.revision, ep.health_route) == ("text-generation", SHA, "/ready")
    assert raw["compute"]["instanceType"] == "nvidia-a10g"
    assert raw["compute"]["scaling"] == {
        "minReplica": 0,
        "maxReplica": 3,
        "scaleToZeroTimeout": 15,
        "metric": "pendingRequests",
        "measure": {"pendingRequests": 2.5},
    }
    model = raw["model"]
    assert model["image"] == {
        "custom": {
            "url": "registry.example/app:1",
            "port": 8080,
            "healthRoute": "/ready",
            "credentials": {"username": "", "password": None},  # redacted, as the platform does
        }
    }
    assert (model["command"], model["args"]) == (["python", "-m", "app"], ["--port", "8080"])
    assert model["env"] == {"MODE": "fast"}
    assert model["secrets"] == {"API_KEY": None}
    assert raw["route"] == {"domain": "models.example", "path": "/full"}
    assert raw["cacheHttpResponses"] is False
    assert raw["tags"] == ["prod", "chat"]
    assert raw["privateService"] == {"accountId": "123456789012", "region": "us-east-1"}
    fetched = await hub.call(api.get_inference_endpoint, "full", namespace=NS)
    assert "very-secret-value" not in str(fetched.raw)
    assert "hunter2-registry" not in str(fetched.raw)
    assert fetched.raw["model"] == model


# -- update, one field at a time ----------------------------------------------------------------

VLLM = {"vLLM": {"url": "vllm/vllm-openai:v0.23.0", "port": 8000, "tensorParallelSize": 4}}


def at(raw: dict, path: str) -> Any:
    node: Any = raw
    for k in path.split("."):
        node = node[k]
    return node


@pytest.mark.parametrize(
    ("kwargs", "path", "expected", "state"),
    [
        ({"instance_type": "nvidia-a10g"}, "compute.instanceType", "nvidia-a10g", "updating"),
        ({"instance_size": "x4"}, "compute.instanceSize", "x4", "updating"),
        (
            {"accelerator": "gpu", "instance_type": "nvidia-l40s", "instance_size": "x1"},
            "compute.id",
            "aws-us-east-1-nvidia-l40s-x1",
            "updating",
        ),
        ({"min_replica": 2}, "compute.scaling.minReplica", 2, "running"),
        ({"max_replica": 6}, "compute.scaling.maxReplica", 6, "running"),
        ({"scale_to_zero_timeout": 30}, "compute.scaling.scaleToZeroTimeout", 30, "running"),
        (
            {"scaling_metric": "hardwareUsage", "scaling_threshold": 70.0},
            "compute.scaling.measure",
            {"hardwareUsage": 70.0},
            "running",
        ),
        ({"repository": "openai-community/gpt2-large"}, "model.repository", None, "updating"),
        ({"framework": "custom"}, "model.framework", "custom", "updating"),
        ({"revision": SHA}, "model.revision", SHA, "updating"),
        ({"task": "text-classification"}, "model.task", "text-classification", "updating"),
        (
            {"custom_image": {"url": "ghcr.io/tgi:3", "healthRoute": "/healthz"}},
            "healthRoute",
            "/healthz",
            "updating",
        ),
        ({"custom_image": VLLM}, "model.image", VLLM, "updating"),
        ({"container_command": ["serve"]}, "model.command", ["serve"], "updating"),
        ({"container_args": ["--fast"]}, "model.args", ["--fast"], "updating"),
        ({"env": {"A": "1"}}, "model.env", {"A": "1"}, "updating"),
        ({"secrets": {"TOKEN": "s3cret"}}, "model.secrets", {"TOKEN": None}, "updating"),
        ({"domain": "a.example"}, "route.domain", "a.example", "running"),
        ({"path": "/v1"}, "route.path", "/v1", "running"),
        ({"cache_http_responses": True}, "cacheHttpResponses", True, "running"),
        ({"tags": ["new"]}, "tags", ["new"], "running"),
    ],
)
async def test_update_of_each_field(hub, kwargs, path, expected, state):
    """Each argument of `update_inference_endpoint` alone: the response and a fresh GET carry
    it, nothing else changes, and only instance or model changes redeploy (`updating`)."""
    hub.running("chat", tags=["t"])
    before = (await hub.call(hub.api.get_inference_endpoint, "chat", namespace=NS)).raw
    ep = await hub.call(hub.api.update_inference_endpoint, "chat", namespace=NS, **kwargs)
    want = expected if expected is not None else kwargs["repository"]
    assert at(ep.raw, path) == want
    assert ep.status == state
    assert ep.raw["status"]["updatedBy"]["name"] == BOT.name
    again = await hub.call(ep.fetch)
    assert again is ep
    assert at(ep.raw, path) == want
    untouched = ("provider", "name", "type") + (("tags",) if "tags" not in kwargs else ())
    assert {k: ep.raw[k] for k in untouched} == {k: before[k] for k in untouched}


async def test_update_of_parallelism_edits_the_current_image(hub):
    """`tensor_parallel_size` / `data_parallel_size` alone: the client GETs the current image,
    edits it and PUTs it back whole."""
    hub.running(
        "llm",
        compute={
            **endpoint_body("llm")["compute"],
            "instanceType": "nvidia-l4",
            "instanceSize": "x4",
        },
        model={"repository": "gpt2", "framework": "vllm", "image": VLLM},
    )
    ep = await hub.call(
        hub.api.update_inference_endpoint, "llm", namespace=NS, tensor_parallel_size=2
    )
    assert ep.raw["model"]["image"]["vLLM"]["tensorParallelSize"] == 2
    assert ep.raw["model"]["image"]["vLLM"]["url"] == VLLM["vLLM"]["url"]
    ep = await hub.call(
        hub.api.update_inference_endpoint, "llm", namespace=NS, data_parallel_size=2
    )
    assert ep.raw["model"]["image"]["vLLM"]["dataParallelSize"] == 2


async def test_route_updates_merge_through_the_client(hub):
    hub.running("chat")
    await hub.call(
        hub.api.update_inference_endpoint, "chat", namespace=NS, domain="a.example", path="/m"
    )
    ep = await hub.call(hub.api.update_inference_endpoint, "chat", namespace=NS, domain="b.example")
    assert ep.raw["route"] == {"domain": "b.example", "path": "/m"}


# -- pause, resume, scale-to-zero, delete, wait ----------------------------------------------------


async def test_pause_then_resume_with_and_without_running_ok(hub):
    hub.running("chat")
    ep = await hub.call(hub.api.pause_inference_endpoint, "chat", namespace=NS)
    assert (ep.status, ep.url) == ("paused", None)
    ep = await hub.call(ep.resume)  # the object method, running_ok=True
    assert (ep.status, ep.url) == ("pending", None)
    # already running: running_ok (the default) re-GETs the endpoint instead of raising
    ep = await hub.call(hub.api.resume_inference_endpoint, "chat", namespace=NS)
    assert ep.status in ("pending", "initializing", "running")
    err = await hub.error(hub.api.resume_inference_endpoint, "chat", namespace=NS, running_ok=False)
    assert status_of(err) == 400
    assert "already running" in err.response.text
    await hub.call(ep.wait, timeout=30, refresh_every=REFRESH)
    assert ep.status == "running"
    ep = await hub.call(ep.resume, running_ok=True)
    assert ep.status == "running"


async def test_scale_to_zero_keeps_the_url_and_wait_does_not_wake_it(hub):
    """scaledToZero keeps `status.url`; `wait()` only polls, so it times out (the platform wakes
    an endpoint on a request, not on reads); resume wakes it and `wait()` then returns."""
    hub.running("chat")
    ep = await hub.call(hub.api.scale_to_zero_inference_endpoint, "chat", namespace=NS)
    assert ep.status == "scaledToZero"
    assert ep.url == hub.platform.url_of(NS, "chat")
    with pytest.raises(InferenceEndpointTimeoutError):
        await hub.call(ep.wait, timeout=0.3, refresh_every=REFRESH)
    await hub.call(ep.scale_to_zero)  # again: no error, same state
    assert ep.status == "scaledToZero"
    await hub.call(ep.resume)
    await hub.call(ep.wait, timeout=30, refresh_every=REFRESH)
    assert ep.status == "running"


async def test_wait_raises_when_the_endpoint_fails(hub):
    hub.running("chat")
    ep = await hub.call(hub.api.get_inference_endpoint, "chat", namespace=NS)
    async with httpx.AsyncClient(base_url=hub.srv.admin_url) as admin:
        r = await admin.post("/force-state", json={"endpoint": f"{NS}/chat", "state": "failed"})
        assert r.status_code == 200
    await hub.call(ep.fetch)
    assert ep.status == "failed"
    with pytest.raises(InferenceEndpointError, match="failed to deploy"):
        await hub.call(ep.wait, timeout=5, refresh_every=REFRESH)


async def test_delete_through_the_api_and_the_object(hub):
    hub.running("a")
    hub.running("b")
    assert await hub.call(hub.api.delete_inference_endpoint, "a", namespace=NS) is None
    ep = await hub.call(hub.api.get_inference_endpoint, "b", namespace=NS)
    await hub.call(ep.delete)
    assert await hub.call(hub.api.list_inference_endpoints, namespace=NS) == []
    err = await hub.error(hub.api.get_inference_endpoint, "a", namespace=NS)
    assert status_of(err) == 404


async def test_hardware_listing_reports_prices_and_quota(hub):
    hub.running("chat")
    hw = await hub.call(hub.api.list_inference_endpoints_hardware, namespace=NS)
    by_id = {h.id: h for h in hw}
    l4 = by_id["aws-us-east-1-nvidia-l4-x1"]
    assert (l4.num_accelerators, l4.num_cpus, l4.memory_gb, l4.gpu_memory_gb) == (1, 7, 30.0, 24)
    assert l4.price_per_hour == 0.8
    assert (l4.max_accelerators, l4.used_accelerators) == (32, 1)
    assert all(h.memory_gb > 0 for h in hw)


# -- errors ---------------------------------------------------------------------------------------


async def test_errors_401_403_404_409_400(hub):
    """Each error the client can meet, as the HfHubHTTPError it raises, with the server's
    message and the request id (`X-Request-Id`)."""
    api = hub.api
    hub.running("chat")
    # 401: an unknown token, and no token at all
    err = await hub.error(HfApi(token="hf_wrong").list_inference_endpoints, namespace=NS)
    assert status_of(err) == 401
    assert err.request_id
    err = await hub.error(api.get_inference_endpoint, "chat", namespace=NS, token=False)
    assert status_of(err) == 401
    # 403: a namespace the token has no access to
    err = await hub.error(api.list_inference_endpoints, namespace="someone-else")
    assert status_of(err) == 403
    err = await hub.error(api.create_inference_endpoint, "x", **REQUIRED | {"namespace": "other"})
    assert status_of(err) == 403
    # 404: an unknown endpoint, on every per-endpoint call
    for call in (
        api.get_inference_endpoint,
        api.pause_inference_endpoint,
        api.resume_inference_endpoint,
        api.scale_to_zero_inference_endpoint,
        api.delete_inference_endpoint,
    ):
        err = await hub.error(call, "ghost", namespace=NS)
        assert status_of(err) == 404, call.__name__
        assert "ghost" in str(err)
    err = await hub.error(api.update_inference_endpoint, "ghost", namespace=NS, min_replica=1)
    assert status_of(err) == 404
    # 409: a duplicate name
    err = await hub.error(api.create_inference_endpoint, "chat", **REQUIRED)
    assert status_of(err) == 409
    # 400: invalid input, resume of a running endpoint without running_ok, quota
    err = await hub.error(
        api.create_inference_endpoint, "bounds", **REQUIRED, min_replica=3, max_replica=1
    )
    assert status_of(err) == 400
    assert "minReplica" in str(err)
    err = await hub.error(
        api.create_inference_endpoint, "odd", **REQUIRED | {"instance_size": "x3"}
    )
    assert status_of(err) == 400
    err = await hub.error(api.resume_inference_endpoint, "chat", namespace=NS, running_ok=False)
    assert status_of(err) == 400
    cpu = {"accelerator": "cpu", "instance_type": "intel-spr", "instance_size": "x2"}
    err = await hub.error(api.update_inference_endpoint, "chat", namespace=NS, **cpu)
    assert status_of(err) == 400  # no move between accelerator kinds
    assert "compute.accelerator" in str(err)
    hub.platform.set_quota(NS, "aws", "gpu", 1)
    err = await hub.error(api.update_inference_endpoint, "chat", namespace=NS, min_replica=2)
    assert status_of(err) == 400
    assert "quota" in str(err)
    ep = await hub.call(api.get_inference_endpoint, "chat", namespace=NS)
    assert ep.raw["compute"]["scaling"]["minReplica"] == 1
