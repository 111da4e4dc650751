"""The capacity model right-sizing replays with: per accelerator, memory and relative throughput.

Why bandwidth: an LLM's decode step reads every weight once per generated token, so on one card
a replica's token rate is bounded by memory bandwidth long before compute (the roofline argument
the ServiceModel defaults in `controller.backtest.simulate` rest on). The default throughput of an
accelerator relative to another is therefore the ratio of their memory bandwidths; an operator who
has measured better ratios sets them (`throughput` in the `right_sizing` policy's parameters).

Sources (vendor spec sheets; memory per accelerator is what the packaged pricing table says when
it says it, else the sheet's figure):

| type | GB | GB/s | source |
|---|---|---|---|
| nvidia-t4 | 16 | 320 | NVIDIA T4 Tensor Core GPU datasheet (GDDR6) |
| nvidia-l4 | 24 | 300 | NVIDIA L4 Tensor Core GPU datasheet (GDDR6) |
| nvidia-a10g | 24 | 600 | AWS EC2 G5 (A10G, 24 GB GDDR6; 600 GB/s as the A10, Baseten) |
| nvidia-l40s | 48 | 864 | NVIDIA L40S datasheet (GDDR6) |
| nvidia-a100 | 80 | 2039 | NVIDIA A100 80GB datasheet, SXM (HBM2e) |
| nvidia-h100 | 80 | 3350 | NVIDIA H100 datasheet, SXM (HBM3) |
| nvidia-h200 | 141 | 4800 | NVIDIA H200 datasheet (HBM3e) |
| nvidia-b200 | 180 | 8000 | NVIDIA HGX B200 spec (per GPU: 1.44 TB and 64 TB/s over 8) |
| inf2 | 32 | 820 | AWS Neuron docs, Inferentia2 architecture (HBM per chip) |

A replica of n accelerators is modelled as one engine sharded over them (tensor parallel): its
memory is n x the card's and its bandwidth n x the card's x `tp_efficiency` (the collective
communication tensor parallelism adds; 1 for one card). What this model cannot see is listed in
docs/right-sizing.md ("Limits").
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from controller.cost.pricing import PriceRow

__all__ = [
    "ACCELERATORS",
    "AcceleratorSpec",
    "CandidateCapacity",
    "candidate_rows",
    "fits",
    "model_memory_from_feed",
    "replica_bandwidth",
    "replica_memory_gb",
    "scale_capacity",
]


@dataclass(frozen=True, slots=True)
class AcceleratorSpec:
    memory_gb: float  # per accelerator
    bandwidth_gbps: float  # per accelerator, GB/s
    source: str


ACCELERATORS: Mapping[str, AcceleratorSpec] = {
    "nvidia-t4": AcceleratorSpec(16, 320, "NVIDIA T4 datasheet"),
    "nvidia-l4": AcceleratorSpec(24, 300, "NVIDIA L4 datasheet"),
    "nvidia-a10g": AcceleratorSpec(24, 600, "AWS EC2 G5 / NVIDIA A10 datasheet"),
    "nvidia-l40s": AcceleratorSpec(48, 864, "NVIDIA L40S datasheet"),
    "nvidia-a100": AcceleratorSpec(80, 2039, "NVIDIA A100 80GB SXM datasheet"),
    "nvidia-h100": AcceleratorSpec(80, 3350, "NVIDIA H100 SXM datasheet"),
    "nvidia-h200": AcceleratorSpec(141, 4800, "NVIDIA H200 datasheet"),
    "nvidia-b200": AcceleratorSpec(180, 8000, "NVIDIA HGX B200 spec"),
    "inf2": AcceleratorSpec(32, 820, "AWS Neuron docs: Inferentia2 architecture"),
}


def replica_memory_gb(row: PriceRow) -> float | None:
    """Accelerator memory of one replica: the pricing table's figure, else n x the spec sheet's;
    None for CPU or an accelerator the model does not know."""
    if row.accelerators <= 0:
        return None
    if row.accelerator_memory_gb:
        return float(row.accelerator_memory_gb)
    spec = ACCELERATORS.get(row.instance_type)
    return None if spec is None else row.accelerators * spec.memory_gb


def replica_bandwidth(
    row: PriceRow, *, tp_efficiency: float, throughput: Mapping[str, float] | None = None
) -> float | None:
    """One replica's effective decode rate in GB/s (or in the operator's `throughput` units per
    card when set for this type): n x per-card x `tp_efficiency` when sharded over n > 1."""
    if row.accelerators <= 0:
        return None
    per_card: float | None = None
    if throughput and row.instance_type in throughput:
        per_card = float(throughput[row.instance_type])
    else:
        spec = ACCELERATORS.get(row.instance_type)
        per_card = None if spec is None else spec.bandwidth_gbps
    if per_card is None:
        return None
    eff = 1.0 if row.accelerators == 1 else tp_efficiency
    return row.accelerators * per_card * eff


def fits(row: PriceRow, model_gb: float, *, headroom: float) -> bool:
    """The model's weights plus `headroom` (a share of them, for KV cache and activations) fit in
    the replica's accelerator memory."""
    mem = replica_memory_gb(row)
    return mem is not None and model_gb * (1.0 + headroom) <= mem + 1e-9


@dataclass(frozen=True, slots=True)
class CandidateCapacity:
    """What one candidate instance serves, relative to the instance the endpoint runs on."""

    service_s: float  # per request
    concurrency: int  # requests one replica serves at once
    speed: float  # candidate bandwidth / current bandwidth
    memory_gb: float
    kv_ratio: float  # the candidate's memory left after the model / the current's


def scale_capacity(
    current: PriceRow,
    candidate: PriceRow,
    *,
    model_gb: float,
    service_s: float,
    concurrency: float,
    tp_efficiency: float,
    max_concurrency_ratio: float,
    throughput: Mapping[str, float] | None = None,
) -> CandidateCapacity | None:
    """The candidate's per-request service time and concurrency, from the current instance's.

    Service time scales with 1 / relative bandwidth (decode is memory-bound). Concurrency, the
    sequences a replica batches, scales with the memory left for the KV cache after the weights,
    capped at `max_concurrency_ratio` x the current (past some batch the step turns compute-bound
    and the bandwidth argument no longer holds). None when either instance is outside the model.
    """
    bw_cur = replica_bandwidth(current, tp_efficiency=tp_efficiency, throughput=throughput)
    bw_new = replica_bandwidth(candidate, tp_efficiency=tp_efficiency, throughput=throughput)
    mem_cur, mem_new = replica_memory_gb(current), replica_memory_gb(candidate)
    if not bw_cur or not bw_new or mem_cur is None or mem_new is None:
        return None
    speed = bw_new / bw_cur
    room_cur, room_new = mem_cur - model_gb, mem_new - model_gb
    if room_new <= 0:
        return None
    kv_ratio = room_new / room_cur if room_cur > 0 else max_concurrency_ratio
    kv_ratio = min(kv_ratio, max_concurrency_ratio)
    conc = max(1, math.floor(concurrency * kv_ratio + 1e-9))
    return CandidateCapacity(
        service_s=service_s / speed,
        concurrency=conc,
        speed=speed,
        memory_gb=mem_new,
        kv_ratio=kv_ratio,
    )


def model_memory_from_feed(row: PriceRow, peak_gpu_memory_percent: float) -> float | None:
    """GB the model holds on `row`, from the feed's peak GPU memory use (percent of the replica's
    accelerator memory). An engine that reserves its KV cache up front (vLLM's
    `gpu_memory_utilization`, 0.9 by default) reads near 90 % whatever the model: this then
    overstates the model, which only makes the fit stricter (no smaller instance is proposed)."""
    mem = replica_memory_gb(row)
    if mem is None or not 0 < peak_gpu_memory_percent <= 100:
        return None
    return mem * peak_gpu_memory_percent / 100.0


def candidate_rows(
    current: PriceRow,
    rows: Mapping[tuple[str, str, str], PriceRow],
    *,
    model_gb: float,
    headroom: float,
    allowed_types: frozenset[str] | None = None,
) -> list[PriceRow]:
    """Instances an update could move the endpoint to: the same vendor and accelerator kind (the
    API refuses a move between kinds), not deprecated, known to the capacity model, and fitting
    the model with headroom; the current instance always included (it is the baseline).
    Cheapest first."""
    out = [
        r
        for r in rows.values()
        if r.vendor == current.vendor
        and r.accelerator == current.accelerator
        and (not r.deprecated or r.key == current.key)
        and (allowed_types is None or r.instance_type in allowed_types or r.key == current.key)
        and replica_bandwidth(r, tp_efficiency=1.0) is not None
        and (r.key == current.key or fits(r, model_gb, headroom=headroom))
    ]
    return sorted(out, key=lambda r: (r.usd_per_hour, r.instance_type, r.accelerators))
