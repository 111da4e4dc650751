"""A lower bound on the cost of any controller that meets the SLO on a load.

The oracles (`controller.backtest.oracle`) are schedules: they cost at least the optimum, so they
bracket it from above. This is the other side: a relaxation of the simulator's rules that every
controller, however clever and whatever it knows, must satisfy, so no run can be cheaper at the
goal. Under the simulator's rules (`controller.emulator.platform`):

1. a replica is billed from its creation, at least for its cold start before it serves anything,
   and then for every second it is ready (rounded up to whole minutes, which only adds);
2. a ready replica serves at most `concurrency` requests at a time, each for its own service time;
3. a request meets the SLO only if it starts within `slo_s` of its arrival, so it is being served
   from then on (it starts at `a_i + slo_s` at the latest) for `s_i` seconds, or until the run
   ends at `end_s`: a served request that met the SLO occupied a slot for at least
   `w_i = min(s_i, max(0, end_s - a_i - slo_s))` seconds inside the run;
4. attainment `A` over `N` requests needs at least `K = ceil(A * N)` requests meeting the SLO.

Three disjoint parts of the bill follow:

- **busy**: the billed ready time is at least (busy slot-seconds) / concurrency >= (the sum of
  `w_i` over the requests that met the SLO) / concurrency >= (the sum of the K smallest `w_i`) /
  concurrency;
- **first cold start**: when K > 0, some replica was created and billed `cold_start_s` before it
  could serve, before the first served request;
- **gaps**: a request can only be in service within `[a_i, a_i + slo_s + s_i]`; where the union
  of these intervals has a gap of length g, nothing is busy. Either a replica stays alive through
  the gap (billed g inside it, time the busy part does not count), or none does, and the replica
  serving the next request after the gap was created after the gap began: its cold start (billed,
  not ready) lies between the gap's start and that service. These windows do not overlap from one
  gap to the next, so each gap adds min(g, cold_start_s). Giving up requests can remove at most
  one gap per request given up (a merged gap is at least as long as each of its parts), so with
  `D = N - K` requests allowed to miss, the D largest gap terms are left out.

Hence

    cost >= price_per_s * (sum of the K smallest w_i / concurrency + cold_start_s * [K > 0]
                           + sum of min(g, cold_start_s) over the gaps but the D largest)

It holds for any replica schedule, scale-to-zero included, for any queue discipline and for any
choice of which requests to give up. Billing per started minute and the capacity bursts need
beyond their busy time (a burst shorter than a cold start needs its replicas warm before it, idle)
are not in it, so it is loose on bursty loads: its figure says how far below the oracle the
optimum could possibly be, not where it is.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

__all__ = ["lower_bound_usd"]


def lower_bound_usd(
    offsets: Sequence[float],
    service_s: Sequence[float],
    *,
    concurrency: int,
    slo_s: float,
    attainment: float,
    end_s: float,
    cold_start_s: float,
    usd_per_hour: float,
) -> float:
    """The bound of the module docstring, in dollars. `offsets` are arrival times from the run's
    start, `end_s` the run's end (same origin)."""
    n = len(offsets)
    k = max(0, math.ceil(attainment * n - 1e-9))
    if k == 0:
        return 0.0
    work = sorted(
        min(s, max(0.0, end_s - a - slo_s)) for a, s in zip(offsets, service_s, strict=True)
    )
    busy = math.fsum(work[:k])
    gaps = sorted(_gap_terms(offsets, service_s, slo_s=slo_s, cold_start_s=cold_start_s))
    idle = math.fsum(gaps[: max(0, len(gaps) - (n - k))])
    return usd_per_hour / 3600.0 * (busy / concurrency + cold_start_s + idle)


def _gap_terms(
    offsets: Sequence[float], service_s: Sequence[float], *, slo_s: float, cold_start_s: float
) -> list[float]:
    """min(g, cold start) for each gap g in the union of the requests' possible service
    intervals [a, a + slo + s] (offsets sorted)."""
    out: list[float] = []
    reach = -math.inf
    for a, s in zip(offsets, service_s, strict=True):
        if a > reach and reach > -math.inf:
            out.append(min(a - reach, cold_start_s))
        reach = max(reach, a + slo_s + s)
    return out
