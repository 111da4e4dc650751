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

So the billed ready time is at least (busy slot-seconds) / concurrency >= (the sum of `w_i` over
the requests that met the SLO) / concurrency >= (the sum of the K smallest `w_i`) / concurrency,
and at least one replica was cold-started when K > 0. Hence

    cost >= price_per_s * (sum of the K smallest w_i / concurrency + cold_start_s * [K > 0]).

It holds for any replica schedule, scale-to-zero included, for any queue discipline and for any
choice of which requests to give up. It is loose where capacity must sit idle: bursts shorter than
a cold start, idle gaps, per-minute billing, a floor. Its figure says how far below the oracle the
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
    return usd_per_hour / 3600.0 * (busy / concurrency + cold_start_s)
