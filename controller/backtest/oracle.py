"""The oracle: the cheapest replica schedule that meets the SLO knowing the future.

It is the lower bound the backtest compares every policy with. Two steps, both exact with respect
to the emulator's service model (one FIFO queue, earliest free slot first, `concurrency` slots per
replica, each request's own service time, cold start `cold_start_s`, billing per started minute):

1. **Need per bucket** (`replicas_needed`). Time is cut into `bucket_s` buckets (60 s: billing is
   per minute). Going forward, bucket by bucket, with the queue and the slots carried over from the
   previous bucket, it picks the fewest ready replicas (>= 1) for which the bucket's misses
   (requests whose queueing delay exceeds the target, plus queued requests already doomed to) stay
   within the allowance `floor((1 - attainment) * arrivals in the bucket)`. When replicas are
   removed the newest go first, as on the platform.
2. **Cold start** (`schedule`). A replica ready at time s must have been created by s - cold start
   and billed since, so the replicas alive during bucket b are the maximum need over buckets
   b .. b + ceil(cold_start / bucket). Removing newest first keeps the ready ones.

The runner then replays the schedule on the emulated platform (min = max = the schedule) and, if a
bucket still misses more than its allowance (the platform's 1 s stepping, removal order), raises
that bucket's need by one and replays again (`bump`), a few times at most.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["OraclePlan", "bump", "replicas_needed", "schedule"]


@dataclass(frozen=True)
class OraclePlan:
    bucket_s: float
    needed: tuple[int, ...]  # ready replicas needed per bucket
    alive: tuple[int, ...]  # replicas to run (ready or starting) per bucket


class _State:
    __slots__ = ("carry", "heap", "next_rid", "rids")

    def __init__(self) -> None:
        self.heap: list[tuple[float, int]] = []  # (slot free at, replica id)
        self.rids: list[int] = []  # replica ids in creation order
        self.next_rid = 0
        self.carry: list[tuple[float, float, bool]] = []  # queued (arrival, service, doomed)

    def copy(self) -> _State:
        s = _State()
        s.heap = list(self.heap)
        s.rids = list(self.rids)
        s.next_rid = self.next_rid
        s.carry = list(self.carry)
        return s


def _run_bucket(
    st: _State,
    n: int,
    reqs: Sequence[tuple[float, float]],
    b0: float,
    b1: float,
    slo_s: float,
    conc: int,
) -> tuple[_State, int]:
    st = st.copy()
    if n > len(st.rids):
        for _ in range(n - len(st.rids)):
            rid = st.next_rid
            st.next_rid += 1
            st.rids.append(rid)
            for _ in range(conc):
                heapq.heappush(st.heap, (b0, rid))
    elif n < len(st.rids):
        gone = set(st.rids[n:])
        st.rids = st.rids[:n]
        st.heap = [s for s in st.heap if s[1] not in gone]
        heapq.heapify(st.heap)
    queue = st.carry + [(a, s, False) for a, s in reqs]
    misses = 0
    heap = st.heap
    i = 0
    for i, (arr, svc, doomed) in enumerate(queue):  # noqa: B007
        if not heap:  # no replica: everything waits
            break
        free_at, rid = heap[0]
        start = free_at if free_at > arr else arr
        if start >= b1:
            break
        heapq.heapreplace(heap, (start + svc, rid))
        if start - arr > slo_s and not doomed:
            misses += 1
    else:
        i = len(queue)
    rest = queue[i:]
    carry = []
    for arr, svc, doomed in rest:
        if not doomed and b1 - arr > slo_s:
            misses += 1
            doomed = True
        carry.append((arr, svc, doomed))
    st.carry = carry
    return st, misses


def replicas_needed(
    offsets: Sequence[float],
    service_s: Sequence[float],
    *,
    concurrency: int,
    slo_s: float,
    attainment: float = 1.0,
    bucket_s: float = 60.0,
    horizon_s: float | None = None,
    max_replicas: int = 1000,
    extra: dict[int, int] | None = None,
    min_replicas: int = 1,
    carry_allowance: bool = False,
) -> list[int]:
    """Ready replicas needed per bucket (see the module docstring). `offsets` are sorted arrival
    offsets in seconds; `extra` adds replicas to given buckets (the runner's corrections);
    `min_replicas` 0 lets idle buckets have none (scale to zero). `carry_allowance` carries the
    unused, fractional part of each bucket's miss allowance forward, so the misses are bounded
    overall (as runs are scored) rather than bucket by bucket."""
    horizon = horizon_s if horizon_s is not None else (offsets[-1] if offsets else 0.0) + 1.0
    nb = max(1, math.ceil(horizon / bucket_s))
    per: list[list[tuple[float, float]]] = [[] for _ in range(nb)]
    for a, s in zip(offsets, service_s, strict=True):
        per[min(nb - 1, int(a // bucket_s))].append((a, s))
    st = _State()
    out: list[int] = []
    extra = extra or {}
    credit = 0.0
    for b in range(nb):
        b0, b1 = b * bucket_s, (b + 1) * bucket_s
        share = (1.0 - attainment) * len(per[b])
        allow = math.floor(share + (credit if carry_allowance else 0.0) + 1e-9)
        chosen: tuple[int, _State, int] | None = None
        for n in range(min_replicas, max_replicas + 1):
            nst, misses = _run_bucket(st, n, per[b], b0, b1, slo_s, concurrency)
            if misses <= allow or n == max_replicas:
                chosen = (n, nst, misses)
                break
        assert chosen is not None
        n, nst, misses = chosen
        add = extra.get(b, 0)
        if add:
            n = min(max_replicas, n + add)
            nst, misses = _run_bucket(st, n, per[b], b0, b1, slo_s, concurrency)
        credit = max(0.0, credit + share - misses)
        st = nst
        out.append(n)
    return out


def schedule(needed: Sequence[int], *, cold_start_s: float, bucket_s: float = 60.0) -> list[int]:
    """Replicas alive per bucket so that `needed[b]` are ready in every bucket b."""
    k = math.ceil(cold_start_s / bucket_s - 1e-9)
    return [max(needed[b : b + k + 1]) for b in range(len(needed))]


def bump(extra: dict[int, int], buckets: Sequence[int]) -> dict[int, int]:
    """One more replica in each of `buckets` (a correction after a replay)."""
    out = dict(extra)
    for b in buckets:
        out[b] = out.get(b, 0) + 1
    return out
