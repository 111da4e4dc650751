"""An ASGI app under uvicorn inside the running event loop, for every HTTP server Governor starts.

The daemon's `/metrics`, the emulator and the Lease API stand-in all serve beside other work in
one loop, so uvicorn must neither own the process's signals nor exit it when it cannot bind.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Iterator
from typing import Any

import uvicorn

__all__ = ["LoopServer"]


class _NoSignalServer(uvicorn.Server):
    """uvicorn that leaves SIGTERM/SIGINT to its host process.

    uvicorn's own handlers would catch a SIGTERM that arrives while it starts, stop only the HTTP
    server, then restore the default handler over the host's and re-raise the signal: the daemon
    would die without its graceful stop (final tick, ledger flush, `stopped` log).
    """

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:  # uvicorn >= 0.29
        yield

    def install_signal_handlers(self) -> None:  # older uvicorn
        return None


class LoopServer:
    """`app` on `host:port` (0 picks a free port, read back into `port` once listening).

    `what` names the server in the one-line error raised (as OSError) when it cannot listen.
    """

    def __init__(
        self, app: Any, *, host: str, port: int, what: str, access_log: bool = True
    ) -> None:
        self.host, self.port, self.what = host, port, what
        self._config = uvicorn.Config(
            app, host=host, port=port, log_level="warning", lifespan="off", access_log=access_log
        )
        self._server: _NoSignalServer | None = None
        self._task: asyncio.Task[None] | None = None

    def _bind(self) -> socket.socket:
        """The listening socket, bound here rather than by uvicorn: uvicorn logs a bind failure
        on its own logger and exits the process; this raises one OSError naming the server, the
        address and the cause ("address already in use")."""
        try:
            family, kind, proto, _, addr = socket.getaddrinfo(
                self.host, self.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
            )[0]
            sock = socket.socket(family, kind, proto)
        except OSError as exc:
            raise OSError(f"{self._listen_error()}: {exc.strerror or exc}") from None
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(addr)
        except OSError as exc:
            sock.close()
            raise OSError(f"{self._listen_error()}: {exc.strerror or exc}") from None
        return sock

    async def start(self) -> None:
        sock = self._bind()
        server = self._server = _NoSignalServer(self._config)
        self._task = asyncio.create_task(self._serve(server, sock), name=self.what)
        while not server.started:
            if self._task.done():
                self._task.result()  # raises what made the server stop
                raise self._listen_error()
            await asyncio.sleep(0.005)
        self.port = server.servers[0].sockets[0].getsockname()[1]

    async def _serve(self, server: uvicorn.Server, sock: socket.socket) -> None:
        try:
            await server.serve(sockets=[sock])
        except SystemExit:  # uvicorn exits the process when it cannot serve; we must not
            raise self._listen_error() from None
        finally:
            sock.close()

    def _listen_error(self) -> OSError:
        return OSError(f"{self.what} could not listen on {self.host}:{self.port}")

    async def stop(self) -> None:
        if self._server is not None and self._task is not None:
            self._server.should_exit = True
            started = self._server.started
            task, self._task = self._task, None
            if started:
                await task
            else:  # it never listened: start() already raised why; do not raise it twice
                with contextlib.suppress(Exception):
                    await task
