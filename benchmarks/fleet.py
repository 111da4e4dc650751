"""Serve an emulated account of N running endpoints on loopback, for the overhead benchmark.

    python benchmarks/fleet.py --endpoints 10000 [--port 0] [--cpu 1] [--live]

Every endpoint is the same shape as an LLM endpoint on the platform (aws nvidia-l4 x1, 2 warm
replicas, `measure.pendingRequests`), so its metrics feed carries every series Governor reads:
latency quantiles with `_count`/`_sum`, per-replica request counters, pending requests and
cpu/gpu/memory/gpu-memory per replica (about 35 lines, 2.5 KB; the platform's own sample is 43).

Default (frozen): each endpoint gets a constant load of `--rps` requests/s, the world is simulated
for `--warm-s` virtual seconds so counters, latency quantiles and utilisation are populated, and
then time stops: the server's clock is a `VirtualClock` that nobody advances, so a request costs
the emulator only routing and rendering. The feeds Governor scrapes then keep one realistic shape;
that is all the overhead benchmark needs (it measures Governor, not the simulation).

`--live`: wall-clock time and the load keeps flowing; API calls advance the world at most every
`--quantum-s` (`EmulatorConfig.advance_quantum_s`) and the server's ticker every 0.2 s.

Prints `READY <base_url>` on stdout once it listens; runs until SIGTERM/SIGINT or stdin closes.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from controller.clock import VirtualClock, WallClock
from controller.emulator.app import EmulatorConfig
from controller.emulator.load import Constant
from controller.emulator.platform import Platform, PlatformConfig, SimParams
from controller.emulator.server import EmulatorServer
from controller.platform.models import UserRef

NAMESPACE = "bench"
TOKEN = "bench-token"
USER = UserRef(id="u-governor", name="governor-bot")
START = 1_790_000_000.0  # a fixed epoch second, so the frozen world is identical every run


def body(name: str, replicas: int) -> dict:
    return {
        "name": name,
        "type": "protected",
        "tags": ["bench"],
        "provider": {"vendor": "aws", "region": "us-east-1"},
        "compute": {
            "accelerator": "gpu",
            "instanceType": "nvidia-l4",
            "instanceSize": "x1",
            "scaling": {
                "minReplica": replicas,
                "maxReplica": replicas + 2,
                "scaleToZeroTimeout": None,
                "measure": {"pendingRequests": 1.5},
            },
        },
        "model": {"repository": "gpt2", "framework": "pytorch", "task": "text-generation"},
    }


def build(n: int, *, replicas: int, rps: float, warm_s: float, start: float) -> Platform:
    # The emulator's per-namespace endpoint limit defaults to 10,000; a bigger fleet raises it.
    config = PlatformConfig(max_endpoints_per_namespace=max(n, 10_000))
    platform = Platform(start=start, seed=7, config=config)
    platform.set_quota(NAMESPACE, "aws", "gpu", n * (replicas + 2))
    sim = SimParams(cold_start_s=60.0, concurrency=4, service_time_s=1.0)
    load = Constant(rps) if rps > 0 else None
    # The quota is generous by construction, but checking it sums over the namespace on every
    # create (O(N^2) for the build); skip the check while building, keep it afterwards.
    platform._check_quota = lambda *a, **k: None  # type: ignore[method-assign]
    try:
        for i in range(n):
            platform.create(
                NAMESPACE, body(f"ep-{i:05d}", replicas), by=USER, sim=sim, load=load, ready=True
            )
    finally:
        del platform._check_quota
    platform.advance_to(start + warm_s)
    return platform


async def serve(args: argparse.Namespace) -> None:
    t0 = time.perf_counter()
    start = time.time() if args.live else START
    platform = build(
        args.endpoints, replicas=args.replicas, rps=args.rps, warm_s=args.warm_s, start=start
    )
    built_s = time.perf_counter() - t0
    if args.live:
        clock = WallClock()
        config = EmulatorConfig(advance_quantum_s=args.quantum_s)
    else:
        clock = VirtualClock(platform.now)
        config = EmulatorConfig()
    srv = EmulatorServer(platform, clock=clock, tokens={TOKEN: USER}, port=args.port, config=config)
    await srv.start()
    print(f"READY {srv.base_url} built_s={built_s:.1f}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    with contextlib.suppress(Exception):
        loop.add_reader(sys.stdin.fileno(), lambda: stop.set() if not os.read(0, 1) else None)
    try:
        await stop.wait()
    finally:
        await srv.stop()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--endpoints", type=int, required=True)
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--cpu", type=int, default=None, help="pin this process to one core")
    p.add_argument("--replicas", type=int, default=2)
    p.add_argument("--rps", type=float, default=1.0, help="load per endpoint (0: none)")
    p.add_argument("--warm-s", type=float, default=30.0)
    p.add_argument("--live", action="store_true", help="keep time (and load) moving")
    p.add_argument("--quantum-s", type=float, default=1.0)
    args = p.parse_args()
    if args.cpu is not None and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {args.cpu})
    asyncio.run(serve(args))


if __name__ == "__main__":
    main()
