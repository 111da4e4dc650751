"""The process pool for replay grids: results in the tasks' order and the same whatever the
number of workers (a replay is deterministic), progress for the whole run with an ETA, errors
raised in the caller; the autopilot's candidate compare over real replays with 1 and 2 jobs."""

from __future__ import annotations

import asyncio
import io
import random

import pytest

from controller.backtest import autopilot as ap
from controller.backtest.pool import Eta, default_jobs, run_grid
from controller.core.params import EndpointSettings
from controller.daemon.store import DemandMinute
from tests.pool_support import fails, square_after


def test_results_keep_the_tasks_order_whatever_the_jobs():
    tasks = [(i, 200_000 if i % 2 == 0 else 10) for i in range(6)]
    out1, out2 = io.StringIO(), io.StringIO()
    one = run_grid(square_after, tasks, jobs=1, out=out1, describe=str)
    two = run_grid(square_after, tasks, jobs=2, out=out2, describe=str)
    assert one == two == [i * i for i in range(6)]
    for out in (out1, out2):
        lines = out.getvalue().splitlines()
        assert len(lines) == 6
        assert lines[-1].startswith("[6/6 100% of the work")
        assert all("ETA" in ln for ln in lines)


def test_a_failing_task_raises_in_the_caller():
    with pytest.raises(ValueError, match="task 2 refuses"):
        run_grid(fails, [(i,) for i in range(4)], jobs=2, out=None)
    with pytest.raises(ValueError, match="task 2 refuses"):
        run_grid(fails, [(i,) for i in range(4)], jobs=1, out=None)


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="jobs"):
        run_grid(fails, [(1,)], jobs=0)
    with pytest.raises(ValueError, match="one entry per task"):
        run_grid(fails, [(1,)], weights=[1.0, 2.0])
    assert default_jobs() >= 1


def test_eta_weights_the_work_done():
    eta = Eta(2, 4.0, started=0.0)
    assert eta.step(3.0).startswith("[1/2  75% of the work")
    assert eta.step(1.0).startswith("[2/2 100% of the work")


def test_candidate_compare_is_the_same_with_one_and_two_jobs():
    """Three candidates, each a real Governor replay of 20 recorded minutes, in this process
    and in two worker processes: the same figures, in the candidates' order."""
    rng = random.Random(5)
    rows = [
        DemandMinute("acme/chat", 1000 + i, float(rng.randint(100, 140)), 0, 0) for i in range(20)
    ]
    for r in rows:
        r.latency_count, r.latency_sum = r.requests, r.requests * 5.0
    es = EndpointSettings(ceiling=10)
    trace = ap.trace_from_demand(rows, name="acme-chat")
    cfg = ap.replay_config(
        es, service_s=5.0, capacity=8.0, cold_start_s=120.0, instance="aws/nvidia-l4/x1"
    )
    cands = [0.25, 0.5, 1.0]

    def run(jobs: int, progress: io.StringIO | None) -> list[ap.Comparison]:
        return asyncio.run(
            ap.compare(trace, cfg, es, cands, current=0.5, jobs=jobs, progress=progress)
        )

    out = io.StringIO()
    one, two = run(1, None), run(2, out)
    assert one == two
    assert [c.safety for c in two] == cands
    assert [c.current for c in two] == [False, True, False]
    assert len({c.cost_usd for c in two}) > 1  # the candidates differ: a real replay each
    lines = out.getvalue().splitlines()
    assert len(lines) == 3
    assert "safety=" in lines[0]
    assert "ETA" in lines[-1]
