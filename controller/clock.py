"""Injected clocks, so the same code runs in real, accelerated and virtual time.

Decision code never reads the time itself: the loop reads `clock.now()` once per tick and passes it
down. The emulator advances its platform to `clock.now()`. Tests and the simulation use
`VirtualClock`, the demo uses `ScaledClock`.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from typing import Protocol, runtime_checkable

__all__ = ["Clock", "ScaledClock", "VirtualClock", "WallClock"]


@runtime_checkable
class Clock(Protocol):
    """Epoch seconds plus an interruptible sleep in the same time base."""

    def now(self) -> float:
        """Seconds since the Unix epoch, in this clock's time base."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Wait until `seconds` of this clock's time have passed."""
        ...


class WallClock:
    """Real time."""

    def now(self) -> float:
        return time.time()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))


class ScaledClock:
    """Real time sped up by `speed`, starting at `origin` (epoch seconds); the demo's clock.

    Built on the monotonic clock so a system clock jump does not jump virtual time. `started_at`
    (epoch seconds of the wall clock at which virtual time was `origin`) lets processes started
    at different moments share one virtual time: a soak's emulator and its daemons.
    """

    def __init__(
        self, *, speed: float, origin: float | None = None, started_at: float | None = None
    ) -> None:
        if speed <= 0:
            raise ValueError(f"speed must be > 0, got {speed}")
        self.speed = speed
        self.origin = time.time() if origin is None else origin
        self._m0 = time.monotonic()
        if started_at is not None:
            self._m0 -= time.time() - started_at

    def now(self) -> float:
        return self.origin + (time.monotonic() - self._m0) * self.speed

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds) / self.speed)


class VirtualClock:
    """Time that moves only when told to; sleepers wake in deadline order as it passes them.

    `advance`/`set` are synchronous so a simulation driver can step the world and then let the
    event loop run the woken tasks (`await asyncio.sleep(0)` a few times, or `run_until_idle`).
    """

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self._now = float(start)
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()

    def now(self) -> float:
        return self._now

    async def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self._now + seconds, next(self._seq), fut))
        await fut

    def set(self, t: float) -> None:
        """Move to absolute time `t` (never backwards); wake every sleeper whose deadline passed."""
        if t < self._now:
            raise ValueError(f"virtual time cannot go backwards: {t} < {self._now}")
        self._now = t
        while self._sleepers and self._sleepers[0][0] <= t:
            _, _, fut = heapq.heappop(self._sleepers)
            if not fut.done():
                fut.set_result(None)

    def advance(self, seconds: float) -> None:
        self.set(self._now + seconds)

    def next_deadline(self) -> float | None:
        """The earliest pending sleeper's deadline, so a driver can jump straight to it."""
        while self._sleepers and self._sleepers[0][2].done():
            heapq.heappop(self._sleepers)
        return self._sleepers[0][0] if self._sleepers else None
