"""Signals as expressions over feed series: the recipe model and the one pass that reduces a feed.

A *recipe* says how one signal is read from a feed: an ordered list of alternatives, each a sum of
series selections (`Series`: a metric name, label matchers, a unit scale, labels whose series are
copies of one another). The first alternative whose every selection matched at least one sample is
used; the rest are fallbacks ("in flight = waiting + running, else waiting alone"). A *preset* is
one recipe per signal plus the names that identify the feed shape (`controller.platform.presets`).

Name rules, so the Accept header never changes what is found:

- `:` and `_` are the same character: prometheus_client renders `vllm:num_requests_waiting` as
  `vllm_num_requests_waiting` in OpenMetrics (checked with prometheus_client 0.26.0: the `# TYPE`
  line keeps the colon, the samples do not), and its text parser then files the samples under a
  family of their own name;
- a trailing `_total` is optional, either way (the platform's counter has none; the text parser
  adds it to typed counters; TGI/TEI counters never have it).

A series (name after those rules, plus its label set) is counted once however often the body
repeats it, under any spelling: the first occurrence wins and later ones are ignored, so a feed
served twice, or carrying both spellings, can never double a signal.

Units: request counts are plain numbers; per-replica utilisation signals (cpu, gpu, memory,
gpu_memory, kv_cache) are percent (0-100), so a 0-1 gauge such as vLLM's `kv_cache_usage_perc`
has `scale: 100`. Counters are recorded cumulative: rates are the windows' business.

Pure: no parser, no I/O. The input is any sequence of objects with `.name` and `.samples` (each
sample `.name`, `.labels`, `.value`), e.g. prometheus_client's `Metric`.
"""

from __future__ import annotations

import math
import re
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from functools import lru_cache
from typing import Any, Literal, Protocol, get_args

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from controller.errors import FeedParseError
from controller.platform.signals import FeedSample, status_class

__all__ = [
    "PER_REPLICA",
    "SCALARS",
    "SIGNAL_NAMES",
    "Preset",
    "Recipe",
    "Series",
    "SignalName",
    "base_name",
    "reduce_feed",
    "reduce_rows",
]

SignalName = Literal[
    "pending",
    "waiting",
    "running",
    "cpu",
    "gpu",
    "memory",
    "gpu_memory",
    "kv_cache",
    "requests",
    "latency",
    "latency_count",
    "latency_sum",
]
SIGNAL_NAMES: tuple[str, ...] = get_args(SignalName)
# Summed over their series into one number per sample.
SCALARS: tuple[str, ...] = ("pending", "waiting", "running", "latency_count", "latency_sum")
# Averaged per replica (the preset's replica label), one number per replica.
PER_REPLICA: tuple[str, ...] = ("cpu", "gpu", "memory", "gpu_memory", "kv_cache")

_METRIC_NAME = r"^[a-zA-Z_:][a-zA-Z0-9_:]*$"
_LABEL_NAME = r"^[a-zA-Z_][a-zA-Z0-9_]*$"


@lru_cache(maxsize=4096)
def base_name(name: str) -> str:
    """The name as matched: `:` read as `_`, a trailing `_total` dropped.

    Memoised: a feed's ~60 sample names are the same names at every scrape (bounded, so a
    hostile feed's made-up names cannot grow it)."""
    return name.replace(":", "_").removesuffix("_total")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class Series(_Strict):
    """One selection of samples, e.g. `vllm:kv_cache_usage_perc` scaled to percent."""

    name: str = Field(pattern=_METRIC_NAME, description="Metric (sample) name.")
    match: dict[str, str] = Field(
        default_factory=dict,
        description='Label matchers: label -> value, or "*" for any non-empty value.',
    )
    scale: float = Field(1.0, gt=0, le=1e9, description="Multiplier to the signal's unit.")
    collapse: tuple[str, ...] = Field(
        (),
        description="Labels whose series are copies of one value (e.g. tensor-parallel ranks): "
        "the largest is taken over them instead of a sum.",
    )
    status_label: str | None = Field(
        None, pattern=_LABEL_NAME, description="Requests only: label holding the HTTP status code."
    )
    status: Literal["2xx", "3xx", "4xx", "5xx", "other"] = Field(
        "other", description="Requests only: status class when there is no status label."
    )

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, data: Any) -> Any:
        return {"name": data} if isinstance(data, str) else data

    @field_validator("match")
    @classmethod
    def _labels(cls, v: dict[str, str]) -> dict[str, str]:
        for label in v:
            if not re.match(_LABEL_NAME, label):
                raise ValueError(f"bad label name {label!r}")
        return v

    @property
    def key(self) -> str:
        return base_name(self.name)

    def selects(self, labels: Mapping[str, str]) -> bool:
        for label, want in self.match.items():
            got = labels.get(label)
            if want == "*":
                if not got:
                    return False
            elif got != want:
                return False
        return True


Alternative = tuple[Series, ...]


class Recipe(_Strict):
    """A signal's alternatives, in order; the first whose every series matched is used."""

    alternatives: tuple[Alternative, ...] = Field(min_length=1)

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, data: Any) -> Any:
        # `[["a", "b"], ["a"]]` or `["a"]` (one alternative per name) in config files.
        if isinstance(data, list | tuple):
            return {"alternatives": [a if isinstance(a, list | tuple) else [a] for a in data]}
        return data

    @field_validator("alternatives")
    @classmethod
    def _non_empty(cls, v: tuple[Alternative, ...]) -> tuple[Alternative, ...]:
        for alt in v:
            if not alt:
                raise ValueError("an alternative needs at least one series")
            keys = [s.key for s in alt]
            if len(set(keys)) != len(keys) and not _disjoint(alt):
                raise ValueError(f"series {keys} overlap: one sample would be counted twice")
        return v


def _disjoint(alt: Alternative) -> bool:
    """Two selections of one name are allowed only when a label tells them apart."""
    for i, a in enumerate(alt):
        for b in alt[i + 1 :]:
            if a.key != b.key:
                continue
            if not any(
                k in b.match and v != "*" and b.match[k] != "*" and v != b.match[k]
                for k, v in a.match.items()
            ):
                return False
    return True


# id(preset) -> (the preset, kept alive so its id stays its own; its names()).
_preset_names: dict[int, tuple[Any, frozenset[str]]] = {}
_PRESET_NAMES_MAX = 256


class Preset(_Strict):
    """A feed shape: its recipes, the families that identify it, and where the names come from."""

    name: str = Field(pattern=r"^[a-z][a-z0-9-]*$")
    source: str = Field("", description="Where the names were read (repository, file, version).")
    detect: tuple[str, ...] = Field((), description="Any of these families selects the preset.")
    replica_label: str = Field("replica_id", pattern=_LABEL_NAME)
    recipes: dict[SignalName, Recipe] = Field(default_factory=dict)

    def names(self) -> frozenset[str]:
        """Every base name any recipe reads (the samples worth looking at).

        Remembered per preset object (asked once or twice per feed; a preset is immutable)."""
        hit = _preset_names.get(id(self))
        if hit is not None and hit[0] is self:
            return hit[1]
        got = frozenset(s.key for r in self.recipes.values() for a in r.alternatives for s in a)
        if len(_preset_names) >= _PRESET_NAMES_MAX:  # per-endpoint override copies come and go
            _preset_names.clear()
        _preset_names[id(self)] = (self, got)
        return got

    def with_overrides(self, overrides: Mapping[str, Recipe]) -> Preset:
        """This preset with some signals' recipes replaced (per-endpoint configuration)."""
        if not overrides:
            return self
        return self.model_copy(update={"recipes": {**self.recipes, **overrides}})


class _Family(Protocol):
    name: str
    samples: Sequence[Any]


# ------------------------------------------------------------------------------------- reduction


def _series_text(name: str, labels: Mapping[str, str]) -> str:
    inner = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    return f"{name}{{{inner}}}" if inner else name


def _checked(name: str, labels: Mapping[str, str], value: Any, endpoint: str | None) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise FeedParseError(
            f"{_series_text(name, labels)}: non-numeric value {value!r}", endpoint=endpoint
        )
    try:
        v = float(value)
    except OverflowError:  # an int past float's range (the parsers keep ints up to 4,300 digits)
        v = math.inf
    if not math.isfinite(v) or v < 0:
        raise FeedParseError(
            f"{_series_text(name, labels)}: impossible value {v}", endpoint=endpoint
        )
    return v


Rows = list[tuple[Mapping[str, str], float]]
Indexed = dict[str, Rows]


def index_samples(
    families: Iterable[_Family], wanted: frozenset[str], endpoint: str | None
) -> Indexed:
    """The samples of the wanted base names, each series once (first occurrence wins).

    Values are checked here: NaN, infinite or negative in any wanted series makes the feed
    unusable, except a NaN quantile (a summary with no recent observations), which is dropped.
    """
    return _index(families, wanted, endpoint, math.inf)[0]


def _index(
    families: Iterable[_Family], wanted: frozenset[str], endpoint: str | None, at: float
) -> tuple[Indexed, float]:
    """`index_samples`, and `at` or the oldest timestamp among the wanted samples if earlier
    (one pass over the samples instead of two)."""
    out: Indexed = {}
    seen: set[tuple[str, frozenset[tuple[str, str]]]] = set()
    oldest = at
    for family in families:
        for sample in family.samples:
            key = base_name(sample.name)
            if key not in wanted:
                continue
            ts = getattr(sample, "timestamp", None)  # prometheus_client Samples carry one
            if ts is not None:
                oldest = min(oldest, float(ts))
            labels = sample.labels
            ident = (key, frozenset(labels.items()))
            if ident in seen:
                continue  # the same series again (a repeated body, the other spelling)
            seen.add(ident)
            value = sample.value
            if "quantile" in labels and isinstance(value, float) and math.isnan(value):
                continue
            rows = out.get(key)
            if rows is None:
                rows = out[key] = []
            if type(value) is float and 0.0 <= value < math.inf:  # the common case, inline
                rows.append((labels, value))
            else:
                rows.append((labels, _checked(sample.name, labels, value, endpoint)))
    return out, oldest


def _select(alt: Alternative, idx: Indexed) -> list[Rows] | None:
    """Each series' matching samples, or None if any selection matched nothing."""
    picked = []
    for s in alt:
        rows = idx.get(s.key, ())
        if s.scale == 1.0 and not s.match:
            got = rows  # every row as it is (only read from here on)
        else:
            got = [(labels, v * s.scale) for labels, v in rows if s.selects(labels)]
        if not got:
            return None
        picked.append(got)
    return picked


def _choose(recipe: Recipe | None, idx: Indexed) -> tuple[Alternative, list[Rows]] | None:
    if recipe is None:
        return None
    for alt in recipe.alternatives:
        picked = _select(alt, idx)
        if picked is not None:
            return alt, picked
    return None


def _collapsed(s: Series, got: Rows) -> Rows:
    """Series differing only in `collapse` labels are one value: keep the largest of each group."""
    if not s.collapse:
        return got
    groups: dict[frozenset[tuple[str, str]], tuple[Mapping[str, str], float]] = {}
    for labels, v in got:
        g = frozenset((k, x) for k, x in labels.items() if k not in s.collapse)
        if g not in groups or v > groups[g][1]:
            groups[g] = (labels, v)
    return list(groups.values())


def _scalar(recipe: Recipe | None, idx: Indexed) -> float | None:
    chosen = _choose(recipe, idx)
    if chosen is None:
        return None
    alt, picked = chosen
    return sum(v for s, got in zip(alt, picked, strict=True) for _, v in _collapsed(s, got))


def _per_replica(recipe: Recipe | None, idx: Indexed, replica_label: str) -> dict[str, float]:
    chosen = _choose(recipe, idx)
    if chosen is None:
        return {}
    alt, picked = chosen
    acc: dict[str, list[float]] = defaultdict(list)
    for s, got in zip(alt, picked, strict=True):
        for labels, v in _collapsed(s, got):
            acc[labels.get(replica_label) or ""].append(v)
    return {r: sum(vs) / len(vs) for r, vs in acc.items()}


def _requests(
    recipe: Recipe | None, idx: Indexed, replica_label: str
) -> dict[tuple[str, str], float]:
    chosen = _choose(recipe, idx)
    if chosen is None:
        return {}
    alt, picked = chosen
    out: dict[tuple[str, str], float] = defaultdict(float)
    for s, got in zip(alt, picked, strict=True):
        for labels, v in _collapsed(s, got):
            cls = status_class(labels.get(s.status_label)) if s.status_label else s.status
            out[(labels.get(replica_label) or "", cls)] += v
    return dict(out)


def _quantiles(recipe: Recipe | None, idx: Indexed, endpoint: str | None) -> dict[float, float]:
    if recipe is None:
        return {}
    for alt in recipe.alternatives:
        out: dict[float, float] = {}
        for s in alt:
            for labels, v in idx.get(s.key, ()):
                if "quantile" not in labels or not s.selects(labels):
                    continue
                try:
                    q = float(labels["quantile"])
                except ValueError:
                    raise FeedParseError(
                        f"{_series_text(s.name, labels)}: bad quantile label", endpoint=endpoint
                    ) from None
                out[q] = max(v * s.scale, out.get(q, 0.0))
        if out:
            return dict(sorted(out.items()))
    return {}


def family_names(families: Iterable[_Family]) -> frozenset[str]:
    """Base names of the families declared and of the samples present (both spellings meet)."""
    names: set[str] = set()
    for f in families:
        names.add(base_name(f.name))
        for s in f.samples[:1]:
            names.add(base_name(s.name))
    return frozenset(names)


def reduce_feed(
    families: Sequence[_Family],
    preset: Preset,
    *,
    at: float,
    endpoint: str | None = None,
    names: frozenset[str] | None = None,
) -> FeedSample:
    """One parsed feed -> a `FeedSample` through `preset`'s recipes, stamped `at` (the scrape's
    time), or with the oldest timestamp a wanted series carries when that is earlier: freshness
    is judged per sample, so a feed re-serving hour-old samples is an hour old (issue 18).

    Raises FeedParseError for an impossible value in a series the preset reads, or when the feed
    has none of the preset's families at all (declared-but-empty families count: a feed that
    says "no data points", e.g. no replica running, is well-formed). `names`: the feed's
    `family_names`, when the caller has them already.
    """
    wanted = preset.names()
    if not ((family_names(families) if names is None else names) & wanted):
        raise FeedParseError(f"no known series in feed (preset {preset.name!r})", endpoint=endpoint)
    idx, oldest = _index(families, wanted, endpoint, at)
    return _reduced(idx, oldest, preset, endpoint)


def reduce_rows(
    rows: Iterable[tuple[str, Mapping[str, str], Any]],
    names: frozenset[str],
    preset: Preset,
    *,
    at: float,
    endpoint: str | None = None,
) -> FeedSample:
    """`reduce_feed` for the single pass's rows (`fastparse.scan_text`: name, labels, value in
    feed order, no timestamps) and its `names`; the same checks, the same sample."""
    wanted = preset.names()
    if not (names & wanted):
        raise FeedParseError(f"no known series in feed (preset {preset.name!r})", endpoint=endpoint)
    return _reduced(_index_rows(rows, wanted, endpoint), at, preset, endpoint)


def _index_rows(
    rows: Iterable[tuple[str, Mapping[str, str], Any]], wanted: frozenset[str], endpoint: str | None
) -> Indexed:
    """`_index` over plain rows (no timestamps: the single pass hands timestamped feeds on)."""
    out: Indexed = {}
    seen: set[tuple[str, frozenset[tuple[str, str]]]] = set()
    for name, labels, value in rows:
        key = base_name(name)
        if key not in wanted:
            continue
        ident = (key, frozenset(labels.items()))
        if ident in seen:
            continue
        seen.add(ident)
        if "quantile" in labels and isinstance(value, float) and math.isnan(value):
            continue
        got = out.get(key)
        if got is None:
            got = out[key] = []
        if type(value) is float and 0.0 <= value < math.inf:
            got.append((labels, value))
        else:
            got.append((labels, _checked(name, labels, value, endpoint)))
    return out


def _reduced(idx: Indexed, oldest: float, preset: Preset, endpoint: str | None) -> FeedSample:
    """The recipes applied to an index: the part both entry points share."""
    r, rl = preset.recipes, preset.replica_label
    series = _requests(r.get("requests"), idx, rl)
    requests: dict[str, float] = defaultdict(float)
    by_replica: dict[str, float] = defaultdict(float)
    for (replica, cls), v in series.items():
        requests[cls] += v
        by_replica[replica] += v
    replicas = {labels[rl] for rows in idx.values() for labels, _ in rows if labels.get(rl)}
    per = {s: _per_replica(r.get(s), idx, rl) for s in PER_REPLICA}
    return FeedSample(
        at=oldest,
        pending=_scalar(r.get("pending"), idx),
        waiting=_scalar(r.get("waiting"), idx),
        running=_scalar(r.get("running"), idx),
        requests=dict(requests),
        requests_by_replica=dict(by_replica),
        latency=_quantiles(r.get("latency"), idx, endpoint),
        latency_count=_scalar(r.get("latency_count"), idx),
        latency_sum=_scalar(r.get("latency_sum"), idx),
        cpu=per["cpu"],
        gpu=per["gpu"],
        memory=per["memory"],
        gpu_memory=per["gpu_memory"],
        kv_cache=per["kv_cache"],
        replicas_seen=frozenset(replicas),
        request_series=series,
        preset=preset.name,
    )
