"""Error of the derived (Little's law) in-flight estimate against the emulator's ground truth.

    python benchmarks/derived_concurrency.py                    # the 12 loads, 2 worker processes
    python benchmarks/derived_concurrency.py --only sparse --jobs 1 --out /tmp/dc

Each load of `controller.backtest.loads` is replayed through the emulated platform as `governor
simulate` sets it up (the default service model, 1..20 replicas, a cold start after 600 s idle),
with the feed in the platform's published shape (`feed_shape: published`: no pending-requests
series), and the real `Governor` ticking every `--tick` seconds (15) in virtual time over ASGI.
Two scalers: Governor's default (slo_target, no signal settings, so it sizes on this very
estimate: the closed loop it runs in), and the platform's own autoscaler at its default threshold
(Governor in dry-run). After each tick, the daemon's own window for the endpoint is read:
`derived_in_flight` over 60 s (slo_target's window) and 15 s (the panic window). The truth is
the emulator's in-flight count (requests queued or in service, `Platform.pending_requests`),
read at every whole second and averaged over the same interval the estimate used: the figure
the policies would have read from a pending-requests series.

Both latency-summary conventions are run: `window` (the published sample's: `_count`/`_sum` over
the last 60 s) and `cumulative`. Ticks where truth and estimate are both 0 (idle) are left out;
relative error is taken where the truth is >= 1. Written to
`benchmarks/results/derived_concurrency.{json,md}` with the command, machine and runtime.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import shlex
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.harness import cpu_model, versions

RESULTS = Path(__file__).resolve().parent / "results"
SPANS = (60.0, 15.0)
MODES = ("window", "cumulative")
SCALERS = ("governor", "platform")


def _pct(vals: list[float], q: float) -> float | None:
    if not vals:
        return None
    s = sorted(vals)
    return s[min(len(s) - 1, max(0, math.ceil(q * len(s)) - 1))]


def _stats(pairs: list[tuple[float, float]], missing: int) -> dict[str, Any]:
    """(estimate, truth) pairs -> the error figures."""
    busy = [(e, t) for e, t in pairs if e > 0 or t > 0]
    abs_err = [abs(e - t) for e, t in busy]
    rel = [abs(e - t) / t for e, t in busy if t >= 1.0]
    return {
        "ticks": len(pairs),
        "busy_ticks": len(busy),
        "no_estimate": missing,
        "truth_mean": sum(t for _, t in busy) / len(busy) if busy else None,
        "abs_p50": _pct(abs_err, 0.5),
        "abs_p90": _pct(abs_err, 0.9),
        "rel_p50": _pct(rel, 0.5),
        "rel_p90": _pct(rel, 0.9),
        "bias": sum(e - t for e, t in busy) / len(busy) if busy else None,
        "rel_bias": (
            sum(e for e, t in busy) / sum(t for _, t in busy) - 1.0
            if busy and sum(t for _, t in busy) > 0
            else None
        ),
    }


async def _replay(name: str, mode: str, scaler: str, tick_s: float) -> dict[str, Any]:
    import httpx

    from controller.backtest.loads import LOADS
    from controller.backtest.simulate import (
        BOT,
        NAME,
        NS,
        T0,
        TOKEN,
        _platform,
        load_sim_config,
        prepare,
    )
    from controller.clock import VirtualClock
    from controller.daemon.loop import Governor
    from controller.emulator.app import create_app
    from controller.platform.client import make_client
    from controller.settings import load_settings

    load = next(ld for ld in LOADS if ld.name == name)
    cfg = load_sim_config(None)
    prep = prepare(cfg, load.trace())
    p = _platform(cfg, prep, min_r=1, max_r=cfg.max_replicas)
    p.config.feed_shape = "published"
    p.config.latency_summary = mode  # type: ignore[assignment]
    clock = VirtualClock(T0)
    settings = load_settings(
        None,
        overrides={
            "api": {"base_url": "http://emulator/v2", "backoff_initial_s": 0.5},
            "namespaces": [NS],
            "manage": {"names": [NAME]},
            "server": {"enabled": False},
            "loop": {"tick_interval_s": tick_s, "dry_run": scaler != "governor"},
            "scrape": {"max_age_s": 3 * tick_s},
            "defaults": {"floor": 1, "ceiling": cfg.max_replicas},
        },
        env={"HF_TOKEN": TOKEN},
    )

    async def no_sleep(_: float) -> None:
        return None

    truth: list[float] = []  # in flight at T0 + i seconds
    pairs: dict[float, list[tuple[float, float]]] = {s: [] for s in SPANS}
    missing = dict.fromkeys(SPANS, 0)
    every = round(tick_s)
    transport = httpx.ASGITransport(app=create_app(p, clock=clock, tokens={TOKEN: BOT}))
    async with make_client(
        settings, transport=transport, sleep=no_sleep, monotonic=clock.now
    ) as client:
        gov = Governor(settings, clock=clock, client=client)
        for sec in range(int(prep.end) + 1):
            p.advance_to(T0 + sec)
            truth.append(float(p.pending_requests(NS, NAME)))
            if sec == 0 or sec % every:
                continue
            now = T0 + sec
            clock.set(now)
            await gov.tick()  # scrapes the feed into its window (and acts, unless dry-run)
            window = gov.windows.get(f"{NS}/{NAME}")
            for span in SPANS:
                got = window.derived_in_flight(span_s=span, now=now)
                if got is None:
                    missing[span] += 1
                    continue
                lo = sec - round(got.span_s or span)
                seen = truth[lo + 1 : sec + 1]
                pairs[span].append((got.value, sum(seen) / len(seen)))
    return {
        "load": name,
        "split": load.split,
        "shape": load.shape,
        "scaler": scaler,
        "summary": mode,
        "hours": round(prep.end / 3600.0, 2),
        "spans": {f"{s:g}s": _stats(pairs[s], missing[s]) for s in SPANS},
    }


def run_load(name: str, mode: str, scaler: str, tick_s: float) -> dict[str, Any]:
    """One load under one summary convention and one scaler: the error per span."""
    import asyncio

    from controller.logs import configure_logging

    configure_logging(fmt="console", level="error")
    started = time.perf_counter()
    row = asyncio.run(_replay(name, mode, scaler, tick_s))
    row["runtime_s"] = round(time.perf_counter() - started, 1)
    return row


def _fmt(v: float | None, pct: str = "") -> str:
    """A figure; `pct` "abs" or "signed" renders a ratio as a percentage."""
    if v is None:
        return "-"
    if pct:
        return f"{100 * v:+.0f} %" if pct == "signed" else f"{100 * v:.0f} %"
    return f"{v:.2f}"


TABLES = (
    ("governor", "window", 60.0),
    ("governor", "window", 15.0),
    ("governor", "cumulative", 60.0),
    ("governor", "cumulative", 15.0),
    ("platform", "window", 60.0),
)
SCALED = {
    "governor": "Governor's default (slo_target) scaling on the estimate",
    "platform": "The platform's autoscaler scaling (Governor in dry-run)",
}


def _md(rows: list[dict[str, Any]], meta: dict[str, Any]) -> str:
    out = [
        "# Derived concurrency (Little's law) vs the emulator's ground truth",
        "",
        f"`{meta['command']}` on {meta['machine']}, Python {meta['python']}, "
        f"{meta['runtime_s']:.0f} s. Method: the docstring of `benchmarks/derived_concurrency.py`; "
        'discussion: docs/signals.md, section "Derived concurrency".',
        "",
        "Errors in requests in flight (estimate - truth, the truth being the mean over the "
        "estimate's own interval); relative error where the truth is >= 1; bias is the mean "
        "signed error, relative bias sum(estimate) / sum(truth) - 1. Busy ticks only.",
        "",
    ]
    for scaler, mode, span in TABLES:
        if not any(r["scaler"] == scaler and r["summary"] == mode for r in rows):
            continue
        key = f"{span:g}s"
        out += [
            f"## {SCALED[scaler]}, summary `{mode}`, span {key}",
            "",
            "| load | split | shape | busy ticks | no estimate | mean truth | abs p50 | "
            "abs p90 | rel p50 | rel p90 | bias | rel bias |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for r in (r for r in rows if r["summary"] == mode and r["scaler"] == scaler):
            s = r["spans"][key]
            out.append(
                f"| {r['load']} | {r['split']} | {r['shape']} | {s['busy_ticks']} | "
                f"{s['no_estimate']} | {_fmt(s['truth_mean'])} | {_fmt(s['abs_p50'])} | "
                f"{_fmt(s['abs_p90'])} | {_fmt(s['rel_p50'], 'abs')} | "
                f"{_fmt(s['rel_p90'], 'abs')} | {_fmt(s['bias'])} | "
                f"{_fmt(s['rel_bias'], 'signed')} |"
            )
        out.append("")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", action="append", help="load name (repeatable); default: all")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--tick", type=float, default=15.0, help="scrape interval, s")
    ap.add_argument("--out", type=Path, default=RESULTS)
    a = ap.parse_args(argv)
    from controller.backtest.loads import LOADS

    names = a.only or [ld.name for ld in LOADS]
    started = time.perf_counter()
    tasks = [(n, m, sc) for n in names for sc, m, span in TABLES if span == SPANS[0]]
    with ProcessPoolExecutor(max_workers=a.jobs) as ex:
        futs = [ex.submit(run_load, n, m, sc, a.tick) for n, m, sc in tasks]
        rows = [f.result() for f in futs]
    meta = {
        "command": shlex.join(["python", "benchmarks/derived_concurrency.py", *(argv or [])]),
        "machine": cpu_model(),
        "python": platform.python_version(),
        "versions": versions(["prometheus-client"]),
        "runtime_s": round(time.perf_counter() - started, 1),
        "tick_s": a.tick,
    }
    a.out.mkdir(parents=True, exist_ok=True)
    (a.out / "derived_concurrency.json").write_text(
        json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n"
    )
    (a.out / "derived_concurrency.md").write_text(_md(rows, meta) + "\n")
    print(_md(rows, meta))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
