"""Fuzz and contract suite: no request can break the emulator.

Hypothesis generates requests for every route (management API, provider, inference plane and the
`/_emulator` admin routes): valid bodies with one part mutated (a wrong type, an unknown key, a
key dropped), arbitrary JSON, NaN/Infinity and overflowing numbers, huge integers, deep nesting,
truncated and binary bodies, odd path segments, query strings and headers. The contract:

- every answer carries `X-Request-Id`; a management or admin answer is never a 5xx, and an error
  is JSON `{"error": "<non-empty text>"}` (the inference plane may answer 503 while nothing is
  ready, as the platform does, in the same shape);
- afterwards the store is readable: the namespace listing, a GET of the endpoint, its feed, and
  both provider routes answer 200.

The emulator runs under uvicorn on its own event loop in a thread (hypothesis drives it with a
blocking client), on a clock sped up 100x so inference requests and cold starts take
milliseconds. `GOVERNOR_FUZZ_EXAMPLES` raises the examples per test for a long run (default 40:
the module runs in well under a minute).
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import threading
import time
import urllib.parse
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from controller.clock import ScaledClock
from controller.emulator.app import EmulatorConfig
from controller.emulator.platform import Platform, PlatformConfig
from controller.emulator.server import EmulatorServer
from controller.platform.models import UserRef

NS = "acme"
TOKEN = "fuzz-token"
BOT = UserRef(id="u-fuzz", name="governor-bot")
AUTH = {"Authorization": f"Bearer {TOKEN}"}
EXAMPLES = int(os.environ.get("GOVERNOR_FUZZ_EXAMPLES", "40"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.filter_too_much,
    ],
)
# Small world and bounds, so a valid random request cannot make the world itself slow: short
# cold starts, a low rate cap on admin load patterns (the cap is what is tested; the default is
# in docs/emulator.md), a small body cap so oversized bodies are cheap to send.
PLATFORM = PlatformConfig(pending_s=1.0, cold_start_s=5.0, update_delay_s=5.0)
HTTP = EmulatorConfig(max_load_rps=20.0, max_body_bytes=65_536, max_admin_body_bytes=65_536)


def create_body(name: str = "chat") -> dict[str, Any]:
    return {
        "name": name,
        "type": "protected",
        "accountId": None,
        "tags": ["t"],
        "provider": {"vendor": "aws", "region": "us-east-1"},
        "compute": {
            "accelerator": "gpu",
            "instanceType": "nvidia-l4",
            "instanceSize": "x1",
            "scaling": {
                "minReplica": 1,
                "maxReplica": 2,
                "scaleToZeroTimeout": None,
                "measure": {"pendingRequests": 1.5},
            },
        },
        "model": {
            "repository": "gpt2",
            "framework": "pytorch",
            "revision": None,
            "task": "text-generation",
            "image": {"tgi": {"url": "ghcr.io/tgi:3", "port": 80, "healthRoute": "/health"}},
            "env": {"A": "1"},
            "secrets": {"S": "x"},
            "command": ["serve"],
            "args": ["--fast"],
        },
        "route": {"domain": "a.example", "path": "/m"},
        "cacheHttpResponses": False,
        "customRouter": {"tag": "router:1", "env": {"B": "2"}, "port": 3000},
        "privateService": {"accountId": "123", "region": "us-east-1", "shared": False},
        "experimentalFeatures": {"loadBalancer": "x"},
    }


ADMIN_BODIES: dict[str, dict[str, Any]] = {
    "/faults": {
        "route": "get",
        "endpoint": f"{NS}/chat",
        "status": 500,
        "count": 1,
        "retry_after": 1,
        "body": "x",
        "delay_s": 0,
        "content_type": "text/plain",
    },
    "/load": {"endpoint": f"{NS}/chat", "pattern": {"kind": "constant", "rps": 1.0}},
    "/quota": {
        "namespace": "fuzz-quota",
        "vendor": "aws",
        "accelerator": "gpu",
        "region": "us-east-1",
        "instance_type": "nvidia-l4",
        "max_accelerators": 4,
    },
    "/force-state": {"endpoint": f"{NS}/chat", "state": "running"},
}
# Every pattern kind is a base for the `/load` body, so each one's fields get mutated: a null
# rate (`{"kind": "constant", "rps": null}`) was once accepted, and from the next simulated
# second on the world could not step, so every route answered a bare text 500.
LOAD_PATTERNS: list[dict[str, Any]] = [
    {"kind": "constant", "rps": 1.0},
    {"kind": "piecewise", "points": [[0, 0.5], [60, 2.0]]},
    {"kind": "ramp", "start_rps": 0.5, "end_rps": 2.0, "duration_s": 60},
    {"kind": "diurnal", "base": 0.5, "peak": 2.0, "period_s": 600, "phase_s": 0},
    {"kind": "burst", "base": 0.0, "peak": 2.0, "start_s": 5, "duration_s": 10, "period_s": 60},
    {"kind": "trace", "arrivals": [0.1, 0.5, 2.25], "service_s": [0.2, 0.2, 0.2]},
]


# -- the server ---------------------------------------------------------------------------------


class Background:
    """`EmulatorServer` on a private event loop in a daemon thread."""

    def __init__(self) -> None:
        self.ready = threading.Event()
        self.loop: asyncio.AbstractEventLoop | None = None
        self.stop: asyncio.Event | None = None
        self.srv: EmulatorServer | None = None
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="emulator-fuzz", daemon=True)

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:  # surfaced to the fixture
            self.error = exc
            self.ready.set()

    async def _main(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.stop = asyncio.Event()
        clock = ScaledClock(speed=100.0)
        platform = Platform(start=clock.now(), seed=5, config=PLATFORM)
        platform.create(NS, create_body(), by=BOT, ready=True)
        async with EmulatorServer(
            platform, clock=clock, tokens={TOKEN: BOT}, config=HTTP, tick_s=0.05
        ) as srv:
            self.srv = srv
            self.ready.set()
            await self.stop.wait()

    def __enter__(self) -> EmulatorServer:
        self.thread.start()
        self.ready.wait(30)
        if self.srv is None:
            raise RuntimeError(f"emulator did not start: {self.error!r}")
        return self.srv

    def __exit__(self, *exc: object) -> None:
        if self.loop is not None and self.stop is not None:
            self.loop.call_soon_threadsafe(self.stop.set)
        self.thread.join(30)


class Emu:
    def __init__(self, srv: EmulatorServer) -> None:
        self.root = srv.root_url
        self.http = httpx.Client(base_url=srv.root_url, timeout=30)

    def request(self, method: str, path: str, **kw: Any) -> httpx.Response:
        return self.http.request(method, path, **kw)

    def ensure_world(self) -> None:
        """The fuzzed endpoint exists and serves (a previous example may have deleted, paused,
        failed or scaled it); faults and loads are cleared."""
        self.http.delete("/_emulator/faults")
        r = self.http.get(f"/v2/endpoint/{NS}/chat", headers=AUTH)
        state = r.json()["status"]["state"] if r.status_code == 200 else None
        if state in ("running", "initializing", "pending", "updating"):
            return
        if state is not None:
            self.http.delete(f"/v2/endpoint/{NS}/chat", headers=AUTH)
        r = self.http.post(f"/v2/endpoint/{NS}", headers=AUTH, json=create_body())
        assert r.status_code == 202, r.text

    def assert_readable(self) -> None:
        """The store answers: listing, the endpoint, its feed, both provider routes."""
        r = self.http.get(f"/v2/endpoint/{NS}", headers=AUTH)
        assert r.status_code == 200, r.text
        names = [e["name"] for e in r.json()["items"]]
        for name in {"chat", *names[:3]} & set(names):
            g = self.http.get(f"/v2/endpoint/{NS}/{name}", headers=AUTH)
            assert g.status_code == 200, g.text
            m = self.http.get(f"/v2/endpoint/{NS}/{name}/open-metrics", headers=AUTH)
            assert m.status_code == 200, m.text
        assert self.http.get("/v2/provider").status_code == 200
        assert self.http.get(f"/v2/provider/{NS}", headers=AUTH).status_code == 200


@pytest.fixture(scope="module")
def emu() -> Iterator[Emu]:
    with Background() as srv:
        e = Emu(srv)
        yield e
        e.http.close()


def check(r: httpx.Response, *, allow_503: bool = False) -> None:
    """The response contract of every route."""
    assert r.headers.get("x-request-id"), (r.status_code, r.text[:200])
    if r.status_code >= 500:
        assert allow_503, (r.status_code, r.text[:500])
        assert r.status_code == 503, (r.status_code, r.text[:500])
    if r.status_code >= 400:
        assert r.headers["content-type"].startswith("application/json"), r.text[:200]
        body = r.json()
        assert isinstance(body, dict), body
        assert isinstance(body.get("error"), str), body
        assert body["error"].strip(), body


# -- strategies ---------------------------------------------------------------------------------

KNOWN_KEYS = sorted(
    {
        *create_body(),
        *create_body()["compute"],
        *create_body()["compute"]["scaling"],
        *create_body()["model"],
        "pendingRequests",
        "hardwareUsage",
        "huggingface",
        "custom",
        "vLLM",
        "url",
        "credentials",
        "username",
        "password",
        "tensorParallelSize",
        *(k for b in ADMIN_BODIES.values() for k in b),
        *(k for p in LOAD_PATTERNS for k in p),
    }
)
NON_FINITE = "__non_finite__"
keys = st.sampled_from(KNOWN_KEYS) | st.text(max_size=10)
leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([0, -1, 1, 2**31, 2**63, 2**64, 10**30]),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
    st.sampled_from(["", "x" * 300, "/health", "nvidia-l4", "gpu", "cpu", "aws", "running"]),
    st.just(NON_FINITE),
)
json_values = st.recursive(
    leaves,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(keys, inner, max_size=4),
    max_leaves=16,
)


def paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(node, dict):
        for k, v in node.items():
            out += paths(v, (*prefix, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += paths(v, (*prefix, i))
    return out


@st.composite
def mutated(draw: st.DrawFn, base: dict[str, Any]) -> Any:
    """`base` with one node replaced, dropped, or given an unknown key (sometimes twice)."""
    body: Any = json.loads(json.dumps(base))
    for _ in range(draw(st.integers(1, 2))):
        where = draw(st.sampled_from(paths(body)))
        op = draw(st.sampled_from(["replace", "drop", "add"]))
        if not where:
            if op == "replace":
                body = draw(json_values)
            continue
        parent: Any = body
        for k in where[:-1]:
            parent = parent[k]
        last = where[-1]
        if op == "replace":
            parent[last] = draw(json_values)
        elif op == "drop" and isinstance(parent, dict):
            del parent[last]
        elif isinstance(parent[last], dict):
            parent[last][draw(keys)] = draw(json_values)
    return body


def encode(value: Any, token: str) -> bytes:
    """JSON text, with each non-finite sentinel written as `token` (NaN, Infinity, 1e400...)."""
    return json.dumps(value).replace(json.dumps(NON_FINITE), token).encode()


non_finite = st.sampled_from(["NaN", "Infinity", "-Infinity", "1e400", "-1e999", "9" * 400])


@st.composite
def raw_bodies(draw: st.DrawFn, base: dict[str, Any]) -> bytes:
    """Any body bytes: mutated or arbitrary JSON (non-finite numbers spliced in), deep nesting,
    truncated JSON, binary, empty."""
    kind = draw(st.sampled_from(["mutated", "json", "deep", "truncated", "binary", "empty"]))
    if kind == "mutated":
        return encode(draw(mutated(base)), draw(non_finite))
    if kind == "json":
        return encode(draw(json_values), draw(non_finite))
    if kind == "deep":
        n = draw(st.integers(20, 20_000))
        opener, closer = draw(st.sampled_from([("[", "]"), ('{"a":', "}"), ('{"compute":', "}")]))
        return (opener * n + "1" + closer * n).encode()
    if kind == "truncated":
        text = json.dumps(base).encode()
        return text[: draw(st.integers(0, len(text) - 1))]
    if kind == "binary":
        return draw(st.binary(max_size=200))
    return b""


def body_kwargs(data: bytes, content_type: str | None = "application/json") -> dict[str, Any]:
    headers = {"Content-Type": content_type} if content_type else {}
    return {"content": data, "headers": headers}


segments = st.one_of(
    st.sampled_from(["chat", "ghost", "CHAT", "a" * 40, "-x", "x-", "..", "%00"]),
    st.text(min_size=1, max_size=24),
)


def seg(s: str) -> str:
    return urllib.parse.quote(s, safe="")


# -- management API -----------------------------------------------------------------------------


@FUZZ
@given(body=raw_bodies(create_body("new")), ctype=st.sampled_from(["application/json", None]))
def test_create_answers_every_body_with_4xx_json_or_success(emu, body, ctype):
    emu.ensure_world()
    kw = body_kwargs(body, ctype)
    r = emu.request("POST", f"/v2/endpoint/{NS}", headers={**AUTH, **kw.pop("headers")}, **kw)
    check(r)
    if r.status_code < 300:  # a valid mutation: created, and readable as such
        name = r.json()["name"]
        assert emu.request("DELETE", f"/v2/endpoint/{NS}/{seg(name)}", headers=AUTH).is_success
    emu.assert_readable()


@FUZZ
@given(body=raw_bodies(create_body()), ctype=st.sampled_from(["application/json", None]))
def test_update_answers_every_body_with_4xx_json_or_success(emu, body, ctype):
    emu.ensure_world()
    kw = body_kwargs(body, ctype)
    r = emu.request("PUT", f"/v2/endpoint/{NS}/chat", headers={**AUTH, **kw.pop("headers")}, **kw)
    check(r)
    emu.assert_readable()


@FUZZ
@given(
    method=st.sampled_from(["GET", "PUT", "DELETE", "POST", "PATCH"]),
    name=segments,
    action=st.sampled_from(["", "/pause", "/resume", "/scale-to-zero", "/open-metrics", "/x"]),
    body=st.none() | raw_bodies(create_body()),
)
def test_per_endpoint_routes_with_any_name_method_and_body(emu, method, name, action, body):
    emu.ensure_world()
    kw = {} if body is None else body_kwargs(body)
    headers = {**AUTH, **kw.pop("headers", {})}
    r = emu.request(method, f"/v2/endpoint/{NS}/{seg(name)}{action}", headers=headers, **kw)
    check(r)
    emu.assert_readable()


@FUZZ
@given(
    ns=segments,
    query=st.dictionaries(st.sampled_from(["tags", "page", "x", ""]), st.text(max_size=30)),
    route=st.sampled_from(["/v2/endpoint/{ns}", "/v2/provider/{ns}", "/v2/provider"]),
)
# found by this test: a trailing slash got Starlette's bare 307 (no X-Request-Id, no error body)
@example(ns="0/", query={}, route="/v2/endpoint/{ns}")
def test_listing_and_provider_with_any_namespace_and_query(emu, ns, query, route):
    r = emu.request("GET", route.format(ns=seg(ns)), headers=AUTH, params=query)
    check(r)
    if r.status_code == 200 and route == "/v2/endpoint/{ns}":
        assert isinstance(r.json()["items"], list)
    emu.assert_readable()


@FUZZ
@given(
    auth=st.one_of(
        st.none(),
        st.sampled_from(["Bearer", f"bearer {TOKEN}", f"Basic {TOKEN}", f"Bearer {TOKEN}x"]),
        # header values cannot start or end with whitespace (the client refuses to send them)
        st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=60).map(
            str.strip
        ),
    ),
    route=st.sampled_from(
        [
            ("GET", f"/v2/endpoint/{NS}"),
            ("POST", f"/v2/endpoint/{NS}"),
            ("PUT", f"/v2/endpoint/{NS}/chat"),
            ("POST", f"/v2/endpoint/{NS}/chat/pause"),
            ("DELETE", f"/v2/endpoint/{NS}/chat"),
            ("GET", f"/v2/provider/{NS}"),
        ]
    ),
)
def test_any_authorization_header_is_401_or_accepted(emu, auth, route):
    emu.ensure_world()
    headers = {} if auth is None else {"Authorization": auth}
    method, path = route
    r = emu.request(method, path, headers=headers, json={"tags": ["x"]})
    check(r)
    if auth != f"Bearer {TOKEN}" and auth != f"bearer {TOKEN}":
        assert r.status_code == 401, (auth, r.status_code)
    emu.assert_readable()


# -- inference plane ----------------------------------------------------------------------------


@FUZZ
@given(
    method=st.sampled_from(["GET", "POST"]),
    rest=st.sampled_from(["", "/health", "/healthz", "/v1/chat", "/../x"]) | st.text(max_size=12),
    hold=st.none()
    | st.sampled_from(["0", "0.5", "-1", "nan", "inf", "1e400", "3601", "abc", ""])
    | st.floats(0, 2).map(str),
    body=st.none() | raw_bodies(create_body()),
    target=st.sampled_from(["chat", "ghost"]),
)
def test_inference_plane_with_any_path_header_and_body(emu, method, rest, hold, body, target):
    emu.ensure_world()
    headers = {} if hold is None else {"X-Scale-Up-Timeout": hold}
    kw = {} if body is None else {"content": body}
    path = "/".join(seg(p) for p in rest.split("/"))
    r = emu.request(method, f"/inference/{NS}/{target}{path}", headers=headers, **kw)
    check(r, allow_503=True)
    emu.assert_readable()


# -- admin routes -------------------------------------------------------------------------------


@FUZZ
@given(
    route=st.sampled_from(sorted(ADMIN_BODIES)),
    data=st.data(),
)
def test_admin_routes_answer_every_body_with_4xx_json_or_success(emu, route, data):
    emu.ensure_world()
    base = ADMIN_BODIES[route]
    if route == "/load":
        base = {**base, "pattern": data.draw(st.sampled_from(LOAD_PATTERNS))}
    body = data.draw(raw_bodies(base))
    r = emu.request("POST", f"/_emulator{route}", **body_kwargs(body))
    check(r)
    if r.is_success:  # what was accepted must let the world step on (2+ clock seconds here)
        world_steps(emu)
    # undo what a valid body did, so later requests meet no injected fault and no heavy load
    emu.request("DELETE", "/_emulator/faults")
    emu.request("POST", "/_emulator/load", json={"endpoint": f"{NS}/chat", "pattern": None})
    emu.assert_readable()
    for path in ("/_emulator/state", "/_emulator/faults", "/_emulator/calls"):
        assert emu.request("GET", path).status_code == 200


def world_steps(emu: Emu) -> None:
    """Let the server's ticker step the world a few clock seconds (100x: 30 ms real is 3 s;
    a loaded machine only lets more pass), then the admin state answers 200 with finite rates
    (an admin route: an injected fault cannot answer it)."""
    time.sleep(0.03)
    r = emu.request("GET", "/_emulator/state")
    assert r.status_code == 200, r.text[:300]
    assert all(math.isfinite(e["load_rps"]) for e in r.json()["endpoints"].values()), r.text[:300]


@pytest.mark.parametrize(
    ("pattern", "field"),
    [
        ({"kind": "constant", "rps": None}, "pattern.rps"),
        ({"kind": "constant"}, "pattern.rps"),
        ({"kind": "diurnal", "base": None, "peak": 2.0}, "pattern.base"),
        ({"kind": "ramp", "start_rps": 1, "end_rps": None, "duration_s": 5}, "pattern.end_rps"),
        (
            {"kind": "burst", "base": 0, "peak": 1, "start_s": None, "duration_s": 5},
            "pattern.start_s",
        ),
    ],
)
def test_a_load_pattern_with_a_null_or_missing_number_is_422_naming_it(emu, pattern, field):
    """Found by the admin fuzz (once, on a loaded machine): a null rate got 200, and the world
    broke only when the next clock second began, usually after the test had reset the load."""
    emu.ensure_world()
    r = emu.request("POST", "/_emulator/load", json={"endpoint": f"{NS}/chat", "pattern": pattern})
    check(r)
    assert r.status_code == 422, r.text
    msg = r.json()["error"]
    assert field in msg, msg
    assert "\n" not in msg, msg
    world_steps(emu)
    emu.assert_readable()


@pytest.mark.parametrize(
    "pattern",
    [
        {"kind": "diurnal", "base": 0, "peak": 2, "period_s": 5e-324},
        {"kind": "diurnal", "base": 0, "peak": 2, "phase_s": 1.7e308},
        {"kind": "piecewise", "points": [[-1.7e308, 0], [1.7e308, 20]]},
    ],
)
def test_an_extreme_but_valid_load_pattern_keeps_the_world_stepping(emu, pattern):
    """Finite inputs whose rate overflowed: cos(inf) stopped the world (a bare 500 on every
    route), inf / inf gave a NaN rate the state route could not render."""
    emu.ensure_world()
    r = emu.request("POST", "/_emulator/load", json={"endpoint": f"{NS}/chat", "pattern": pattern})
    check(r)
    assert r.status_code == 200, r.text
    world_steps(emu)
    emu.assert_readable()
    emu.request("POST", "/_emulator/load", json={"endpoint": f"{NS}/chat", "pattern": None})


# -- contract cases: sizes ------------------------------------------------------------------------

BODY_ROUTES = [
    ("POST", f"/v2/endpoint/{NS}", AUTH),
    ("PUT", f"/v2/endpoint/{NS}/chat", AUTH),
    ("POST", "/_emulator/faults", {}),
    ("POST", "/_emulator/load", {}),
    ("POST", "/_emulator/quota", {}),
    ("POST", "/_emulator/force-state", {}),
]


@pytest.mark.parametrize(("method", "path", "headers"), BODY_ROUTES)
@pytest.mark.parametrize("streamed", [False, True])
def test_a_body_over_the_cap_is_413_declared_or_streamed(emu, method, path, headers, streamed):
    """Past the cap (`max_body_bytes` / `max_admin_body_bytes`, here 64 KiB) the answer is 413
    whether the size is declared up front or only seen while streaming (chunked)."""
    emu.ensure_world()
    blob = b'{"tags": ["' + b"x" * 70_000 + b'"]}'
    content: Any = (
        iter([blob[i : i + 8192] for i in range(0, len(blob), 8192)]) if streamed else blob
    )
    r = emu.request(
        method, path, headers={**headers, "Content-Type": "application/json"}, content=content
    )
    check(r)
    assert r.status_code == 413
    assert "bytes" in r.json()["error"]
    emu.assert_readable()


@pytest.mark.parametrize(("method", "path", "headers"), BODY_ROUTES)
@pytest.mark.parametrize(
    "text",
    [
        "NaN",
        '{"a": Infinity}',
        '{"a": 1e400}',
        '{"a": ' + "9" * 5000 + "}",
        "[" * 100_000,
        '{"a": "\\ud800"}',
        "\xff\xfe",
    ],
)
def test_hostile_json_on_every_body_route_is_4xx(emu, method, path, headers, text):
    emu.ensure_world()
    r = emu.request(
        method,
        path,
        headers={**headers, "Content-Type": "application/json"},
        content=text.encode("utf-8", "surrogatepass"),
    )
    check(r)
    assert 400 <= r.status_code < 500
    emu.assert_readable()
