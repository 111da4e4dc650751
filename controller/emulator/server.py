"""Run the emulator app under uvicorn on loopback, inside the current event loop.

    async with EmulatorServer(platform, clock=clock, tokens={"t": user}) as srv:
        httpx.AsyncClient(base_url=srv.base_url)   # http://127.0.0.1:PORT/v2

A background ticker advances the platform to `clock.now()` every `tick_s` real seconds so load
flows even when nobody calls the API. uvicorn's signal handlers are not installed (the embedding
process keeps its own Ctrl-C handling).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable, Mapping
from types import TracebackType

from controller.clock import Clock, WallClock
from controller.emulator.app import EmulatorConfig, create_app
from controller.emulator.platform import Platform, PlatformConfig
from controller.platform.models import UserRef
from controller.serving import LoopServer

__all__ = ["EmulatorServer", "serve_forever"]

log = logging.getLogger(__name__)


class EmulatorServer:
    def __init__(
        self,
        platform: Platform,
        *,
        clock: Clock,
        token: str | None = None,
        tokens: Mapping[str, UserRef] | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        config: EmulatorConfig | None = None,
        tick_s: float = 0.2,
        namespaces: Mapping[str, Iterable[str]] | None = None,
    ) -> None:
        self.platform = platform
        self.clock = clock
        self.host = host
        self.port = port
        self.tick_s = tick_s
        self.app = create_app(
            platform, clock=clock, token=token, tokens=tokens, config=config, namespaces=namespaces
        )
        self._http: LoopServer | None = None
        self._ticker: asyncio.Task[None] | None = None

    @property
    def root_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def base_url(self) -> str:
        """Management API base, to use as Governor's `api_base_url`."""
        return f"{self.root_url}/v2"

    @property
    def admin_url(self) -> str:
        return f"{self.root_url}/_emulator"

    async def start(self) -> None:
        self._http = LoopServer(self.app, host=self.host, port=self.port, what="emulator")
        await self._http.start()
        self.port = self._http.port
        self.platform.set_public_base(self.root_url)
        self._ticker = asyncio.create_task(self._tick(), name="emulator-ticker")

    async def _tick(self) -> None:
        while True:
            try:
                self.platform.advance_to(self.clock.now())
            except Exception:  # pragma: no cover - keep ticking, but say why
                log.exception("emulator platform step failed")
            await asyncio.sleep(self.tick_s)

    async def stop(self) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker
            self._ticker = None
        if self._http is not None:
            await self._http.stop()

    async def __aenter__(self) -> EmulatorServer:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()


async def serve_forever(
    *,
    host: str = "127.0.0.1",
    port: int = 8081,
    token: str | None = None,
    tokens: Mapping[str, UserRef] | None = None,
    clock: Clock | None = None,
    platform: Platform | None = None,
    seed: int = 0,
    platform_config: PlatformConfig | None = None,
    config: EmulatorConfig | None = None,
    namespaces: Mapping[str, Iterable[str]] | None = None,
) -> None:
    """`governor emulator`: serve an (empty unless `platform` is given) emulated platform until
    cancelled, accepting only `token` (as governor-bot) and `tokens`. Runs in real time unless a
    clock is given."""
    clock = clock or WallClock()
    platform = platform or Platform(start=clock.now(), seed=seed, config=platform_config)
    async with EmulatorServer(
        platform,
        clock=clock,
        token=token,
        tokens=tokens,
        host=host,
        port=port,
        config=config,
        namespaces=namespaces,
    ) as srv:
        log.warning("emulator listening on %s (admin %s)", srv.base_url, srv.admin_url)
        await asyncio.Event().wait()
