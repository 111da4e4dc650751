"""The emulator's HTTP face: the `/v2` management API, the inference plane and admin routes.

Every request first advances the platform to `clock.now()` (lazy advance), so the world is always
current when it is looked at. `EmulatorConfig.advance_quantum_s` (default 0: always) lets a large
world skip that step for API calls arriving within the quantum of the last advance, so a 10,000-
endpoint scrape round does not step every endpoint once per request; the world is then at most that
many clock seconds stale (the server's ticker keeps it moving).

Management API (Bearer token required except `GET /v2/provider`; errors are `{"error": msg}`;
every response carries `X-Request-Id`):

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
when a replica is ready, else 503; `POST <url>[/anything]` is one request (503 unless a replica is
ready; `X-Scale-Up-Timeout: <s>` holds it, waking a scaled-to-zero endpoint, up to that long in
clock time); a served request waits its simulated queueing + service time on the clock and returns
200 JSON.

Admin routes under `/_emulator/` (no auth, loopback clients only): see `_Admin` below.
Fault `route` names: list, create, get, update, delete, pause, resume, scale-to-zero,
open-metrics, provider, inference, health, or `*`. `delay_s` is **real** seconds (it exists to
exercise client timeouts); a fault with `status: null` only delays.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from controller.clock import Clock
from controller.emulator.load import pattern_from_json
from controller.emulator.platform import EmulatorError, Platform
from controller.platform.models import EndpointState, UserRef

__all__ = ["DEFAULT_USER", "EmulatorConfig", "Fault", "create_app"]

log = logging.getLogger(__name__)

DEFAULT_USER = UserRef(id="u-governor", name="governor-bot")
FAULT_ROUTES = frozenset(
    {
        "list",
        "create",
        "get",
        "update",
        "delete",
        "pause",
        "resume",
        "scale-to-zero",
        "open-metrics",
        "provider",
        "inference",
        "health",
        "*",
    }
)
_HOLD_ENDS = frozenset({EndpointState.PAUSED, EndpointState.FAILED, EndpointState.SCALED_TO_ZERO})
_LOOPBACK = frozenset({"127.0.0.1", "::1", "localhost", "testclient"})


@dataclass
class EmulatorConfig:
    """HTTP-level switches (the platform's own knobs are in `PlatformConfig`)."""

    metrics_content_type: str = "text/plain; version=0.0.4; charset=utf-8"
    create_status: int = 202
    delete_status: int = 200
    admin_loopback_only: bool = True
    inference_auth: bool = False  # require a known token on the inference plane
    inference_poll_s: float = 0.5  # clock seconds between readiness checks of held requests
    max_scale_up_timeout_s: float = 3600.0  # the longest X-Scale-Up-Timeout hold accepted
    max_calls_recorded: int = 10_000
    # API calls advance the world only if it is at least this many clock seconds behind (0: always).
    advance_quantum_s: float = 0.0


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
    faults: list[Fault] = field(default_factory=list)
    calls: list[dict[str, Any]] = field(default_factory=list)


def _error(status: int, message: str, headers: Mapping[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=dict(headers or {}))


async def _json_body(request: Request) -> Any:
    raw = await request.body()
    if not raw:
        raise EmulatorError(400, "request body: expected a JSON object, got an empty body")
    try:
        return json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise EmulatorError(400, f"request body: invalid JSON ({exc})") from exc


Handler = Callable[[Request, UserRef | None], Awaitable[Response]]


class _Api:
    def __init__(self, st: _State) -> None:
        self.st = st

    def _auth(self, request: Request) -> UserRef:
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise EmulatorError(401, "missing bearer token (Authorization: Bearer <token>)")
        user = self.st.tokens.get(token.strip())
        if user is None:
            raise EmulatorError(401, "invalid token")
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
            now = self.st.clock.now()
            if now - self.st.platform.now >= self.st.config.advance_quantum_s:
                self.st.platform.advance_to(now)
            ns = request.path_params.get("ns")
            name = request.path_params.get("name")
            key = f"{ns}/{name}" if ns and name else None
            user: UserRef | None = None
            try:
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
        body = await _json_body(request)
        ep = self.st.platform.create(request.path_params["ns"], body, by=user)
        return JSONResponse(ep, status_code=self.st.config.create_status)

    async def get(self, request: Request, user: UserRef | None) -> Response:
        p = request.path_params
        return JSONResponse(self.st.platform.get(p["ns"], p["name"]))

    async def update(self, request: Request, user: UserRef | None) -> Response:
        p = request.path_params
        body = await _json_body(request)
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
        text = self.st.platform.render_metrics(p["ns"], p["name"])
        return Response(text, media_type=self.st.config.metrics_content_type)

    async def provider(self, request: Request, user: UserRef | None) -> Response:
        return JSONResponse(self.st.platform.provider(request.path_params.get("ns")))

    # -- inference plane ------------------------------------------------------------------------

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

    async def inference(self, request: Request, user: UserRef | None) -> Response:
        st = self.st
        plat, clock = st.platform, st.clock
        ns, name = request.path_params["ns"], request.path_params["name"]
        if st.config.inference_auth:
            self._auth(request)
        ep = plat.get(ns, name)  # 404 if unknown
        if request.method == "GET":
            if request.path_params.get("rest", "") == (ep.get("healthRoute") or "/health"):
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
    POST   /_emulator/quota        {"namespace", "vendor", "accelerator", "max_accelerators"}
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
                self.st.platform.advance_to(self.st.clock.now())
                try:
                    resp = await handler(request)
                except EmulatorError as exc:
                    resp = _error(exc.status, exc.message)
            resp.headers["X-Request-Id"] = rid
            return resp

        return fn

    @staticmethod
    def _split(key: Any) -> tuple[str, str]:
        if not isinstance(key, str) or key.count("/") != 1:
            raise EmulatorError(422, "endpoint: expected 'namespace/name'")
        ns, name = key.split("/")
        return ns, name

    async def add_fault(self, request: Request) -> Response:
        body = await _json_body(request)
        if not isinstance(body, dict):
            raise EmulatorError(422, "body: expected an object")
        allowed = set(Fault.__dataclass_fields__)
        unknown = sorted(set(body) - allowed)
        if unknown:
            raise EmulatorError(422, f"{unknown[0]}: unknown field")
        if body.get("route") not in FAULT_ROUTES:
            raise EmulatorError(422, f"route: expected one of {sorted(FAULT_ROUTES)}")
        try:
            fault = Fault(**body)
        except TypeError as exc:
            raise EmulatorError(422, f"fault: {exc}") from exc
        for k in ("status", "count"):
            v = getattr(fault, k)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int)):
                raise EmulatorError(422, f"{k}: expected an integer")
        if fault.count == 0:
            raise EmulatorError(422, "count: expected a positive integer or -1")
        self.st.faults.append(fault)
        return JSONResponse({"faults": [f.__dict__ for f in self.st.faults]}, status_code=201)

    async def list_faults(self, request: Request) -> Response:
        return JSONResponse({"faults": [f.__dict__ for f in self.st.faults]})

    async def clear_faults(self, request: Request) -> Response:
        self.st.faults.clear()
        return JSONResponse({"faults": []})

    async def state(self, request: Request) -> Response:
        return JSONResponse(self.st.platform.snapshot())

    async def load(self, request: Request) -> Response:
        body = await _json_body(request)
        if not isinstance(body, dict):
            raise EmulatorError(422, "body: expected an object")
        ns, name = self._split(body.get("endpoint"))
        raw = body.get("pattern")
        try:
            pattern = None if raw is None else pattern_from_json(raw)
        except ValueError as exc:
            raise EmulatorError(422, str(exc)) from exc
        self.st.platform.set_load(ns, name, pattern)
        return JSONResponse({"endpoint": f"{ns}/{name}", "pattern": raw})

    async def calls(self, request: Request) -> Response:
        return JSONResponse(self.st.calls)

    async def clear_calls(self, request: Request) -> Response:
        self.st.calls.clear()
        return JSONResponse([])

    async def quota(self, request: Request) -> Response:
        body = await _json_body(request)
        try:
            ns, vendor = str(body["namespace"]), str(body["vendor"])
            acc, mx = str(body["accelerator"]), int(body["max_accelerators"])
        except (KeyError, TypeError, ValueError) as exc:
            raise EmulatorError(
                422, "expected namespace, vendor, accelerator, max_accelerators"
            ) from exc
        self.st.platform.set_quota(ns, vendor, acc, mx)
        return JSONResponse({"namespace": ns, "vendor": vendor, "accelerator": acc, "max": mx})

    async def force_state(self, request: Request) -> Response:
        body = await _json_body(request)
        if not isinstance(body, dict):
            raise EmulatorError(422, "body: expected an object")
        ns, name = self._split(body.get("endpoint"))
        try:
            state = EndpointState(body.get("state"))
        except ValueError as exc:
            raise EmulatorError(422, "state: unknown endpoint state") from exc
        self.st.platform.force_state(ns, name, state)
        return JSONResponse(self.st.platform.get(ns, name))


def create_app(
    platform: Platform,
    *,
    clock: Clock,
    token: str | None = None,
    tokens: Mapping[str, UserRef] | None = None,
    config: EmulatorConfig | None = None,
) -> Starlette:
    """The ASGI app. `token` is the main token (identity `DEFAULT_USER`, "governor-bot");
    `tokens` maps further tokens to identities (e.g. a human's token for "manual" changes)."""
    all_tokens: dict[str, UserRef] = {}
    if token:
        all_tokens[token] = DEFAULT_USER
    all_tokens.update(tokens or {})
    st = _State(
        platform=platform, clock=clock, tokens=all_tokens, config=config or EmulatorConfig()
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
    app.state.emulator = st
    return app
