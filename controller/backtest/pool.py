"""Replays of a grid (candidates x loads) spread over worker processes, with one progress line.

A replay is pure CPU in one thread (virtual time, the platform in-process), so the only way to
use a second core is a second process. `run_grid` runs `fn(*args)` for every task of the grid,
in `jobs` worker processes (1: in this process, no pool), and returns the results in the
tasks' order whatever the order they finished in: a replay is deterministic (seeded, virtual
clock), so the results do not depend on `jobs` (tests/test_pool.py checks 1 against 2).

The workers are started with the "spawn" method: the callers include the daemon's autopilot,
which plans in a worker thread of a process running an event loop, and forking such a process
copies locks held by other threads. `fn` and its arguments must be picklable (a module-level
function; dataclasses of plain values).

Progress is for the whole run, not per replay: after each finished task one line on `out`
(stderr by default) with the tasks done, the share of the work done (each task weighted, by
default equally; callers weight by the load's length) and an ETA extrapolated from the time
taken so far. `initializer` runs once in each worker (e.g. to quiet the replays' logging, which a
spawned worker does not inherit).
"""

from __future__ import annotations

import math
import multiprocessing
import os
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from typing import Any, TextIO

__all__ = ["Eta", "default_jobs", "run_grid"]


def default_jobs() -> int:
    """The cores this process may run on (the affinity mask where the OS has one)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


class Eta:
    """Progress of a whole run and its ETA: the share of the work done (tasks weighted), the
    time left extrapolated from the time taken for that share."""

    def __init__(self, tasks: int, weight: float, started: float | None = None) -> None:
        self.tasks, self.weight = tasks, max(weight, 1e-9)
        self.started = time.perf_counter() if started is None else started
        self.done, self.done_weight = 0, 0.0

    def step(self, weight: float) -> str:
        """Count one finished task of `weight`; the progress text for it."""
        self.done += 1
        self.done_weight += weight
        elapsed = time.perf_counter() - self.started
        share = min(1.0, self.done_weight / self.weight)
        left = elapsed * (1.0 - share) / share if share > 0 else math.inf
        return (
            f"[{self.done}/{self.tasks} {100 * share:3.0f}% of the work, {elapsed:4.0f} s, "
            f"ETA {left:4.0f} s]"
        )


def run_grid(
    fn: Callable[..., Any],
    tasks: Sequence[tuple[Any, ...]],
    *,
    jobs: int | None = None,
    weights: Sequence[float] | None = None,
    labels: Sequence[str] | None = None,
    out: TextIO | None = sys.stderr,
    describe: Callable[[Any], str] | None = None,
    initializer: Callable[[], None] | None = None,
) -> list[Any]:
    """`[fn(*t) for t in tasks]`, computed in `jobs` worker processes (default: the cores; at
    most one per task); results in the order of `tasks`. With `out`, one progress line per
    finished task (`labels[i]`, then `describe(result)` when given). A task's exception is
    raised here once the running tasks are done (the rest are cancelled)."""
    n = len(tasks)
    w = list(weights) if weights is not None else [1.0] * n
    names = list(labels) if labels is not None else [f"task {i + 1}" for i in range(n)]
    if jobs is not None and jobs < 1:
        raise ValueError(f"jobs: expected >= 1, got {jobs}")
    if len(w) != n or len(names) != n:
        raise ValueError("run_grid: weights and labels must have one entry per task")
    jobs = min(max(1, jobs if jobs is not None else default_jobs()), max(1, n))
    eta = Eta(n, sum(w))
    results: list[Any] = [None] * n

    def report(i: int) -> None:
        if out is None:
            return
        tail = f": {describe(results[i])}" if describe is not None else ""
        out.write(f"{eta.step(w[i])}  {names[i]}{tail}\n")
        out.flush()

    if jobs == 1:
        for i, t in enumerate(tasks):
            results[i] = fn(*t)
            report(i)
        return results
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=jobs, mp_context=ctx, initializer=initializer) as pool:
        futs: dict[Future[Any], int] = {pool.submit(fn, *t): i for i, t in enumerate(tasks)}
        pending = set(futs)
        try:
            while pending:
                finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                for f in sorted(finished, key=futs.__getitem__):
                    i = futs[f]
                    results[i] = f.result()
                    report(i)
        except BaseException:
            for f in pending:
                f.cancel()
            raise
    return results
