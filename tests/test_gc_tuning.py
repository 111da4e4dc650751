"""The run loop tunes the garbage collector after its first tick (loop.gc_freeze,
loop.gc_young_threshold): the start-up heap frozen out of the scans, fewer young collections.
Driven through `Governor.run` against the emulator over loopback."""

from __future__ import annotations

import asyncio
import gc

from controller.daemon.exporter import Metrics
from controller.emulator.load import Constant


async def _one_tick_of_run(world, **loop) -> None:
    s = world.settings(loop={"tick_interval_s": 15, "dry_run": True, **loop})
    metrics = Metrics()
    client = world.client(s, metrics)
    gov = world.governor(s, client, metrics=metrics)
    stop = asyncio.Event()
    gov.on_tick = lambda report: stop.set()
    async with client:
        await asyncio.wait_for(gov.run(stop), timeout=60)


async def test_run_freezes_the_heap_and_sets_the_young_threshold(world):
    world.add("chat", load=Constant(2.0), tags=["managed"])
    before = gc.get_threshold()
    gc.unfreeze()
    try:
        await _one_tick_of_run(world, gc_young_threshold=12_345)
        assert gc.get_threshold() == (12_345, *before[1:])
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)


async def test_gc_freeze_off_leaves_the_heap_alone(world):
    world.add("chat", load=Constant(2.0), tags=["managed"])
    before = gc.get_threshold()
    gc.unfreeze()
    try:
        await _one_tick_of_run(world, gc_freeze=False, gc_young_threshold=700)
        assert gc.get_freeze_count() == 0
        assert gc.get_threshold() == (700, *before[1:])
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
