"""Hourly prices and accelerator counts per instance, from the packaged `data/pricing.csv`.

The CSV is a copy of the platform's pricing page (one row per vendor / instance type / size). Its
`accelerator` column says `inf2` for Inferentia rows; the API calls that accelerator kind `neuron`,
so `PriceRow.accelerator` holds the API's kind (`cpu`, `gpu` or `neuron`).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from functools import lru_cache
from importlib import resources
from typing import Any, Protocol

import structlog

from controller.errors import ConfigError
from controller.platform.models import AnyEndpoint

__all__ = ["PriceBook", "PriceDiff", "PriceRow", "load_pricing", "lookup_price", "pricing_version"]

log = structlog.get_logger("governor.cost")


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


# -- price book ---------------------------------------------------------------------------------


@lru_cache(maxsize=1)
def pricing_version() -> dict[str, str]:
    """`version`, `source`, `retrieved` of the shipped pricing table."""
    text = (
        resources.files("controller").joinpath("data/pricing.version").read_text(encoding="utf-8")
    )
    out: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            k, _, v = line.partition("=")
            out[k.strip()] = v.strip()
    return out


@dataclass(frozen=True, slots=True)
class PriceDiff:
    vendor: str
    instance_type: str
    instance_size: str
    ours: float | None
    api: float | None


class _OverrideLike(Protocol):
    vendor: str
    instance_type: str
    instance_size: str
    usd_per_hour: float
    accelerators: int | None
    accelerator: str | None


class PriceBook:
    """Rates by `(vendor, instance_type, instance_size)`: the table, then the overrides.

    `lookup` returns None for an unknown instance, logs a warning the first time it sees it, and
    remembers it in `unknown` (exported as `governor_cost_unknown_instances`).
    """

    def __init__(
        self,
        overrides: Sequence[_OverrideLike] = (),
        *,
        table: Mapping[tuple[str, str, str], PriceRow] | None = None,
        where: str = "pricing.overrides",
    ) -> None:
        rows = dict(load_pricing() if table is None else table)
        for i, o in enumerate(overrides):
            key = (o.vendor, o.instance_type, o.instance_size)
            base = rows.get(key)
            if base is None:
                if o.accelerators is None:
                    raise ConfigError(
                        f"{where}[{i}].accelerators: required for {'/'.join(key)}, which is not "
                        "in the pricing table"
                    )
                kind = o.accelerator or ("gpu" if o.accelerators > 0 else "cpu")
                rows[key] = PriceRow(
                    vendor=o.vendor,
                    accelerator=kind,
                    instance_type=o.instance_type,
                    instance_size=o.instance_size,
                    usd_per_hour=o.usd_per_hour,
                    accelerators=o.accelerators,
                    accelerator_memory_gb=None,
                    vcpus=None,
                    ram_gb=None,
                    architecture="",
                    deprecated=False,
                )
            else:
                if o.accelerator is not None and o.accelerator != base.accelerator:
                    raise ConfigError(
                        f"{where}[{i}].accelerator: {'/'.join(key)} is {base.accelerator} in the "
                        f"pricing table, not {o.accelerator}"
                    )
                rows[key] = replace(
                    base,
                    usd_per_hour=o.usd_per_hour,
                    accelerators=base.accelerators if o.accelerators is None else o.accelerators,
                )
        self.rows = rows
        self.overridden = frozenset((o.vendor, o.instance_type, o.instance_size) for o in overrides)
        self.unknown: set[tuple[str, str, str]] = set()

    def lookup(self, vendor: str, instance_type: str, instance_size: str) -> PriceRow | None:
        key = (vendor, instance_type, instance_size)
        row = self.rows.get(key)
        if row is None and key not in self.unknown:
            self.unknown.add(key)
            log.warning(
                "price_unknown",
                instance="/".join(key),
                detail="no rate in the pricing table or pricing.overrides; its cost is reported "
                "as unknown, not zero",
            )
        return row

    def for_endpoint(self, ep: AnyEndpoint) -> PriceRow | None:
        c = ep.compute
        return self.lookup(ep.provider.vendor, c.instance_type, c.instance_size)

    def diff_provider(self, provider: Mapping[str, Any]) -> list[PriceDiff]:
        """Rates that differ between this book and a `GET /provider[/{ns}]` answer."""
        api: dict[tuple[str, str, str], float] = {}
        for v in provider.get("vendors") or []:
            for r in v.get("regions") or []:
                for c in r.get("computes") or []:
                    try:
                        key = (v["name"], c["instanceType"], c["instanceSize"])
                        api[key] = float(c["pricePerHour"])
                    except (KeyError, TypeError, ValueError):
                        continue
        out = []
        for key in sorted(set(api) | set(self.rows)):
            ours = self.rows[key].usd_per_hour if key in self.rows else None
            theirs = api.get(key)
            if theirs is None or ours is None or abs(ours - theirs) > 1e-9:
                if theirs is None and key in self.overridden:
                    continue  # a private instance only we know about
                out.append(PriceDiff(*key, ours=ours, api=theirs))
        return out
