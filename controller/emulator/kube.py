"""A stand-in for the slice of the Kubernetes API Governor uses: `coordination.k8s.io/v1` Leases.

No kube-apiserver can be installed from the package registries this project uses, so leader
election is tested against this. It keeps the API server's rules that the election relies on:

- objects carry a `metadata.resourceVersion` that changes on every write;
- a PUT whose `resourceVersion` is not the current one is refused with 409 Conflict (a `Status`
  with reason `Conflict`), so of two replicas racing for one Lease exactly one wins;
- a POST of a name that exists is 409 `AlreadyExists`; a GET of a missing one is 404 `NotFound`;
- a PUT without `resourceVersion` is an unconditional update (as for Leases on a real server);
- Bearer tokens are checked (401 `Unauthorized`); bodies are JSON objects of kind Lease.

Expiry is not the server's business in Kubernetes either: a Lease never expires on the server,
replicas judge it from `renewTime`/`leaseDurationSeconds` and how long it stayed unchanged.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import uuid
from datetime import UTC, datetime
from types import TracebackType
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from controller.serving import LoopServer

__all__ = ["LeaseApi", "LeaseServer"]

_PREFIX = "/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases"


def _status(code: int, reason: str, message: str) -> JSONResponse:
    body = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }
    return JSONResponse(body, status_code=code)


class LeaseApi:
    """The Lease store and its HTTP routes; `writes` counts accepted writes, `conflicts` 409s.

    `delay_s` holds every answer that long (a slow or distant API server)."""

    def __init__(self, tokens: set[str] | None = None, *, delay_s: float = 0.0) -> None:
        self.tokens = tokens
        self.delay_s = delay_s
        self.leases: dict[tuple[str, str], dict[str, Any]] = {}
        self._rv = itertools.count(1000)
        self.writes = 0
        self.conflicts = 0
        self.app = Starlette(
            routes=[
                Route(_PREFIX, self._collection, methods=["GET", "POST"]),
                Route(_PREFIX + "/{name}", self._item, methods=["GET", "PUT", "DELETE"]),
            ]
        )

    def _authorized(self, request: Request) -> bool:
        if self.tokens is None:
            return True
        auth = request.headers.get("authorization", "")
        return auth.startswith("Bearer ") and auth[7:] in self.tokens

    async def _body(self, request: Request) -> dict[str, Any] | JSONResponse:
        try:
            body = json.loads(await request.body())
        except (ValueError, UnicodeDecodeError):
            return _status(400, "BadRequest", "the body is not JSON")
        if not isinstance(body, dict) or body.get("kind") != "Lease":
            return _status(400, "BadRequest", "the body must be a Lease object")
        spec = body.get("spec")
        if spec is not None and not isinstance(spec, dict):
            return _status(422, "Invalid", "spec must be an object")
        dur = (spec or {}).get("leaseDurationSeconds")
        if dur is not None and (not isinstance(dur, int) or dur <= 0):
            return _status(422, "Invalid", "spec.leaseDurationSeconds: must be greater than 0")
        return body

    def _stamp(self, body: dict[str, Any], ns: str, name: str, prev: dict[str, Any] | None) -> None:
        meta = dict(body.get("metadata") or {})
        meta["name"], meta["namespace"] = name, ns
        meta["resourceVersion"] = str(next(self._rv))
        meta["uid"] = (prev or {}).get("metadata", {}).get("uid") or str(uuid.uuid4())
        meta["creationTimestamp"] = (prev or {}).get("metadata", {}).get(
            "creationTimestamp"
        ) or datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        body["metadata"] = meta
        body["apiVersion"] = "coordination.k8s.io/v1"
        self.leases[(ns, name)] = body
        self.writes += 1

    async def _collection(self, request: Request) -> JSONResponse:
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        if not self._authorized(request):
            return _status(401, "Unauthorized", "Unauthorized")
        ns = request.path_params["namespace"]
        if request.method == "GET":
            items = [v for (n, _), v in self.leases.items() if n == ns]
            return JSONResponse(
                {"kind": "LeaseList", "apiVersion": "coordination.k8s.io/v1", "items": items}
            )
        body = await self._body(request)
        if isinstance(body, JSONResponse):
            return body
        name = (body.get("metadata") or {}).get("name")
        if not name:
            return _status(422, "Invalid", "metadata.name: Required value")
        if (ns, name) in self.leases:
            self.conflicts += 1
            return _status(
                409, "AlreadyExists", f'leases.coordination.k8s.io "{name}" already exists'
            )
        self._stamp(body, ns, name, None)
        return JSONResponse(body, status_code=201)

    async def _item(self, request: Request) -> JSONResponse:
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        if not self._authorized(request):
            return _status(401, "Unauthorized", "Unauthorized")
        ns, name = request.path_params["namespace"], request.path_params["name"]
        cur = self.leases.get((ns, name))
        if request.method == "GET":
            if cur is None:
                return _status(404, "NotFound", f'leases.coordination.k8s.io "{name}" not found')
            return JSONResponse(cur)
        if request.method == "DELETE":
            if cur is None:
                return _status(404, "NotFound", f'leases.coordination.k8s.io "{name}" not found')
            del self.leases[(ns, name)]
            return JSONResponse({"kind": "Status", "apiVersion": "v1", "status": "Success"})
        body = await self._body(request)
        if isinstance(body, JSONResponse):
            return body
        if cur is None:
            return _status(404, "NotFound", f'leases.coordination.k8s.io "{name}" not found')
        rv = (body.get("metadata") or {}).get("resourceVersion")
        if rv and rv != cur["metadata"]["resourceVersion"]:
            self.conflicts += 1
            return _status(
                409,
                "Conflict",
                f'Operation cannot be fulfilled on leases.coordination.k8s.io "{name}": the '
                "object has been modified; please apply your changes to the latest version and "
                "try again",
            )
        self._stamp(body, ns, name, cur)
        return JSONResponse(body)


class LeaseServer:
    """`LeaseApi` under uvicorn on loopback, inside the current event loop."""

    def __init__(
        self, api: LeaseApi | None = None, *, host: str = "127.0.0.1", port: int = 0
    ) -> None:
        self.api = api or LeaseApi()
        self.host, self.port = host, port
        self._http: LoopServer | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def start(self) -> None:
        self._http = LoopServer(self.api.app, host=self.host, port=self.port, what="lease API")
        await self._http.start()
        self.port = self._http.port

    async def stop(self) -> None:
        if self._http is not None:
            await self._http.stop()

    async def __aenter__(self) -> LeaseServer:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()
