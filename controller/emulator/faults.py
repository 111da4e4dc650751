"""A fault-injecting HTTP proxy to put between Governor and the emulator (or any API).

It speaks plain HTTP/1.1 on loopback itself, so it can do what a well-behaved server never does:
trickle a body a few bytes at a time, drop the connection after the upstream has applied a write
(a lost response), hold a response until told to let it go, or rewrite what the API says
(`targetReplica: 1000`, `updatedAt` in 2099). Requests that match no fault are forwarded as they
are. Every fault applied is counted (`injected`) and logged (`events`).

    proxy = FaultProxy(emulator.root_url)
    await proxy.start()                       # Governor's api.base_url: proxy.url + "/v2"
    proxy.add(Fault("status", path=r"/v2/endpoint/[^/]+$", status=401))
    proxy.add(Fault("slow_body", path="open-metrics", chunk_bytes=16, chunk_interval_s=2))
    proxy.add(Fault("mutate", path="/v2/endpoint/", endpoint="chat",
                    set={"status.targetReplica": 1000}, duration_s=40))
    proxy.add(Fault("body", path="chat/open-metrics", payload=gzip_bomb,
                    headers=[("content-encoding", "gzip")]))
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import re
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import httpx

__all__ = ["Fault", "FaultKind", "FaultProxy"]

FaultKind = Literal[
    "status",  # answer `status` (and `retry_after`) without forwarding
    "disconnect",  # close the connection without an answer, without forwarding (API down)
    "delay",  # wait `delay_s`, then forward
    "slow_body",  # forward, then send the body `chunk_bytes` every `chunk_interval_s`
    "mutate",  # forward, then set `set` (dotted paths) in each endpoint object of the JSON
    "lose_response",  # forward (the write happens), then drop the connection
    "hold_response",  # forward, then keep the answer until `release()` (or drop it)
    "stale_body",  # serve the body first seen for this path since the fault began
    "garbage",  # forward, then replace the body with `body`
    "stamp",  # forward, then give every sample line of a metrics body a timestamp `age_s` old
    "body",  # answer 200 with `payload` (bytes) and `headers`, without forwarding; `chunked`
    # sends it without a Content-Length, `chunk_bytes` at a time
]

_REASONS = {
    200: "OK",
    201: "Created",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
}
_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "transfer-encoding",
        "content-length",
        "host",
        "content-encoding",
        "upgrade",
        "proxy-connection",
        "te",
        "trailer",
    }
)


@dataclass
class Fault:
    kind: FaultKind
    path: str = ""  # regex searched in the request path
    method: str | None = None  # None: any method
    endpoint: str | None = None  # mutate only the endpoint object of this name
    count: int | None = None  # apply at most this many times (None: while active)
    duration_s: float | None = None  # active for this long after it was added
    probability: float = 1.0
    status: int = 503
    retry_after: float | None = None
    body: str = ""
    payload: bytes = b""
    headers: list[tuple[str, str]] = field(default_factory=list)
    chunked: bool = False
    delay_s: float = 0.0
    chunk_bytes: int = 64
    chunk_interval_s: float = 2.0
    age_s: float = 3600.0
    set: dict[str, Any] = field(default_factory=dict)
    # Called with (method, path) after the upstream answered a request this fault caught.
    on_forwarded: Callable[[str, str], None] | None = None
    applied: int = 0
    applied_at: list[float] = field(default_factory=list)  # wall times (time.time())
    added_at: float = 0.0
    _stale: dict[str, bytes] = field(default_factory=dict)

    def active(self, now: float) -> bool:
        if self.count is not None and self.applied >= self.count:
            return False
        return self.duration_s is None or now - self.added_at < self.duration_s

    def matches(self, method: str, path: str) -> bool:
        if self.method is not None and self.method != method:
            return False
        return re.search(self.path, path) is not None


def _stamp(content: bytes, t: float) -> bytes:
    """Append timestamp `t` to each sample line: seconds in OpenMetrics, ms in Prometheus text."""
    text = content.decode("utf-8", "replace")
    openmetrics = text.rstrip().endswith("# EOF")
    ts = f"{t:.3f}" if openmetrics else str(int(t * 1000))
    lines = [
        f"{line} {ts}" if line.strip() and not line.startswith("#") else line
        for line in text.split("\n")
    ]
    return "\n".join(lines).encode()


def _set_path(obj: dict[str, Any], dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    for p in parts[:-1]:
        nxt = obj.get(p)
        if not isinstance(nxt, dict):
            return
        obj = nxt
    obj[parts[-1]] = value


class FaultProxy:
    """See the module docstring. `injected` counts applied faults by kind."""

    def __init__(
        self,
        upstream: str,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        seed: int = 0,
        now: Callable[[], float] = time.time,
    ) -> None:
        self.upstream = upstream.rstrip("/")
        self.now = now  # the platform's time base, for `stamp` timestamps
        self.host, self.port = host, port
        self.faults: list[Fault] = []
        self.injected: Counter[str] = Counter()
        self.events: list[tuple[float, str, str, str]] = []
        self.requests: list[tuple[float, str, str]] = []
        # Every write forwarded upstream: (time, method, path, JSON body or None).
        self.writes: list[tuple[float, str, str, Any]] = []
        self._rng = random.Random(seed)
        self._server: asyncio.AbstractServer | None = None
        self._http = httpx.AsyncClient(timeout=httpx.Timeout(60.0), follow_redirects=False)
        self._held: list[asyncio.Event] = []
        self._conns: set[asyncio.Task[None]] = set()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def add(self, fault: Fault) -> Fault:
        fault.added_at = time.monotonic()
        self.faults.append(fault)
        return fault

    def clear(self) -> None:
        self.faults.clear()

    def release(self) -> None:
        """Let every held response go (to a client that may no longer be there)."""
        for ev in self._held:
            ev.set()
        self._held.clear()

    @property
    def total_injected(self) -> int:
        return sum(self.injected.values())

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        self.release()
        if self._server is not None:
            self._server.close()
            for t in list(self._conns):
                t.cancel()
            with contextlib.suppress(Exception):
                await self._server.wait_closed()
        await self._http.aclose()

    async def __aenter__(self) -> FaultProxy:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- the connection loop --------------------------------------------------------------------

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._conns.add(task)
        try:
            while True:
                req = await self._read_request(reader)
                if req is None:
                    break
                keep = await self._handle(writer, *req)
                if not keep:
                    break
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
            pass
        finally:
            if task is not None:
                self._conns.discard(task)
            with contextlib.suppress(Exception):
                writer.close()

    async def _read_request(
        self, reader: asyncio.StreamReader
    ) -> tuple[str, str, list[tuple[str, str]], bytes] | None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError:
            return None
        lines = head.decode("latin-1").split("\r\n")
        method, target, _ = lines[0].split(" ", 2)
        headers = [tuple(h.split(":", 1)) for h in lines[1:] if ":" in h]
        hdrs = [(k.strip(), v.strip()) for k, v in headers]
        length = next((int(v) for k, v in hdrs if k.lower() == "content-length"), 0)
        body = await reader.readexactly(length) if length else b""
        return method, target, hdrs, body

    def _pick(self, method: str, path: str) -> Fault | None:
        now = time.monotonic()
        for f in self.faults:
            if f.active(now) and f.matches(method, path):
                if f.probability < 1.0 and self._rng.random() >= f.probability:
                    continue
                return f
        return None

    def _count(self, f: Fault, method: str, path: str) -> None:
        f.applied += 1
        now = time.time()
        f.applied_at.append(now)
        self.injected[f.kind] += 1
        self.events.append((now, f.kind, method, path))

    async def _handle(
        self,
        writer: asyncio.StreamWriter,
        method: str,
        target: str,
        headers: list[tuple[str, str]],
        body: bytes,
    ) -> bool:
        path = target.split("?", 1)[0]
        self.requests.append((time.time(), method, path))
        fault = self._pick(method, path)
        if fault is not None and fault.kind == "status":
            self._count(fault, method, path)
            extra = [("retry-after", f"{fault.retry_after:g}")] if fault.retry_after else []
            msg = fault.body or json.dumps({"error": f"injected {fault.status}"})
            await self._write(
                writer, fault.status, [("content-type", "application/json"), *extra], msg.encode()
            )
            return True
        if fault is not None and fault.kind == "body":
            self._count(fault, method, path)
            head = [("content-type", "text/plain; version=0.0.4"), *fault.headers]
            if fault.chunked:
                await self._write_chunked(writer, head, fault.payload, fault.chunk_bytes)
            else:
                await self._write(writer, 200, head, fault.payload)
            return True
        if fault is not None and fault.kind == "disconnect":
            self._count(fault, method, path)
            return False
        if fault is not None and fault.kind == "delay":
            self._count(fault, method, path)
            await asyncio.sleep(fault.delay_s)
        fwd = [(k, v) for k, v in headers if k.lower() not in _HOP]
        if method in ("PUT", "POST", "PATCH", "DELETE"):
            try:
                parsed = json.loads(body) if body else None
            except ValueError:
                parsed = None
            self.writes.append((time.time(), method, path, parsed))
        try:
            resp = await self._http.request(
                method, self.upstream + target, headers=fwd, content=body or None
            )
        except httpx.HTTPError:
            await self._write(writer, 502, [("content-type", "text/plain")], b"upstream failed")
            return True
        out_headers = [(k, v) for k, v in resp.headers.items() if k.lower() not in _HOP]
        content = resp.content
        if fault is not None and fault.on_forwarded is not None:
            fault.on_forwarded(method, path)
        if fault is None or fault.kind == "delay":
            await self._write(writer, resp.status_code, out_headers, content)
            return True
        self._count(fault, method, path)
        if fault.kind == "lose_response":
            return False
        if fault.kind == "hold_response":
            ev = asyncio.Event()
            self._held.append(ev)
            await ev.wait()
            return False
        if fault.kind == "mutate":
            content = self._mutate(content, fault)
        elif fault.kind == "garbage":
            content = fault.body.encode()
        elif fault.kind == "stale_body":
            content = fault._stale.setdefault(path, content)
        elif fault.kind == "stamp":
            content = _stamp(content, self.now() - fault.age_s)
        if fault.kind == "slow_body":
            await self._write_slowly(writer, resp.status_code, out_headers, content, fault)
        else:
            await self._write(writer, resp.status_code, out_headers, content)
        return True

    def _mutate(self, content: bytes, f: Fault) -> bytes:
        try:
            data = json.loads(content)
        except ValueError:
            return content
        objs = data.get("items") if isinstance(data, dict) and "items" in data else [data]
        for obj in objs if isinstance(objs, list) else []:
            if isinstance(obj, dict) and (f.endpoint is None or obj.get("name") == f.endpoint):
                for k, v in f.set.items():
                    _set_path(obj, k, v)
        return json.dumps(data).encode()

    async def _write(
        self, writer: asyncio.StreamWriter, status: int, headers: list[tuple[str, str]], body: bytes
    ) -> None:
        writer.write(self._head(status, headers, len(body)) + body)
        await writer.drain()

    async def _write_slowly(
        self,
        writer: asyncio.StreamWriter,
        status: int,
        headers: list[tuple[str, str]],
        body: bytes,
        f: Fault,
    ) -> None:
        writer.write(self._head(status, headers, len(body)))
        await writer.drain()
        for i in range(0, len(body), f.chunk_bytes):
            writer.write(body[i : i + f.chunk_bytes])
            await writer.drain()
            await asyncio.sleep(f.chunk_interval_s)

    async def _write_chunked(
        self, writer: asyncio.StreamWriter, headers: list[tuple[str, str]], body: bytes, size: int
    ) -> None:
        """200 with `Transfer-Encoding: chunked`: the client cannot know the length up front."""
        writer.write(self._head(200, [*headers, ("transfer-encoding", "chunked")], None))
        for i in range(0, len(body), size):
            part = body[i : i + size]
            writer.write(f"{len(part):x}\r\n".encode() + part + b"\r\n")
            await writer.drain()
        writer.write(b"0\r\n\r\n")
        await writer.drain()

    @staticmethod
    def _head(status: int, headers: list[tuple[str, str]], length: int | None) -> bytes:
        lines = [f"HTTP/1.1 {status} {_REASONS.get(status, 'Status')}"]
        lines += [f"{k}: {v}" for k, v in headers]
        if length is not None:
            lines.append(f"content-length: {length}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
