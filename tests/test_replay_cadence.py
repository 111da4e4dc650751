"""The state store's write cadences in a replay (`state.memory_every_s`, `state.demand_every_s`).

A replay writes its decision memory once a day and its demand hourly and before each read of it,
not every tick (controller/backtest/simulate.py). Nothing reads the memory back during a replay;
the demand is read by the pre-warm's forecast, so held rows are written before every read. The
replay with the cadences must then make every decision the every-tick replay makes and leave the
same demand in the store, while writing the demand in far fewer transactions.
"""

from __future__ import annotations

import asyncio
import random
from typing import Any

import pytest
import structlog

from controller.backtest.simulate import (
    PolicySpec,
    SimConfig,
    _bounds,
    _governor_once,
    _Progress,
    prepare,
)
from controller.backtest.traces import RequestTrace
from controller.daemon.store import StateStore
from controller.logs import configure_logging


@pytest.fixture(autouse=True)
def _quiet_logging():
    saved = structlog.get_config()
    configure_logging(fmt="console", level="error")
    yield
    structlog.configure(**saved)


def _trace(seconds: float, seed: int) -> RequestTrace:
    """A load that rises and falls within the hour, so the 1 h lag's history matters."""
    rng = random.Random(seed)
    t, out = 0.0, []
    while t < seconds:
        rate = 0.3 + 1.5 * (((t // 900) % 4) in (1, 2))
        t += rng.expovariate(rate)
        out.append(t)
    return RequestTrace(f"cadence-{seed}", tuple(out[:-1]))


def _run(tmp_path: Any, name: str, overrides: dict[str, Any]) -> tuple[list[Any], list[Any], int]:
    cfg = SimConfig(lead_in_s=60.0, policies=[], mode="fast")
    prep = prepare(cfg, _trace(3 * 3600.0, seed=5))
    spec = PolicySpec("default", "governor", governor=overrides)
    store = StateStore(tmp_path / f"{name}.sqlite", durable=False)
    writes = 0
    record = store.record_demand

    def counted(rows: Any) -> None:
        nonlocal writes
        writes += 1
        record(rows)

    store.record_demand = counted  # type: ignore[method-assign]
    decisions: list[Any] = []
    asyncio.run(
        _governor_once(
            cfg,
            prep,
            spec.governor,
            _bounds(cfg, spec),
            _Progress(None, "", 1),
            record=decisions,
            store=store,
        )
    )
    rows = store.demand("sim/llm")
    store.close()
    return decisions, rows, writes


def test_replay_cadences_decide_and_record_as_every_tick(tmp_path) -> None:
    every_tick = {"state": {"memory_every_s": 0, "demand_every_s": 0}}
    d0, rows0, writes0 = _run(tmp_path, "every-tick", every_tick)
    d1, rows1, writes1 = _run(tmp_path, "cadence", {})
    assert len(d0) == len(d1) > 700
    for a, b in zip(d0, d1, strict=True):
        assert a == b, f"first different tick: every tick {a} != cadence {b}"
    assert rows0 == rows1
    assert sum(r.requests for r in rows0) > 5000
    assert writes0 == len(d0)  # one demand write per tick
    assert writes1 < writes0 / 5, (writes1, writes0)
