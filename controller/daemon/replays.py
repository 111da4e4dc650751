"""One simulator replay at a time, off the event loop, for the autopilot and right-sizing.

A replay costs seconds of CPU: it runs in a worker thread so the loop keeps ticking, and only one
runs per subsystem so a tick never queues a pile of them behind each other.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from controller.platform.models import AnyEndpoint


def instance_of(ep: AnyEndpoint) -> str:
    """The `vendor/type/size` key the pricing table and the replays use."""
    c = ep.compute
    return f"{ep.provider.vendor}/{c.instance_type}/{c.instance_size}"


class OneReplay:
    """At most one replay in flight, with the endpoint it is for."""

    def __init__(self, log: Any, failed_event: str) -> None:
        self.log, self.failed_event = log, failed_event
        self.future: asyncio.Future[Any] | None = None
        self.key: str | None = None

    @property
    def idle(self) -> bool:
        return self.future is None

    def start(self, key: str, fn: Callable[[], Any]) -> None:
        self.key = key
        self.future = asyncio.get_running_loop().run_in_executor(None, fn)

    def take(self) -> tuple[str, Any] | None:
        """The finished replay's endpoint and result, once; None while it runs or if it failed.

        A failed replay changes nothing: it is logged as `failed_event` and forgotten.
        """
        if self.future is None or not self.future.done():
            return None
        key, future = self.key, self.future
        self.future, self.key = None, None
        assert key is not None
        try:
            return key, future.result()
        except Exception as exc:
            self.log.warning(self.failed_event, endpoint=key, error=str(exc))
            return None

    async def wait(self) -> None:
        """Wait for a replay in flight (tests, shutdown)."""
        if self.future is not None:
            await asyncio.wait({self.future})
