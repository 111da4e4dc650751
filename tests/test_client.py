"""EndpointsClient against an in-process fake of the API (httpx.MockTransport), no network."""

from __future__ import annotations

import contextlib
import json
import random
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote

import httpx
import pytest
from structlog.testing import capture_logs

from controller.errors import (
    ApiError,
    AuthError,
    BadRequestError,
    BadResponseError,
    ConflictError,
    FeedUnavailable,
    NotFoundError,
    QuotaError,
    RejectedApiError,
    RetryableApiError,
)
from controller.platform.client import ROUTES, CallRecord, EndpointsClient, parse_retry_after
from controller.platform.models import EndpointState

TOKEN = "hf_SeCrEtToKeN0123456789"
BASE = "https://api.test/v2"


def endpoint_json(name: str = "ep", state: str = "running", **scaling: Any) -> dict[str, Any]:
    return {
        "name": name,
        "type": "protected",
        "accountId": None,
        "healthRoute": "/health",
        "tags": ["team-a"],
        "provider": {"vendor": "aws", "region": "us-east-1"},
        "compute": {
            "accelerator": "gpu",
            "instanceType": "nvidia-l4",
            "instanceSize": "x1",
            "scaling": {"minReplica": 0, "maxReplica": 2, "scaleToZeroTimeout": 15, **scaling},
        },
        "model": {
            "repository": "gpt2",
            "framework": "pytorch",
            "task": "text-generation",
            "image": {"huggingface": {}},
        },
        "status": {
            "createdAt": "2023-10-26T12:41:53.263078506Z",
            "updatedAt": "2023-10-26T12:41:53.263Z",
            "private": None,
            "state": state,
            "message": "Endpoint is ready",
            "url": "https://abc.us-east-1.aws.endpoints.huggingface.cloud",
            "readyReplica": 1,
            "targetReplica": 1,
        },
    }


class FakeApi:
    """Behaves like the API for one namespace; `script` can override responses in order."""

    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []
        self.script: list[httpx.Response | Exception] = []
        self.endpoints = {"ep": endpoint_json("ep"), "other": endpoint_json("other")}

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if self.script:
            item = self.script.pop(0)
            if isinstance(item, Exception):
                raise item
            return item
        if request.headers.get("authorization") != f"Bearer {TOKEN}":
            return httpx.Response(401, json={"error": "Invalid credentials"})
        raw = request.url.raw_path.decode().split("?")[0].split("/")[2:]  # drop "", "v2"
        parts = [unquote(p) for p in raw]
        method = request.method
        if parts[:1] == ["provider"] and method == "GET":
            return httpx.Response(200, json={"vendors": [{"name": "aws", "regions": []}]})
        if parts[:1] != ["endpoint"]:
            return httpx.Response(404, json={"error": "no route"})
        if len(parts) == 2 and method == "GET":
            return httpx.Response(200, json={"items": list(self.endpoints.values())})
        name = parts[2]
        ep = self.endpoints.get(name)
        if ep is None:
            return httpx.Response(404, json={"error": f"Endpoint {name} not found"})
        if len(parts) == 3 and method == "GET":
            return httpx.Response(200, json=ep)
        if len(parts) == 3 and method == "PUT":
            body = json.loads(request.content)
            compute = body.get("compute", {})
            ep["compute"]["scaling"].update(compute.get("scaling", {}))
            ep["compute"].update({k: v for k, v in compute.items() if k != "scaling"})
            return httpx.Response(200, json=ep)
        if len(parts) == 4 and method == "POST":
            action = parts[3]
            if action == "resume" and ep["status"]["state"] == "running":
                return httpx.Response(400, text="Endpoint ep is already running")
            target = {"pause": "paused", "resume": "pending", "scale-to-zero": "scaledToZero"}
            ep["status"]["state"] = target[action]
            return httpx.Response(200, json=ep)
        if len(parts) == 4 and method == "GET" and parts[3] == "open-metrics":
            return httpx.Response(200, text="pending_requests 3\n")
        return httpx.Response(405, json={"error": "method not allowed"})


class Rig:
    def __init__(self, **kw: Any) -> None:
        self.api = FakeApi()
        self.sleeps: list[float] = []
        self.calls: list[CallRecord] = []

        async def sleep(seconds: float) -> None:
            self.sleeps.append(seconds)

        kw.setdefault("rng", random.Random(7))
        self.client = EndpointsClient(
            BASE,
            TOKEN,
            sleep=sleep,
            transport=httpx.MockTransport(self.api),
            on_call=self.calls.append,
            **kw,
        )


@pytest.fixture
async def rig():
    r = Rig()
    yield r
    await r.client.aclose()


def _resp(status: int, body: Any = None, **headers: str) -> httpx.Response:
    if isinstance(body, str):
        return httpx.Response(status, text=body, headers=headers)
    return httpx.Response(status, json=body if body is not None else {}, headers=headers)


# ------------------------------------------------------------------------------ routes and bodies


async def test_list_sets_namespace_and_sends_auth(rig: Rig):
    """Listing returns every item as an Endpoint with the namespace taken from the path."""
    eps = await rig.client.list_endpoints("acme")
    assert [e.name for e in eps] == ["ep", "other"]
    assert {"acme/ep", "acme/other"} == {e.key for e in eps}
    req = rig.api.requests[0]
    assert (req.method, req.url.path) == ("GET", "/v2/endpoint/acme")
    assert f"Bearer {TOKEN}" == req.headers["authorization"]
    assert req.headers["user-agent"].startswith("governor/")


async def test_get_quotes_path_segments(rig: Rig):
    """Namespace and name are percent-encoded so a slash or space cannot change the route."""
    rig.api.endpoints["a b/c"] = endpoint_json("a b/c")
    ep = await rig.client.get_endpoint("my ns", "a b/c")
    assert ep.name == "a b/c"
    assert rig.api.requests[0].url.raw_path == b"/v2/endpoint/my%20ns/a%20b%2Fc"
    assert ep.namespace == "my ns"


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        pytest.param({"min_replica": 2}, {"minReplica": 2}, id="min-only"),
        pytest.param({"max_replica": 5}, {"maxReplica": 5}, id="max-only"),
        pytest.param({"scale_to_zero_timeout": 30}, {"scaleToZeroTimeout": 30}, id="timeout"),
        pytest.param({"min_replica": 0}, {"minReplica": 0}, id="zero-is-given"),
        pytest.param(
            {"min_replica": 1, "max_replica": 3, "scale_to_zero_timeout": 60},
            {"minReplica": 1, "maxReplica": 3, "scaleToZeroTimeout": 60},
            id="all",
        ),
    ],
)
async def test_update_scaling_sends_only_given_keys(rig: Rig, kwargs, expected):
    """The PUT body is the nested partial update with exactly the keys passed."""
    ep = await rig.client.update_scaling("acme", "ep", **kwargs)
    req = rig.api.requests[0]
    assert (req.method, req.url.path) == ("PUT", "/v2/endpoint/acme/ep")
    assert {"compute": {"scaling": expected}} == json.loads(req.content)
    assert req.headers["content-type"] == "application/json"
    for wire, value in expected.items():
        assert value == ep.compute.scaling.wire()[wire]


@pytest.mark.parametrize(
    "kwargs",
    [pytest.param({}, id="empty"), pytest.param({"min_replica": -1}, id="negative")],
)
async def test_update_scaling_refuses_bad_input_without_a_request(rig: Rig, kwargs):
    """An empty or negative scaling update is a programming error, caught before any request."""
    with pytest.raises(ValueError, match=r"update_scaling|>= 0"):
        await rig.client.update_scaling("acme", "ep", **kwargs)
    assert rig.api.requests == []


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        pytest.param({"instance_size": "x4"}, {"instanceSize": "x4"}, id="size"),
        pytest.param(
            {"accelerator": "gpu", "instance_type": "nvidia-a10g", "instance_size": "x1"},
            {"accelerator": "gpu", "instanceType": "nvidia-a10g", "instanceSize": "x1"},
            id="all",
        ),
    ],
)
async def test_update_instance_body(rig: Rig, kwargs, expected):
    """Hardware updates PUT only the given compute keys, without a scaling block."""
    await rig.client.update_instance("acme", "ep", **kwargs)
    assert {"compute": expected} == json.loads(rig.api.requests[0].content)


async def test_update_instance_refuses_empty(rig: Rig):
    """An update_instance with nothing to change raises before sending."""
    with pytest.raises(ValueError, match="update_instance"):
        await rig.client.update_instance("acme", "ep")


@pytest.mark.parametrize(
    ("method", "suffix", "state", "start"),
    [
        pytest.param("pause", "pause", EndpointState.PAUSED, "running", id="pause"),
        pytest.param("resume", "resume", EndpointState.PENDING, "paused", id="resume"),
        pytest.param(
            "scale_to_zero", "scale-to-zero", EndpointState.SCALED_TO_ZERO, "running", id="s2z"
        ),
    ],
)
async def test_state_actions_post_to_their_route(rig: Rig, method, suffix, state, start):
    """pause/resume/scale-to-zero POST to their sub-route and return the new object."""
    rig.api.endpoints["ep"]["status"]["state"] = start
    ep = await getattr(rig.client, method)("acme", "ep")
    req = rig.api.requests[0]
    assert ("POST", f"/v2/endpoint/acme/ep/{suffix}") == (req.method, req.url.path)
    assert state == ep.state
    assert ep.namespace == "acme"


async def test_resume_already_running_is_success(rig: Rig):
    """A 400 "already running" on resume returns the current endpoint, recorded as ok."""
    ep = await rig.client.resume("acme", "ep")
    assert ep.state == EndpointState.RUNNING
    assert [(r.method, r.url.path) for r in rig.api.requests] == [
        ("POST", "/v2/endpoint/acme/ep/resume"),
        ("GET", "/v2/endpoint/acme/ep"),
    ]
    assert [(c.route, c.status, c.outcome) for c in rig.calls] == [
        ("resume", 400, "ok"),
        ("get", 200, "ok"),
    ]


async def test_resume_other_400_is_bad_request(rig: Rig):
    """A 400 on resume that is not "already running" stays an error."""
    rig.api.script = [_resp(400, {"error": "endpoint is failed"})]
    with pytest.raises(BadRequestError, match="endpoint is failed"):
        await rig.client.resume("acme", "ep")


async def test_get_provider_returns_raw_object(rig: Rig):
    """The provider route returns the JSON object as is."""
    data = await rig.client.get_provider("acme")
    assert "vendors" in data
    assert rig.api.requests[0].url.path == "/v2/provider/acme"
    assert rig.calls[0].route == "provider"


async def test_timeout_is_configured_per_request(rig: Rig):
    """timeout_s reaches httpx as the request timeout."""
    r = Rig(timeout_s=3.0)
    await r.client.get_endpoint("acme", "ep")
    assert r.api.requests[0].extensions["timeout"]["read"] == 3.0
    await r.client.aclose()


# ------------------------------------------------------------------------------ metrics feed


async def test_fetch_metrics_returns_text(rig: Rig):
    """The feed comes back as text from the open-metrics route."""
    assert await rig.client.fetch_metrics("acme", "ep") == "pending_requests 3\n"
    req = rig.api.requests[0]
    assert req.url.path == "/v2/endpoint/acme/ep/open-metrics"
    assert "openmetrics" in req.headers["accept"]
    assert rig.calls[0].route == "open_metrics"


@pytest.mark.parametrize(
    ("failure", "status"),
    [
        pytest.param(_resp(500, {"error": "boom"}), 500, id="500"),
        pytest.param(_resp(404, {"error": "no plan"}), 404, id="404"),
        pytest.param(httpx.ConnectError("refused"), None, id="connect"),
    ],
)
async def test_fetch_metrics_failure_is_feed_unavailable(rig: Rig, failure, status):
    """Feed failures become FeedUnavailable for the endpoint, after a single attempt."""
    rig.api.script = [failure]
    with pytest.raises(FeedUnavailable) as info:
        await rig.client.fetch_metrics("acme", "ep")
    assert info.value.endpoint == "acme/ep"
    assert status == info.value.status
    assert isinstance(info.value.__cause__, ApiError)
    assert len(rig.api.requests) == 1
    assert rig.sleeps == []


async def test_fetch_metrics_auth_error_propagates(rig: Rig):
    """A 401 on the feed is an AuthError, not a feed problem: the token is wrong."""
    rig.api.script = [_resp(401, {"error": "bad token"})]
    with pytest.raises(AuthError):
        await rig.client.fetch_metrics("acme", "ep")


# ------------------------------------------------------------------------------ error mapping


@pytest.mark.parametrize(
    ("response", "exc_type", "message"),
    [
        pytest.param(_resp(401, {"error": "Invalid token"}), AuthError, "Invalid token", id="401"),
        pytest.param(_resp(403, {"message": "forbidden"}), AuthError, "forbidden", id="403"),
        pytest.param(_resp(404, {"error": "not found"}), NotFoundError, "not found", id="404"),
        pytest.param(_resp(409, {"detail": "busy"}), ConflictError, "busy", id="409"),
        pytest.param(
            _resp(400, {"error": "Not enough quota for nvidia-l4"}),
            QuotaError,
            "quota",
            id="400-quota",
        ),
        pytest.param(_resp(403, {"error": "Quota exceeded"}), QuotaError, "Quota", id="403-quota"),
        pytest.param(_resp(400, {"error": "bad field"}), BadRequestError, "bad field", id="400"),
        pytest.param(_resp(422, "unprocessable thing"), BadRequestError, "unprocessable", id="422"),
        pytest.param(
            _resp(400, {"errors": [{"message": "a"}, {"message": "b"}]}),
            BadRequestError,
            "a; b",
            id="errors-list",
        ),
        pytest.param(_resp(418, {"error": "teapot"}), RejectedApiError, "teapot", id="418"),
    ],
)
async def test_rejections_map_without_retry(rig: Rig, response, exc_type, message):
    """Each 4xx maps to its error type at once, with status, endpoint and request id."""
    response.headers["x-request-id"] = "req-123"
    rig.api.script = [response]
    with pytest.raises(exc_type, match=message) as info:
        await rig.client.get_endpoint("acme", "ep")
    exc = info.value
    assert type(exc) is exc_type
    assert (response.status_code, "acme/ep", "req-123") == (
        exc.status,
        exc.endpoint,
        exc.request_id,
    )
    assert len(rig.api.requests) == 1
    assert rig.sleeps == []
    assert [("get", response.status_code, "error")] == [
        (c.route, c.status, c.outcome) for c in rig.calls
    ]


async def test_custom_quota_pattern():
    """The quota regex is configurable, since the platform's wording is undocumented."""
    r = Rig(quota_pattern=r"insufficient (capacity|accelerators)")
    r.api.script = [_resp(400, {"error": "Insufficient accelerators in region"})]
    with pytest.raises(QuotaError):
        await r.client.update_scaling("acme", "ep", max_replica=9)
    await r.client.aclose()


async def test_long_bodies_are_truncated(rig: Rig):
    """Error messages are capped so a huge body cannot flood the logs."""
    rig.api.script = [_resp(400, "x" * 5000)]
    with pytest.raises(BadRequestError) as info:
        await rig.client.get_endpoint("acme", "ep")
    assert len(info.value.message) < 300


@pytest.mark.parametrize(
    "failure",
    [
        pytest.param(_resp(500, {"error": "internal"}), id="500"),
        pytest.param(_resp(502, "bad gateway"), id="502"),
        pytest.param(_resp(429, {"error": "slow down"}), id="429"),
        pytest.param(httpx.ConnectError("connection refused"), id="connect"),
        pytest.param(httpx.ReadTimeout("read timed out"), id="timeout"),
    ],
)
async def test_transient_failures_exhaust_into_retryable(rig: Rig, failure):
    """Transient failures are retried max_attempts times, then raised with the cause chained."""
    rig.api.script = [failure] * 4
    with pytest.raises(RetryableApiError) as info:
        await rig.client.get_endpoint("acme", "ep")
    assert len(rig.api.requests) == 4
    assert len(rig.sleeps) == 3
    assert [c.outcome for c in rig.calls] == ["retry", "retry", "retry", "error"]
    assert info.value.endpoint == "acme/ep"
    if isinstance(failure, Exception):
        assert info.value.__cause__ is failure
        assert info.value.status is None


async def test_success_after_two_503s(rig: Rig):
    """Two 503s then a 200 returns the endpoint after two backoff sleeps."""
    rig.api.script = [_resp(503, "unavailable"), _resp(503, "unavailable")]
    ep = await rig.client.update_scaling("acme", "ep", min_replica=1)
    assert ep.compute.scaling.min_replica == 1
    assert len(rig.api.requests) == 3
    assert len(rig.sleeps) == 2
    assert [(c.status, c.outcome) for c in rig.calls] == [
        (503, "retry"),
        (503, "retry"),
        (200, "ok"),
    ]
    assert all(c.route == "update" for c in rig.calls)


async def test_connection_error_then_success(rig: Rig):
    """A connection error is retried and the next attempt's answer is returned."""
    rig.api.script = [httpx.ConnectError("reset")]
    ep = await rig.client.pause("acme", "ep")
    assert ep.state == EndpointState.PAUSED
    assert [c.status for c in rig.calls] == [None, 200]


@pytest.mark.parametrize(
    ("headers", "minimum"),
    [
        pytest.param({"retry-after": "2"}, 2.0, id="seconds"),
        pytest.param({"retry-after": "7.5"}, 7.5, id="fractional"),
        pytest.param(
            {
                "retry-after": "Wed, 21 Oct 2015 07:28:05 GMT",
                "date": "Wed, 21 Oct 2015 07:28:00 GMT",
            },
            5.0,
            id="http-date",
        ),
    ],
)
async def test_retry_after_is_a_minimum_wait(headers, minimum):
    """Retry-After on 429/503 sets the least time slept before the next attempt."""
    r = Rig(backoff_initial_s=0.01)
    r.api.script = [httpx.Response(429, json={"error": "rate"}, headers=headers)]
    await r.client.get_endpoint("acme", "ep")
    assert len(r.sleeps) == 1
    assert r.sleeps[0] >= minimum
    await r.client.aclose()


async def test_retry_after_beyond_cap_stops_retrying(rig: Rig):
    """A Retry-After longer than backoff_max_s is not waited out; the error carries it."""
    rig.api.script = [_resp(503, "later", **{"retry-after": "3600"})]
    with pytest.raises(RetryableApiError) as info:
        await rig.client.get_endpoint("acme", "ep")
    assert info.value.retry_after == 3600
    assert rig.sleeps == []
    assert [c.outcome for c in rig.calls] == ["error"]


async def test_backoff_grows_and_is_capped():
    """Sleeps grow exponentially with jitter and never exceed backoff_max_s."""
    r = Rig(max_attempts=8, backoff_initial_s=0.5, backoff_max_s=3.0)
    r.api.script = [_resp(500, "x")] * 8
    with pytest.raises(RetryableApiError):
        await r.client.get_endpoint("acme", "ep")
    caps = [min(3.0, 0.5 * 2**i) for i in range(7)]
    assert len(r.sleeps) == 7
    for slept, cap in zip(r.sleeps, caps, strict=True):
        assert cap / 2 <= slept <= cap
    await r.client.aclose()


# ------------------------------------------------------------------------------ bad responses


@pytest.mark.parametrize(
    ("call", "response", "field"),
    [
        pytest.param("get", _resp(200, "<html>oops</html>"), None, id="not-json"),
        pytest.param(
            "get",
            _resp(
                200, {**endpoint_json(), "compute": {**endpoint_json()["compute"], "scaling": {}}}
            ),
            "compute.scaling.minReplica",
            id="missing-nested",
        ),
        pytest.param(
            "get",
            _resp(200, {**endpoint_json(), "status": {**endpoint_json()["status"], "state": "x"}}),
            "status.state",
            id="bad-enum",
        ),
        pytest.param(
            "list",
            _resp(200, {"items": [endpoint_json(), {"name": "broken"}]}),
            "items.1.provider",
            id="list-item",
        ),
        pytest.param("list", _resp(200, [1, 2]), "items", id="list-not-object"),
        pytest.param("provider", _resp(200, [1]), "<root>", id="provider-not-object"),
    ],
)
async def test_bad_body_is_bad_response_naming_field(rig: Rig, call, response, field):
    """A 2xx body that is not JSON or misses a field raises BadResponseError naming the field."""
    rig.api.script = [response]
    calls: dict[str, Callable[[], Any]] = {
        "get": lambda: rig.client.get_endpoint("acme", "ep"),
        "list": lambda: rig.client.list_endpoints("acme", skip_invalid=False),
        "provider": lambda: rig.client.get_provider("acme"),
    }
    with pytest.raises(BadResponseError) as info:
        await calls[call]()
    assert field == info.value.field
    if field not in (None, "<root>"):
        assert field in str(info.value)
    assert "Traceback" not in str(info.value)
    assert len(rig.api.requests) == 1


# ------------------------------------------------------------------------------ token hygiene


async def test_token_never_leaks():
    """The token is absent from repr, exception text, call records and logs, even when echoed."""

    def echo(request: httpx.Request) -> httpx.Response:
        return httpx.Response(400, json={"error": f"bad header {request.headers['authorization']}"})

    calls: list[CallRecord] = []
    client = EndpointsClient(BASE, TOKEN, transport=httpx.MockTransport(echo), on_call=calls.append)
    assert TOKEN not in repr(client)
    assert "token=set" in repr(client)
    with capture_logs() as logs, pytest.raises(BadRequestError) as info:
        await client.get_endpoint("acme", "ep")
    exc = info.value
    for text in (str(exc), repr(exc), exc.message, repr(calls), repr(logs), repr(vars(client))):
        assert TOKEN not in text
    assert "***" in str(exc)
    await client.aclose()


async def test_no_token_sends_no_auth_header():
    """Without a token no Authorization header is sent (e.g. the public provider listing)."""
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"vendors": []})

    async with EndpointsClient(BASE, None, transport=httpx.MockTransport(handler)) as client:
        await client.get_provider("acme")
        assert "token=unset" in repr(client)
    assert "authorization" not in seen[0].headers


async def test_call_records_use_the_fixed_route_set(rig: Rig):
    """Every route name reported to on_call comes from ROUTES."""
    await rig.client.list_endpoints("acme")
    await rig.client.get_endpoint("acme", "ep")
    await rig.client.update_scaling("acme", "ep", max_replica=3)
    await rig.client.pause("acme", "ep")
    await rig.client.resume("acme", "ep")
    await rig.client.scale_to_zero("acme", "ep")
    await rig.client.fetch_metrics("acme", "ep")
    with contextlib.suppress(FeedUnavailable):  # the fake API has no engine: a 404, recorded
        await rig.client.fetch_engine_metrics("https://abc.example/metrics", "acme/ep")
    await rig.client.get_provider("acme")
    routes = {c.route for c in rig.calls}
    assert routes == ROUTES
    assert all(c.duration_s >= 0 for c in rig.calls)


async def test_broken_on_call_hook_does_not_break_calls():
    """An exception in the metrics hook is logged, not raised into the API call."""

    def boom(record: CallRecord) -> None:
        raise RuntimeError("hook bug")

    api = FakeApi()
    async with EndpointsClient(
        BASE, TOKEN, transport=httpx.MockTransport(api), on_call=boom
    ) as client:
        assert (await client.get_endpoint("acme", "ep")).name == "ep"


@pytest.mark.parametrize(
    ("value", "date", "expected"),
    [
        pytest.param(None, None, None, id="absent"),
        pytest.param("", None, None, id="empty"),
        pytest.param("3", None, 3.0, id="int"),
        pytest.param("-4", None, 0.0, id="negative-clamped"),
        pytest.param("soon", None, None, id="garbage"),
        pytest.param("nan", None, None, id="nan"),
        pytest.param(
            "Wed, 21 Oct 2015 07:28:30 GMT", "Wed, 21 Oct 2015 07:28:00 GMT", 30.0, id="date"
        ),
        pytest.param(
            "Wed, 21 Oct 2015 07:28:00 GMT", "Wed, 21 Oct 2015 07:29:00 GMT", 0.0, id="past-date"
        ),
    ],
)
def test_parse_retry_after(value, date, expected):
    """Retry-After parses as seconds or as an HTTP-date relative to the response's Date."""
    assert expected == parse_retry_after(value, date_header=date)


def test_parse_retry_after_date_without_date_header_uses_now():
    """An HTTP-date without a Date header is measured against the given `now`."""
    # 2015-10-21T07:28:00Z
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:10 GMT", now=1445412480.0) == 10.0


def test_public_names_exist():
    """Every name in __all__ is defined, including the new BadResponseError in errors."""
    import controller.errors as errors_mod
    import controller.platform.client as client_mod

    assert all(hasattr(client_mod, name) for name in client_mod.__all__)
    assert all(hasattr(errors_mod, name) for name in errors_mod.__all__)
    assert issubclass(BadResponseError, ApiError)


async def test_list_skips_a_malformed_item_and_keeps_the_rest(rig: Rig):
    """One unparsable endpoint in a listing is skipped and recorded; the others are returned."""
    rig.api.script = [_resp(200, {"items": [endpoint_json(), {"name": "broken"}]})]
    eps = await rig.client.list_endpoints("acme")
    assert [e.name for e in eps] == ["ep"]
    assert len(rig.client.invalid_items) == 1
    assert rig.client.invalid_items[0].field == "items.1.provider"
