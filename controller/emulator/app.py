"""The emulator's HTTP face: the `/v2` management API, the inference plane and admin routes.

Every request first advances the platform to `clock.now()` (lazy advance), so the world is always
current when it is looked at. `EmulatorConfig.advance_quantum_s` (default 0: always) lets a large
world skip that step for API calls arriving within the quantum of the last advance, so a 10,000-
endpoint scrape round does not step every endpoint once per request; the world is then at most that
many clock seconds stale (the server's ticker keeps it moving).

Management API (Bearer token required except `GET /v2/provider`, 401 without one; a token acts
only in the namespaces granted to it, or without a grant in those the platform knows, else 403
(`foreign_namespace_status`); errors are `{"error": msg}`; every response carries `X-Request-Id`):

    GET    /v2/endpoint/{ns}                      list           {"items": [...]}
    POST   /v2/endpoint/{ns}                      create         202 (config) + endpoint
    GET    /v2/endpoint/{ns}/{name}               get
    PUT    /v2/endpoint/{ns}/{name}               update (partial, nested)
    DELETE /v2/endpoint/{ns}/{name}               delete         200 {}
    POST   /v2/endpoint/{ns}/{name}/pause         pause
    POST   /v2/endpoint/{ns}/{name}/resume        resume         400 "already running" if running
    POST   /v2/endpoint/{ns}/{name}/scale-to-zero scale-to-zero
    GET    /v2/endpoint/{ns}/{name}/open-metrics  open-metrics   text/plain; version=0.0.4
    GET    /v2/provider/{ns}                      provider       prices + quota
    GET    /v2/provider                           provider       prices, no auth

Inference plane (`status.url` = `<base>/inference/{ns}/{name}`): `GET <url><healthRoute>` is 200
when a replica is ready, else 503; `GET <url><engine_metrics_path>` (`/metrics`) is one ready
replica's engine metrics, the replicas in turn as a load balancer would pick them, and needs a
known token (401 without), as a protected endpoint would (503 with no replica ready);
`POST <url>[/anything]` is one request (503 unless a replica is ready; `X-Scale-Up-Timeout: <s>`
holds it, waking a scaled-to-zero endpoint, up to that long in clock time); a served request waits
its simulated queueing + service time on the clock and returns 200 JSON.

Bodies are capped (`max_body_bytes`, 413), decoded strictly (`schema.decode_json`: no NaN or
Infinity, nesting at most `max_json_depth`) and validated by `schema`'s models: every malformed
request gets a 4xx `{"error": ...}` naming the field, and nothing malformed reaches the store.

The Hub's model API, `GET /api/models/{repo}[/revision/{rev}]` (route `hub-model`, no auth
unless the model is gated): the `safetensors` parameter counts right-sizing reads
(`controller.emulator.hub`; `Platform.hub`).

Admin routes under `/_emulator/` (no auth, loopback clients only): see `_Admin` below.
Fault `route` names: list, create, get, update, delete, pause, resume, scale-to-zero,
open-metrics, provider, inference, health, hub-model (`endpoint`: the repository), or `*`.
`delay_s` is **real** seconds (it exists to exercise client timeouts); a fault with
`status: null` only delays.
"""

from __future__ import annotations

import asyncio
import logging
import math
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any, TypeVar

from pydantic import BaseModel, Field
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from controller.clock import Clock
from controller.emulator.load import MAX_RPS, pattern_from_json
from controller.emulator.platform import Platform
from controller.emulator.schema import (
    EmulatorError,
    FaultBody,
    ForceStateBody,
    LoadBody,
    QuotaBody,
    decode_json,
    validate,
)
from controller.platform.models import EndpointState, UserRef

__all__ = ["DEFAULT_USER", "EmulatorConfig", "Fault", "create_app"]

log = logging.getLogger(__name__)

DEFAULT_USER = UserRef(id="u-governor", name="governor-bot")
_M = TypeVar("_M", bound=BaseModel)
_HOLD_ENDS = frozenset({EndpointState.PAUSED, EndpointState.FAILED, EndpointState.SCALED_TO_ZERO})
_LOOPBACK = frozenset({"127.0.0.1", "::1", "localhost", "testclient"})


@dataclass
class EmulatorConfig:
    """HTTP-level switches and limits (the platform's own knobs are in `PlatformConfig`); like
    those, each is a `governor emulator` setting, validated against the bounds annotated here."""

    # The feed's content type: the platform's is unknown (the reference: text/plain 0.0.4 or
    # application/openmetrics-text; version=1.0.0).
    metrics_content_type: Annotated[str, Field(min_length=1, max_length=200)] = (
        "text/plain; version=0.0.4; charset=utf-8"
    )
    create_status: Annotated[int, Field(ge=200, le=299)] = 202  # the 2022 spec's 202
    delete_status: Annotated[int, Field(ge=200, le=299)] = 200
    admin_loopback_only: bool = True
    inference_auth: bool = False  # require a known token on the inference plane
    # where each replica's engine serves its metrics under `status.url` (always token-protected)
    engine_metrics_path: Annotated[str, Field(pattern=r"^/[A-Za-z0-9_./-]{0,200}$")] = "/metrics"
    # clock seconds between readiness checks of held requests
    inference_poll_s: Annotated[float, Field(gt=0, le=60)] = 0.5
    # the longest X-Scale-Up-Timeout hold accepted
    max_scale_up_timeout_s: Annotated[float, Field(ge=0, le=86_400)] = 3600.0
    max_calls_recorded: Annotated[int, Field(ge=0, le=10_000_000)] = 10_000
    # API calls advance the world only if it is at least this many clock seconds behind (0: always).
    advance_quantum_s: Annotated[float, Field(ge=0, le=3600)] = 0.0
    # Limits on what a request may carry (a 413 or 400 naming the limit when exceeded).
    max_body_bytes: Annotated[int, Field(ge=1024, le=1 << 30)] = 1_048_576  # management API
    # /_emulator bodies (a replayed trace can be large)
    max_admin_body_bytes: Annotated[int, Field(ge=1024, le=1 << 30)] = 16_777_216
    max_json_depth: Annotated[int, Field(ge=4, le=128)] = 32  # nesting of objects and arrays
    max_faults: Annotated[int, Field(ge=1, le=1_000_000)] = 1000  # faults queued at once
    # the highest rate a `/_emulator/load` pattern may name (each arrival is simulated)
    max_load_rps: Annotated[float, Field(gt=0, le=1_000_000)] = MAX_RPS
    # Status for a token acting in a namespace it has no access to (the reference: 401 or 403;
    # the official client's comment says a listing of an org without access answers 401).
    foreign_namespace_status: Annotated[int, Field(ge=400, le=499)] = 403


@dataclass
class Fault:
    route: str
    endpoint: str | None = None
    status: int | None = 500
    count: int = 1  # -1: forever
    retry_after: float | None = None
    body: str | None = None
    delay_s: float | None = None
    content_type: str | None = None

    def matches(self, route: str, endpoint: str | None) -> bool:
        if self.route not in ("*", route):
            return False
        return self.endpoint is None or self.endpoint == endpoint


@dataclass
class _State:
    platform: Platform
    clock: Clock
    tokens: dict[str, UserRef]
    config: EmulatorConfig
    # token -> the namespaces it may use; a token not listed may use every namespace the
    # platform knows (`Platform.namespaces`)
    grants: dict[str, frozenset[str]] = field(default_factory=dict)
    faults: list[Fault] = field(default_factory=list)
    calls: list[dict[str, Any]] = field(default_factory=list)


def _error(status: int, message: str, headers: Mapping[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=dict(headers or {}))


async def _read_body(request: Request, limit: int) -> bytes:
    """The request body, refused with 413 past `limit` bytes (declared or streamed)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise EmulatorError(413, f"request body: larger than {limit} bytes (max_body_bytes)")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise EmulatorError(413, f"request body: larger than {limit} bytes (max_body_bytes)")
        chunks.append(chunk)
    return b"".join(chunks)


async def _json_body(request: Request, config: EmulatorConfig, *, admin: bool = False) -> Any:
    limit = config.max_admin_body_bytes if admin else config.max_body_bytes
    raw = await _read_body(request, limit)
    return decode_json(raw, max_depth=config.max_json_depth)


Handler = Callable[[Request, UserRef | None], Awaitable[Response]]


class _Api:
    def __init__(self, st: _State) -> None:
        self.st = st

    def _token(self, request: Request) -> tuple[str, UserRef]:
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise EmulatorError(401, "missing bearer token (Authorization: Bearer <token>)")
        user = self.st.tokens.get(token.strip())
        if user is None:
            raise EmulatorError(401, "invalid token")
        return token.strip(), user

    def _auth(self, request: Request) -> UserRef:
        """The caller's identity (401 without a known token) after checking it may act in the
        route's namespace (`foreign_namespace_status`, 403, if not)."""
        token, user = self._token(request)
        ns = request.path_params.get("ns")
        if ns is not None:
            granted = self.st.grants.get(token)
            allowed = granted if granted is not None else self.st.platform.namespaces()
            if ns not in allowed:
                raise EmulatorError(
                    self.st.config.foreign_namespace_status,
                    f"{user.name} has no access to namespace {ns}",
                )
        return user

    def _take_fault(self, route: str, endpoint: str | None) -> Fault | None:
        for f in self.st.faults:
            if f.matches(route, endpoint):
                if f.count > 0:
                    f.count -= 1
                    if f.count == 0:
                        self.st.faults.remove(f)
                return f
        return None

    def _record(
        self, request: Request, route: str, endpoint: str | None, status: int, rid: str, user: Any
    ) -> None:
        calls = self.st.calls
        calls.append(
            {
                "t": self.st.platform.now,
                "method": request.method,
                "path": request.url.path,
                "route": route,
                "endpoint": endpoint,
                "status": status,
                "request_id": rid,
                "user": user.name if isinstance(user, UserRef) else None,
            }
        )
        if len(calls) > self.st.config.max_calls_recorded:
            del calls[: len(calls) - self.st.config.max_calls_recorded]

    def wrap(
        self, route: str, handler: Handler, *, auth: bool = True, record: bool = True
    ) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint_fn(request: Request) -> Response:
            rid = uuid.uuid4().hex
            ns = request.path_params.get("ns")
            name = request.path_params.get("name")
            key = f"{ns}/{name}" if ns and name else None
            if route == "hub-model":  # faults and calls name the repository
                key = _hub_path(request.path_params.get("rest", ""))[0]
            user: UserRef | None = None
            try:
                # inside the try: a world that cannot step still answers in the API's shape
                now = self.st.clock.now()
                if now - self.st.platform.now >= self.st.config.advance_quantum_s:
                    self.st.platform.advance_to(now)
                if auth:
                    user = self._auth(request)
                fault = self._take_fault(route, key)
                resp: Response | None = None
                if fault is not None:
                    if fault.delay_s:
                        await asyncio.sleep(fault.delay_s)
                        self.st.platform.advance_to(self.st.clock.now())
                    if fault.status is not None:
                        resp = self._fault_response(fault)
                if resp is None:
                    resp = await handler(request, user)
            except EmulatorError as exc:
                resp = _error(exc.status, exc.message)
            except Exception as exc:  # a bug in the emulator: still answer in the API's shape
                log.exception("emulator handler failed")
                resp = _error(500, f"internal emulator error: {type(exc).__name__}")
            resp.headers["X-Request-Id"] = rid
            if record:
                self._record(request, route, key, resp.status_code, rid, user)
            return resp

        return endpoint_fn

    @staticmethod
    def _fault_response(f: Fault) -> Response:
        headers = {}
        if f.retry_after is not None:
            ra = f.retry_after
            headers["Retry-After"] = str(int(ra)) if float(ra).is_integer() else str(ra)
        status = int(f.status or 500)
        if f.body is not None:
            return Response(
                f.body,
                status_code=status,
                headers=headers,
                media_type=f.content_type or "text/plain; charset=utf-8",
            )
        return _error(status, f"injected fault (HTTP {status})", headers)

    # -- handlers -------------------------------------------------------------------------------

    async def list_(self, request: Request, user: UserRef | None) -> Response:
        items = self.st.platform.list(request.path_params["ns"])
        tag = request.query_params.get("tags")
        if tag:
            wanted = set(tag.split(","))
            items = [e for e in items if wanted & set(e.get("tags", []))]
        return JSONResponse({"items": items})

    async def create(self, request: Request, user: UserRef | None) -> Response:
        body = await _json_body(request, self.st.config)
        ep = self.st.platform.create(request.path_params["ns"], body, by=user)
        return JSONResponse(ep, status_code=self.st.config.create_status)

    async def get(self, request: Request, user: UserRef | None) -> Response:
        p = request.path_params
        return JSONResponse(self.st.platform.get(p["ns"], p["name"]))

    async def update(self, request: Request, user: UserRef | None) -> Response:
        p = request.path_params
        body = await _json_body(request, self.st.config)
        return JSONResponse(self.st.platform.update(p["ns"], p["name"], body, by=user))

    async def delete(self, request: Request, user: UserRef | None) -> Response:
        p = request.path_params
        self.st.platform.delete(p["ns"], p["name"], by=user)
        return JSONResponse({}, status_code=self.st.config.delete_status)

    async def pause(self, request: Request, user: UserRef | None) -> Response:
        p = request.path_params
        return JSONResponse(self.st.platform.pause(p["ns"], p["name"], by=user))

    async def resume(self, request: Request, user: UserRef | None) -> Response:
        p = request.path_params
        return JSONResponse(self.st.platform.resume(p["ns"], p["name"], by=user))

    async def scale_to_zero(self, request: Request, user: UserRef | None) -> Response:
        p = request.path_params
        return JSONResponse(self.st.platform.scale_to_zero(p["ns"], p["name"], by=user))

    async def metrics(self, request: Request, user: UserRef | None) -> Response:
        p = request.path_params
        # An engine rendered by prometheus_client answers OpenMetrics when asked, as it would.
        om = "application/openmetrics-text" in request.headers.get("accept", "")
        text, media = self.st.platform.render_feed(p["ns"], p["name"], openmetrics=om)
        return Response(text, media_type=media or self.st.config.metrics_content_type)

    async def provider(self, request: Request, user: UserRef | None) -> Response:
        return JSONResponse(self.st.platform.provider(request.path_params.get("ns")))

    # -- inference plane ------------------------------------------------------------------------

    async def hub_model(self, request: Request, user: UserRef | None) -> Response:
        """The Hub's model API: what right-sizing reads (`controller.emulator.hub`)."""
        repo, rev = _hub_path(request.path_params.get("rest", ""))
        model = self.st.platform.hub.lookup(repo, rev)
        if model is None:
            raise EmulatorError(404, f"Repository Not Found for url: /api/models/{repo}")
        if model.gated:
            header = request.headers.get("authorization", "")
            scheme, _, token = header.partition(" ")
            if scheme.lower() != "bearer" or token.strip() not in self.st.tokens:
                raise EmulatorError(401, f"Access to model {repo} is restricted (gated)")
        return JSONResponse(model.info(repo, rev))

    def _hold_timeout(self, raw: str) -> float:
        try:
            timeout = float(raw)
        except ValueError:
            timeout = math.nan
        limit = self.st.config.max_scale_up_timeout_s
        if not 0 <= timeout <= limit:
            raise EmulatorError(400, f"X-Scale-Up-Timeout: expected seconds from 0 to {limit:g}")
        return timeout

    async def _hold(self, ns: str, name: str, hold_s: float) -> None:
        """Hold a request at the proxy until a replica is ready or `hold_s` clock seconds pass.
        The held request wakes a scaled-to-zero endpoint and keeps it from idling out; the hold
        ends early if the endpoint is paused, fails or is scaled to zero (explicitly) meanwhile,
        and the request is then answered 503."""
        plat, clock = self.st.platform, self.st.clock
        plat.hold(ns, name)
        try:
            deadline = clock.now() + hold_s
            while not plat.is_ready(ns, name) and clock.now() < deadline:
                await clock.sleep(min(self.st.config.inference_poll_s, deadline - clock.now()))
                plat.advance_to(clock.now())
                if plat.get(ns, name)["status"]["state"] in _HOLD_ENDS:
                    return
        finally:
            plat.release(ns, name)

    def _engine_metrics(self, request: Request, ns: str, name: str) -> Response:
        self._token(request)  # the engine's metrics are behind the endpoint's auth
        om = "application/openmetrics-text" in request.headers.get("accept", "")
        got = self.st.platform.render_replica_engine(ns, name, openmetrics=om)
        if got is None:
            return _error(503, "no replica ready")
        text, media = got
        return Response(text, media_type=media)

    async def inference(self, request: Request, user: UserRef | None) -> Response:
        st = self.st
        plat, clock = st.platform, st.clock
        ns, name = request.path_params["ns"], request.path_params["name"]
        if st.config.inference_auth:
            self._token(request)
        ep = plat.get(ns, name)  # 404 if unknown
        if request.method == "GET":
            rest = request.path_params.get("rest", "")
            if rest == st.config.engine_metrics_path:
                return self._engine_metrics(request, ns, name)
            if rest == (ep.get("healthRoute") or "/health"):
                if plat.is_ready(ns, name):
                    return JSONResponse({"status": "ok"})
                return _error(503, f"endpoint is {ep['status']['state']}")
            raise EmulatorError(404, "not found (GET serves only the health route)")
        hold = request.headers.get("x-scale-up-timeout")
        held = False
        if hold is not None and not plat.is_ready(ns, name):
            timeout = self._hold_timeout(hold)
            if ep["status"]["state"] not in (EndpointState.PAUSED, EndpointState.FAILED):
                held = True
                await self._hold(ns, name, timeout)
        ticket = plat.submit_request(ns, name, at=clock.now())
        while ticket.status in ("queued", "running"):
            now = clock.now()
            wait = (
                ticket.finish - now
                if ticket.finish is not None and ticket.finish > now
                else st.config.inference_poll_s
            )
            await clock.sleep(max(wait, 1e-3))
            plat.advance_to(clock.now())
        if ticket.status != "done":
            return _error(503, f"Service Unavailable: {ticket.reason or 'endpoint not ready'}")
        return JSONResponse(
            {
                "generated_text": "ok",
                "replica_id": ticket.replica_id,
                "latency_s": ticket.latency,
                "held": held,
            }
        )


class _Admin:
    """`/_emulator/*`:

    POST   /_emulator/faults       {"route", "endpoint"?, "status"?, "count"?, "retry_after"?,
                                    "body"?, "delay_s"?, "content_type"?}  -> {"faults": [...]}
    GET    /_emulator/faults       current faults
    DELETE /_emulator/faults       clear faults
    GET    /_emulator/state        platform snapshot
    POST   /_emulator/load         {"endpoint": "ns/name", "pattern": {...} | null}
    GET    /_emulator/calls        [{"t", "method", "path", "route", "endpoint", "status",
                                     "request_id", "user"}, ...]  (management API calls only)
    DELETE /_emulator/calls        clear the record
    POST   /_emulator/quota        {"namespace", "vendor", "accelerator"?, "region"?,
                                    "instance_type"?, "max_accelerators"}: the limit of every
                                    quota group matched (accelerator or instance_type required)
    POST   /_emulator/force-state  {"endpoint": "ns/name", "state": "failed" | ...}
    """

    def __init__(self, st: _State) -> None:
        self.st = st

    def wrap(
        self, handler: Callable[[Request], Awaitable[Response]]
    ) -> Callable[[Request], Awaitable[Response]]:
        async def fn(request: Request) -> Response:
            rid = uuid.uuid4().hex
            host = request.client.host if request.client else ""
            if self.st.config.admin_loopback_only and host not in _LOOPBACK:
                resp: Response = _error(403, "admin routes are loopback-only")
            else:
                try:
                    self.st.platform.advance_to(self.st.clock.now())
                    resp = await handler(request)
                except EmulatorError as exc:
                    resp = _error(exc.status, exc.message)
                except Exception as exc:  # a bug in the emulator: still answer in JSON
                    log.exception("emulator admin handler failed")
                    resp = _error(500, f"internal emulator error: {type(exc).__name__}")
            resp.headers["X-Request-Id"] = rid
            return resp

        return fn

    async def _body(self, request: Request, model: type[_M]) -> _M:
        data = await _json_body(request, self.st.config, admin=True)
        return validate(model, data)  # type: ignore[return-value]

    async def add_fault(self, request: Request) -> Response:
        body = await self._body(request, FaultBody)
        if len(self.st.faults) >= self.st.config.max_faults:
            raise EmulatorError(
                400, f"faults: {self.st.config.max_faults} already queued (max_faults)"
            )
        self.st.faults.append(Fault(**body.model_dump()))
        return JSONResponse({"faults": [f.__dict__ for f in self.st.faults]}, status_code=201)

    async def list_faults(self, request: Request) -> Response:
        return JSONResponse({"faults": [f.__dict__ for f in self.st.faults]})

    async def clear_faults(self, request: Request) -> Response:
        self.st.faults.clear()
        return JSONResponse({"faults": []})

    async def state(self, request: Request) -> Response:
        return JSONResponse(self.st.platform.snapshot())

    async def load(self, request: Request) -> Response:
        body = await self._body(request, LoadBody)
        ns, name = body.endpoint.split("/")
        try:
            pattern = (
                None
                if body.pattern is None
                else pattern_from_json(body.pattern, max_rps=self.st.config.max_load_rps)
            )
        except ValueError as exc:
            raise EmulatorError(422, str(exc)) from None
        self.st.platform.set_load(ns, name, pattern)
        return JSONResponse({"endpoint": body.endpoint, "pattern": body.pattern})

    async def calls(self, request: Request) -> Response:
        return JSONResponse(self.st.calls)

    async def clear_calls(self, request: Request) -> Response:
        self.st.calls.clear()
        return JSONResponse([])

    async def quota(self, request: Request) -> Response:
        body = await self._body(request, QuotaBody)
        n = self.st.platform.set_quota(
            body.namespace,
            body.vendor,
            body.accelerator,
            body.max_accelerators,
            region=body.region,
            instance_type=body.instance_type,
        )
        return JSONResponse({**body.model_dump(), "max": body.max_accelerators, "groups": n})

    async def force_state(self, request: Request) -> Response:
        body = await self._body(request, ForceStateBody)
        ns, name = body.endpoint.split("/")
        self.st.platform.force_state(ns, name, EndpointState(body.state))
        return JSONResponse(self.st.platform.get(ns, name))


def _hub_path(rest: str) -> tuple[str, str | None]:
    """`{repo}` or `{repo}/revision/{rev}` of a model API path -> (repo, rev)."""
    repo, sep, rev = rest.partition("/revision/")
    return repo, (rev or None) if sep else None


def create_app(
    platform: Platform,
    *,
    clock: Clock,
    token: str | None = None,
    tokens: Mapping[str, UserRef] | None = None,
    config: EmulatorConfig | None = None,
    namespaces: Mapping[str, Iterable[str]] | None = None,
) -> Starlette:
    """The ASGI app. `token` is the main token (identity `DEFAULT_USER`, "governor-bot");
    `tokens` maps further tokens to identities (e.g. a human's token for "manual" changes).
    `namespaces` grants tokens their namespaces (a user's own and its organisations'); a token
    without a grant may act in every namespace the platform knows and in no other."""
    all_tokens: dict[str, UserRef] = {}
    if token:
        all_tokens[token] = DEFAULT_USER
    all_tokens.update(tokens or {})
    grants = {t: frozenset(ns) for t, ns in (namespaces or {}).items()}
    st = _State(
        platform=platform,
        clock=clock,
        tokens=all_tokens,
        config=config or EmulatorConfig(),
        grants=grants,
    )
    api = _Api(st)
    admin = _Admin(st)
    base = "/v2/endpoint/{ns}"
    one = base + "/{name}"
    inf = "/inference/{ns}/{name}{rest:path}"
    routes = [
        Route(base, api.wrap("list", api.list_), methods=["GET"]),
        Route(base, api.wrap("create", api.create), methods=["POST"]),
        Route(one, api.wrap("get", api.get), methods=["GET"]),
        Route(one, api.wrap("update", api.update), methods=["PUT"]),
        Route(one, api.wrap("delete", api.delete), methods=["DELETE"]),
        Route(one + "/pause", api.wrap("pause", api.pause), methods=["POST"]),
        Route(one + "/resume", api.wrap("resume", api.resume), methods=["POST"]),
        Route(
            one + "/scale-to-zero", api.wrap("scale-to-zero", api.scale_to_zero), methods=["POST"]
        ),
        Route(one + "/open-metrics", api.wrap("open-metrics", api.metrics), methods=["GET"]),
        Route("/v2/provider/{ns}", api.wrap("provider", api.provider), methods=["GET"]),
        Route("/v2/provider", api.wrap("provider", api.provider, auth=False), methods=["GET"]),
        Route(
            inf,
            api.wrap("inference", api.inference, auth=False, record=False),
            methods=["POST"],
        ),
        Route(inf, api.wrap("health", api.inference, auth=False, record=False), methods=["GET"]),
        Route(
            "/api/models/{rest:path}",
            api.wrap("hub-model", api.hub_model, auth=False),
            methods=["GET"],
        ),
        Route("/_emulator/faults", admin.wrap(admin.add_fault), methods=["POST"]),
        Route("/_emulator/faults", admin.wrap(admin.list_faults), methods=["GET"]),
        Route("/_emulator/faults", admin.wrap(admin.clear_faults), methods=["DELETE"]),
        Route("/_emulator/state", admin.wrap(admin.state), methods=["GET"]),
        Route("/_emulator/load", admin.wrap(admin.load), methods=["POST"]),
        Route("/_emulator/calls", admin.wrap(admin.calls), methods=["GET"]),
        Route("/_emulator/calls", admin.wrap(admin.clear_calls), methods=["DELETE"]),
        Route("/_emulator/quota", admin.wrap(admin.quota), methods=["POST"]),
        Route("/_emulator/force-state", admin.wrap(admin.force_state), methods=["POST"]),
    ]

    async def http_error(request: Request, exc: Exception) -> Response:
        status = exc.status_code if isinstance(exc, HTTPException) else 500
        detail = exc.detail if isinstance(exc, HTTPException) else "internal error"
        resp = _error(status, str(detail))
        resp.headers["X-Request-Id"] = uuid.uuid4().hex
        return resp

    app = Starlette(routes=routes, exception_handlers={HTTPException: http_error})
    # No 307 to the slash-less path: a trailing slash is an unknown route (404, with its
    # X-Request-Id and {"error": msg} body like every other answer).
    app.router.redirect_slashes = False
    app.state.emulator = st
    return app
