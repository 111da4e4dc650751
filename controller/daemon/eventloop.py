"""The daemon's event loop: uvloop when it is installed (`loop.event_loop`), else asyncio's.

Why: the feed fan-out is event-loop and aiohttp bound; uvloop makes each aiohttp GET ~25 % cheaper
in CPU (../shared/reference/perf-limits.md; this project's figures in
benchmarks/results/overhead-16-feed.md). It is an optional dependency (`pip install
governor[fast]`): `auto` falls back to asyncio without it, `uvloop` insists on it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, Literal, TypeVar

from controller.errors import ConfigError

__all__ = ["EventLoopChoice", "loop_factory", "run"]

EventLoopChoice = Literal["auto", "asyncio", "uvloop"]
T = TypeVar("T")


def loop_factory(choice: EventLoopChoice) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """The factory `asyncio.Runner` takes for `choice`; None is asyncio's default loop."""
    if choice == "asyncio":
        return None
    try:
        import uvloop
    except ImportError:
        if choice == "uvloop":
            raise ConfigError(
                "loop.event_loop: uvloop is not installed (pip install 'governor[fast]'), "
                "or set it to auto or asyncio"
            ) from None
        return None
    return uvloop.new_event_loop  # type: ignore[no-any-return]


def run(main: Coroutine[Any, Any, T], *, choice: EventLoopChoice = "auto") -> T:
    """`asyncio.run(main)` on the chosen loop."""
    try:
        factory = loop_factory(choice)
    except ConfigError:
        main.close()  # never awaited: no "coroutine was never awaited" warning
        raise
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(main)
