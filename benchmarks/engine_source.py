"""The error of reading an endpoint's load from one replica's engine metrics (feed_source: engine).

    python benchmarks/engine_source.py          # prints one table (a few seconds)

A scrape of `<status.url>/metrics` reaches one replica behind the platform's load balancer;
Governor multiplies that replica's in-flight count by the ready replicas (`per_replica_estimate`).
This replays the emulator (constant Poisson-like load, 2 s service, 4 slots per replica, its queue
spread evenly over the replicas, each GET answered by the next replica in turn) and compares, once
a second of virtual time for an hour, the estimate with the emulator's true in-flight count:
the bias (mean of estimate - truth) and the mean absolute error, both relative to the mean truth.
The emulator's balancer is idealised (an even split); a real one that is uneven adds its own skew.
"""

from __future__ import annotations

import statistics
import sys

import harness

sys.path.insert(0, str(harness.ROOT))

from controller.emulator.load import Constant
from controller.emulator.platform import Platform, SimParams
from controller.platform.models import UserRef
from controller.platform.scrape import parse_feed, per_replica_estimate

T0 = 1_790_000_000.0
NS = "bench"
USER = UserRef(id="u-governor", name="governor-bot")


def run(replicas: int, utilisation: float, seconds: int = 3600) -> tuple[float, float, float]:
    p = Platform(start=T0, seed=11)
    p.set_quota(NS, "aws", "gpu", 1000)
    body = {
        "name": "ep",
        "type": "protected",
        "compute": {
            "accelerator": "gpu",
            "instanceType": "nvidia-l4",
            "instanceSize": "x1",
            "scaling": {"minReplica": replicas, "maxReplica": replicas, "scaleToZeroTimeout": None},
        },
        "provider": {"vendor": "aws", "region": "us-east-1"},
        "model": {"repository": "gpt2", "framework": "pytorch", "task": "text-generation"},
    }
    # 4 slots x 2 s per request: a replica serves 2 req/s at full use.
    rate = 2.0 * replicas * utilisation
    sim = SimParams(cold_start_s=1.0, concurrency=4, service_time_s=2.0, feed="tgi")
    p.create(NS, body, by=USER, sim=sim, load=Constant(rate), ready=True)
    p.advance_to(T0 + 120)  # past the start-up transient
    diffs, truths = [], []
    for i in range(seconds):
        p.advance_to(T0 + 120 + i)
        truth = p.engine_load(NS, "ep")
        got = p.render_replica_engine(NS, "ep")
        assert got is not None
        one = parse_feed(got[0], at=float(i))
        est = per_replica_estimate(one, replicas).pending
        assert est is not None
        diffs.append(est - (truth.waiting + truth.running))
        truths.append(truth.waiting + truth.running)
    mean_truth = statistics.fmean(truths)
    bias = statistics.fmean(diffs) / mean_truth
    mae = statistics.fmean(abs(d) for d in diffs) / mean_truth
    return mean_truth, bias, mae


def main() -> None:
    print("| ready replicas | utilisation | mean in flight | bias | mean abs error |")
    print("|---:|---:|---:|---:|---:|")
    for replicas in (2, 4, 8):
        for util in (0.5, 0.9):
            truth, bias, mae = run(replicas, util)
            print(f"| {replicas} | {util:.0%} | {truth:.1f} | {bias:+.1%} | {mae:.1%} |")


if __name__ == "__main__":
    main()
