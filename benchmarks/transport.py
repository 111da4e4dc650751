"""Feed transport cost: CPU per metrics-feed GET through httpx, aiohttp and raw aiohttp.

    python benchmarks/transport.py                                 # writes results/transport.*
    python benchmarks/transport.py --requests 3000 --rounds 5 --concurrency 16 64

Why: the feed is Governor's per-tick fan-out (one GET per endpoint per tick) and its client CPU is
most of the 1.5 ms per-endpoint budget. The emulator fleet (`benchmarks/fleet.py`, frozen world)
runs in a subprocess pinned to core 1; this process pins itself to core 0, so `getrusage` of this
process is the client's CPU only. Three clients fetch feeds of distinct endpoints round-robin, each
with `max_connections` pooled keep-alive connections and `--concurrency` fetches in flight:

    httpx        `EndpointsClient.fetch_metrics` forced onto the old httpx path (an explicit
                 `httpx.AsyncHTTPTransport` with the limits the client used to build itself)
    aiohttp      `EndpointsClient.fetch_metrics` as shipped (no transport: the aiohttp path)
    raw-aiohttp  a bare `aiohttp.ClientSession` GET + read + decode (the floor: no retries, call
                 records or error mapping)

Each (client, concurrency) pair gets one warm-up batch, then `--rounds` rounds of `--requests`
fetches, the clients interleaved within a round so drift hits all alike. Reported per pair: the
median and min-max over rounds of client CPU us per fetch (ru_utime + ru_stime delta / fetches) and
wall us per fetch (the wall is bounded by the single-core emulator, so CPU is the figure of merit).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import resource
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import harness

ROOT = harness.ROOT
sys.path.insert(0, str(ROOT))

import aiohttp  # noqa: E402
import httpx  # noqa: E402

from controller.platform.client import EndpointsClient  # noqa: E402

NAMESPACE = "bench"  # as benchmarks/fleet.py serves it
TOKEN = "bench-token"
CLIENTS = ("httpx", "aiohttp", "raw-aiohttp")

Fetch = Callable[[str], Awaitable[str]]


def _cpu_s() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


async def _batch(fetch: Fetch, names: list[str], start: int, n: int, concurrency: int) -> int:
    """`n` fetches, `concurrency` at a time, of names[start:] round-robin; returns bytes read."""
    next_i = start
    end = start + n
    total = 0

    async def worker() -> None:
        nonlocal next_i, total
        while next_i < end:
            i = next_i
            next_i += 1
            text = await fetch(names[i % len(names)])
            total += len(text)

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return total


async def _measure(args: argparse.Namespace, base_url: str) -> dict[str, Any]:
    names = [f"ep-{i:05d}" for i in range(args.endpoints)]
    limits = httpx.Limits(
        max_connections=args.max_connections, max_keepalive_connections=args.max_connections
    )
    async with contextlib.AsyncExitStack() as stack:
        old = await stack.enter_async_context(
            EndpointsClient(
                base_url,
                TOKEN,
                transport=httpx.AsyncHTTPTransport(limits=limits),
                max_connections=args.max_connections,
            )
        )
        new = await stack.enter_async_context(
            EndpointsClient(base_url, TOKEN, max_connections=args.max_connections)
        )
        assert not old._feed_via_aiohttp
        assert new._feed_via_aiohttp
        raw = await stack.enter_async_context(
            aiohttp.ClientSession(
                headers={"authorization": f"Bearer {TOKEN}"},
                connector=aiohttp.TCPConnector(limit=args.max_connections),
            )
        )
        prefix = f"{base_url.rstrip('/')}/endpoint/{NAMESPACE}/"

        async def raw_fetch(name: str) -> str:
            async with raw.get(f"{prefix}{name}/open-metrics") as resp:
                resp.raise_for_status()
                return (await resp.read()).decode("utf-8", "replace")

        fetchers: dict[str, Fetch] = {
            "httpx": lambda name: old.fetch_metrics(NAMESPACE, name),
            "aiohttp": lambda name: new.fetch_metrics(NAMESPACE, name),
            "raw-aiohttp": raw_fetch,
        }
        # The three must read the same bytes, or the comparison is meaningless.
        bodies = {c: await f(names[0]) for c, f in fetchers.items()}
        assert len(set(bodies.values())) == 1, "clients disagree on the feed body"

        results: dict[str, Any] = {}
        cursor = 0
        for conc in args.concurrency:
            rounds: dict[str, list[dict[str, float]]] = {c: [] for c in CLIENTS}
            for c in CLIENTS:  # warm-up: open the pools, fill caches
                await _batch(fetchers[c], names, cursor, args.warmup, conc)
                cursor += args.warmup
            for r in range(args.rounds):
                order = CLIENTS[r % 3 :] + CLIENTS[: r % 3]  # rotate who goes first
                for c in order:
                    cpu0, wall0 = _cpu_s(), time.perf_counter()
                    nbytes = await _batch(fetchers[c], names, cursor, args.requests, conc)
                    wall, cpu = time.perf_counter() - wall0, _cpu_s() - cpu0
                    cursor += args.requests
                    rounds[c].append(
                        {
                            "cpu_us_per_fetch": 1e6 * cpu / args.requests,
                            "wall_us_per_fetch": 1e6 * wall / args.requests,
                            "fetches_per_s": args.requests / wall,
                            "mean_body_bytes": nbytes / args.requests,
                        }
                    )
                    print(
                        f"c={conc:<3} round {r + 1}/{args.rounds} {c:<12}"
                        f" cpu {rounds[c][-1]['cpu_us_per_fetch']:7.0f} us/fetch"
                        f"  wall {rounds[c][-1]['wall_us_per_fetch']:6.0f} us/fetch",
                        file=sys.stderr,
                        flush=True,
                    )
            results[str(conc)] = {c: _summarise(rounds[c]) for c in CLIENTS}
            cpu = {c: results[str(conc)][c]["cpu_us_per_fetch"]["median"] for c in CLIENTS}
            results[str(conc)]["ratios"] = {
                "httpx_over_aiohttp": cpu["httpx"] / cpu["aiohttp"],
                "aiohttp_over_raw": cpu["aiohttp"] / cpu["raw-aiohttp"],
                "httpx_over_raw": cpu["httpx"] / cpu["raw-aiohttp"],
            }
    return results


def _summarise(rounds: list[dict[str, float]]) -> dict[str, Any]:
    out: dict[str, Any] = {"rounds": rounds}
    for key in rounds[0]:
        values = [r[key] for r in rounds]
        out[key] = {"median": statistics.median(values), "min": min(values), "max": max(values)}
    return out


# ------------------------------------------------------------------------------------- driver


def _machine() -> dict[str, Any]:
    pkgs = harness.versions(
        ("httpx", "httpcore", "aiohttp", "yarl", "multidict", "uvicorn", "starlette")
    )
    return {
        "cpu": harness.cpu_model(),
        "cores": os.cpu_count(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "packages": pkgs,
    }


def _render(data: dict[str, Any]) -> str:
    a = data["args"]
    lines = [
        "# Feed transport: client CPU per metrics-feed GET",
        "",
        f"Command: `{data['command']}` ({data['total_wall_s']:.0f} s). "
        "Produced by `benchmarks/transport.py`; see its docstring for the method.",
        "",
        f"Machine: {data['machine']['cpu']}, {data['machine']['cores']} cores, "
        f"Linux {data['machine']['kernel']}, Python {data['machine']['python']}; "
        + ", ".join(f"{k} {v}" for k, v in data["machine"]["packages"].items())
        + ".",
        "",
        f"Set-up: emulator fleet of {a['endpoints']} endpoints ({a['replicas']} replica(s) each, "
        f"frozen world) on core {data['cores']['emulator']}, client on core "
        f"{data['cores']['client']}; {a['max_connections']} pooled keep-alive connections per "
        f"client; {a['rounds']} rounds of {a['requests']} fetches per cell after "
        f"{a['warmup']} warm-up fetches; feed body {data['mean_body_bytes']:.0f} bytes.",
        "",
        "| concurrency | client | CPU µs/fetch (median) | CPU min-max | wall µs/fetch (median) "
        "| wall min-max | fetches/s |",
        "|---:|---|---:|---:|---:|---:|---:|",
    ]
    for conc, cell in data["results"].items():
        for c in CLIENTS:
            cpu, wall = cell[c]["cpu_us_per_fetch"], cell[c]["wall_us_per_fetch"]
            lines.append(
                f"| {conc} | {c} | {cpu['median']:.0f} | {cpu['min']:.0f}-{cpu['max']:.0f} "
                f"| {wall['median']:.0f} | {wall['min']:.0f}-{wall['max']:.0f} "
                f"| {cell[c]['fetches_per_s']['median']:.0f} |"
            )
    lines += [
        "",
        "CPU ratios (medians):",
        "",
        "| concurrency | httpx / aiohttp path | aiohttp path / raw aiohttp | httpx / raw |",
        "|---:|---:|---:|---:|",
    ]
    for conc, cell in data["results"].items():
        r = cell["ratios"]
        lines.append(
            f"| {conc} | {r['httpx_over_aiohttp']:.2f} | {r['aiohttp_over_raw']:.2f} "
            f"| {r['httpx_over_raw']:.2f} |"
        )
    lines += [
        "",
        "`httpx` is `EndpointsClient.fetch_metrics` forced onto httpx (explicit "
        "`httpx.AsyncHTTPTransport`), `aiohttp` the same method as shipped, `raw-aiohttp` a bare "
        "`ClientSession` GET (no retry loop, call records or error mapping). Wall time is bounded "
        "by the single-core emulator serving the feeds, so CPU is the comparison that matters. "
        "With the default `feed_attempts=1` the client makes its one attempt without entering "
        "tenacity's loop (identical behaviour; the loop alone cost ~0.15 ms per fetch).",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--endpoints", type=int, default=1000, help="fleet size (fetched round-robin)")
    p.add_argument("--replicas", type=int, default=1, help="replicas per endpoint (feed size)")
    p.add_argument("--requests", type=int, default=2000, help="fetches per round")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--warmup", type=int, default=100)
    p.add_argument("--concurrency", type=int, nargs="+", default=[16, 64])
    p.add_argument("--max-connections", type=int, default=32)
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "transport")
    args = p.parse_args()

    client_core, emu_core = harness.cores()
    t0 = time.perf_counter()
    proc, url = harness.start_fleet(
        args.endpoints, emu_core, ["--port", "0", "--replicas", str(args.replicas)]
    )
    try:
        if client_core is not None:
            os.sched_setaffinity(0, {client_core})
        results = asyncio.run(_measure(args, url))
    finally:
        harness.stop_fleet(proc)
    data = {
        "command": "python " + " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]]),
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "machine": _machine(),
        "cores": {"client": client_core, "emulator": emu_core},
        "total_wall_s": time.perf_counter() - t0,
        "mean_body_bytes": next(iter(results.values()))["aiohttp"]["mean_body_bytes"]["median"],
        "results": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(data, indent=2) + "\n")
    args.out.with_suffix(".md").write_text(_render(data))
    print(_render(data))


if __name__ == "__main__":
    main()
