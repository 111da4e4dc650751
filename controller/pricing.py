"""Hourly prices and accelerator counts per instance, from the packaged `data/pricing.csv`.

The CSV is a copy of the platform's pricing page (one row per vendor / instance type / size). Its
`accelerator` column says `inf2` for Inferentia rows; the API calls that accelerator kind `neuron`,
so `PriceRow.accelerator` holds the API's kind (`cpu`, `gpu` or `neuron`).
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

__all__ = ["PriceRow", "load_pricing", "lookup_price"]

_KIND = {"cpu": "cpu", "gpu": "gpu", "inf2": "neuron", "neuron": "neuron"}


@dataclass(frozen=True)
class PriceRow:
    vendor: str
    accelerator: str  # API accelerator kind: cpu | gpu | neuron
    instance_type: str
    instance_size: str
    usd_per_hour: float
    accelerators: int  # GPUs or Inferentia chips per replica; 0 for CPU
    accelerator_memory_gb: float | None
    vcpus: int | None
    ram_gb: float | None
    architecture: str
    deprecated: bool

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.vendor, self.instance_type, self.instance_size)


def _opt_float(s: str) -> float | None:
    s = s.strip()
    return float(s) if s else None


def _opt_int(s: str) -> int | None:
    s = s.strip()
    return int(float(s)) if s else None


@lru_cache(maxsize=1)
def load_pricing() -> dict[tuple[str, str, str], PriceRow]:
    """All rows keyed by `(vendor, instance_type, instance_size)`; read once and cached."""
    text = resources.files("controller").joinpath("data/pricing.csv").read_text(encoding="utf-8")
    rows: dict[tuple[str, str, str], PriceRow] = {}
    for rec in csv.DictReader(io.StringIO(text)):
        row = PriceRow(
            vendor=rec["vendor"].strip(),
            accelerator=_KIND.get(rec["accelerator"].strip(), rec["accelerator"].strip()),
            instance_type=rec["instance_type"].strip(),
            instance_size=rec["instance_size"].strip(),
            usd_per_hour=float(rec["usd_per_hour"]),
            accelerators=int(float(rec["accelerators"] or 0)),
            accelerator_memory_gb=_opt_float(rec.get("accelerator_memory_gb") or ""),
            vcpus=_opt_int(rec.get("vcpus") or ""),
            ram_gb=_opt_float(rec.get("ram_gb") or ""),
            architecture=(rec.get("architecture") or "").strip(),
            deprecated=(rec.get("deprecated") or "").strip().lower() == "yes",
        )
        rows[row.key] = row
    return rows


def lookup_price(vendor: str, instance_type: str, instance_size: str) -> PriceRow | None:
    return load_pricing().get((vendor, instance_type, instance_size))
