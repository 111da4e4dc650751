"""Load patterns for the emulated platform: request rates (requests/second) as functions of time.

A pattern is a small frozen dataclass with `rate(t_rel)`, where `t_rel` is seconds since the
pattern was attached to an endpoint (negative `t_rel` means "not started yet": rate 0). The
platform turns rates into seeded Poisson arrivals; patterns themselves hold no randomness.

`Trace` is different: it carries explicit arrival offsets (for replaying recorded traffic) and the
platform consumes them directly instead of sampling.

Patterns round-trip through JSON (`pattern_to_json` / `pattern_from_json`) so the admin route
`POST /_emulator/load` and scenario files can carry them:

    {"kind": "constant", "rps": 3}
    {"kind": "piecewise", "points": [[0, 0.5], [1800, 12], [3600, 0.5]]}
    {"kind": "ramp", "start_rps": 1, "end_rps": 10, "duration_s": 600}
    {"kind": "diurnal", "base": 1, "peak": 8, "period_s": 86400, "phase_s": 0}
    {"kind": "burst", "base": 0, "peak": 5, "start_s": 60, "duration_s": 120, "period_s": null}
    {"kind": "trace", "arrivals": [0.1, 0.5, 2.25]}
    {"kind": "trace", "arrivals": [0.1, 0.5], "service_s": [1.2, 7.5]}
"""

from __future__ import annotations

import bisect
import math
from dataclasses import MISSING, dataclass, field, fields
from typing import Any, Protocol, runtime_checkable

__all__ = [
    "MAX_RPS",
    "Burst",
    "Constant",
    "Diurnal",
    "LoadPattern",
    "Piecewise",
    "Ramp",
    "Trace",
    "pattern_from_json",
    "pattern_to_json",
]


@runtime_checkable
class LoadPattern(Protocol):
    def rate(self, t_rel: float) -> float:
        """Mean requests per second at `t_rel` seconds after the pattern started."""
        ...


@dataclass(frozen=True)
class Constant:
    rps: float

    def rate(self, t_rel: float) -> float:
        return self.rps if t_rel >= 0 else 0.0


@dataclass(frozen=True)
class Piecewise:
    """Linear interpolation between `(t_s, rps)` points; flat outside them."""

    points: tuple[tuple[float, float], ...]

    def __post_init__(self) -> None:
        pts = tuple(sorted((float(t), float(r)) for t, r in self.points))
        if not pts:
            raise ValueError("Piecewise needs at least one (t_s, rps) point")
        object.__setattr__(self, "points", pts)
        object.__setattr__(self, "_ts", tuple(t for t, _ in pts))

    def rate(self, t_rel: float) -> float:
        if t_rel < 0:
            return 0.0
        pts = self.points
        ts: tuple[float, ...] = self._ts  # type: ignore[attr-defined]
        i = bisect.bisect_right(ts, t_rel)
        if i == 0:
            return pts[0][1]
        if i == len(pts):
            return pts[-1][1]
        (t0, r0), (t1, r1) = pts[i - 1], pts[i]
        if t1 == t0:
            return r1
        r = r0 + (r1 - r0) * (t_rel - t0) / (t1 - t0)
        if not math.isfinite(r):  # points ~1e308 apart: inf / inf; the fraction first is finite
            r = r0 + (r1 - r0) * ((t_rel - t0) / (t1 - t0))
        return r


@dataclass(frozen=True)
class Ramp:
    """Linear from `start_rps` to `end_rps` over `duration_s`, then flat at `end_rps`."""

    start_rps: float
    end_rps: float
    duration_s: float

    def rate(self, t_rel: float) -> float:
        if t_rel < 0:
            return 0.0
        if self.duration_s <= 0 or t_rel >= self.duration_s:
            return self.end_rps
        return self.start_rps + (self.end_rps - self.start_rps) * t_rel / self.duration_s


@dataclass(frozen=True)
class Diurnal:
    """Cosine wave: `base` at t=-phase_s, `peak` half a period later."""

    base: float
    peak: float
    period_s: float = 86_400.0
    phase_s: float = 0.0

    def rate(self, t_rel: float) -> float:
        if t_rel < 0:
            return 0.0
        x = 2 * math.pi * (t_rel + self.phase_s) / self.period_s
        if not math.isfinite(x):  # a tiny period or a huge phase: reduce to one period first
            x = 2 * math.pi * (math.fmod(t_rel + self.phase_s, self.period_s) / self.period_s)
        return self.base + (self.peak - self.base) * (1 - math.cos(x)) / 2


@dataclass(frozen=True)
class Burst:
    """`peak` during `[start_s, start_s + duration_s)` (repeated every `period_s` if set), else
    `base`."""

    base: float
    peak: float
    start_s: float
    duration_s: float
    period_s: float | None = None

    def rate(self, t_rel: float) -> float:
        if t_rel < 0:
            return 0.0
        x = t_rel - self.start_s
        if x < 0:
            return self.base
        if self.period_s:
            x %= self.period_s
        return self.peak if x < self.duration_s else self.base


@dataclass(frozen=True)
class Trace:
    """Explicit arrival offsets (seconds after the pattern started), replayed exactly.

    `service_s` (optional, same length as `arrivals`) gives each request its own service time in
    seconds (e.g. from its token counts); when empty the platform samples service times as usual.
    """

    arrivals: tuple[float, ...] = field(default=())
    service_s: tuple[float, ...] = field(default=())

    def __post_init__(self) -> None:
        if self.service_s:
            if len(self.service_s) != len(self.arrivals):
                raise ValueError(
                    f"service_s has {len(self.service_s)} values for {len(self.arrivals)} arrivals"
                )
            pairs = sorted(
                (float(a), float(s)) for a, s in zip(self.arrivals, self.service_s, strict=True)
            )
            object.__setattr__(self, "arrivals", tuple(a for a, _ in pairs))
            object.__setattr__(self, "service_s", tuple(s for _, s in pairs))
            return
        object.__setattr__(self, "arrivals", tuple(sorted(float(a) for a in self.arrivals)))

    def rate(self, t_rel: float) -> float:
        """Average rate over the surrounding minute (informational; arrivals are replayed)."""
        lo = bisect.bisect_left(self.arrivals, t_rel - 30)
        hi = bisect.bisect_left(self.arrivals, t_rel + 30)
        return (hi - lo) / 60.0


_KINDS: dict[str, type] = {
    "constant": Constant,
    "piecewise": Piecewise,
    "ramp": Ramp,
    "diurnal": Diurnal,
    "burst": Burst,
    "trace": Trace,
}


def pattern_to_json(pattern: LoadPattern) -> dict[str, Any]:
    for kind, cls in _KINDS.items():
        if type(pattern) is cls:
            out: dict[str, Any] = {"kind": kind}
            for name in cls.__dataclass_fields__:  # type: ignore[attr-defined]
                value = getattr(pattern, name)
                out[name] = [list(p) for p in value] if name == "points" else value
                if name in ("arrivals", "service_s"):
                    out[name] = list(value)
            if kind == "trace" and not out["service_s"]:
                del out["service_s"]
            return out
    return {"kind": type(pattern).__name__}


MAX_RPS = 10_000.0  # default bound on any rate a pattern names (the admin route's `max_load_rps`)
_RATE_FIELDS = frozenset({"rps", "start_rps", "end_rps", "base", "peak"})
_POSITIVE_FIELDS = frozenset({"period_s"})  # divisors: a zero period would stop the world
_NON_NEGATIVE_FIELDS = frozenset({"duration_s"})


def _number(where: str, v: Any) -> float:
    """A finite number (not a bool): the world steps on these, so NaN or infinity would hang or
    crash it for every route."""
    if isinstance(v, bool) or not isinstance(v, int | float):
        raise ValueError(f"{where}: expected a number, got {v!r}")
    f = float(v)
    if not math.isfinite(f):
        raise ValueError(f"{where}: expected a finite number, got {v!r}")
    return f


def _check_fields(cls: type, kwargs: dict[str, Any], *, max_rps: float) -> None:
    """Each numeric field a finite number in its range; null only where the field's default is
    null (`burst.period_s`): a null rate was once accepted and then broke every later step of
    the world (`None > 0`), so every route answered a bare 500."""
    declared = fields(cls)
    for f in declared:
        if f.name not in kwargs and f.default is MISSING and f.default_factory is MISSING:
            raise ValueError(f"pattern.{f.name}: required for this kind")
    nullable = {f.name for f in declared if f.default is None}
    for k, v in kwargs.items():
        if k in ("points", "arrivals", "service_s") or (v is None and k in nullable):
            continue
        f = _number(f"pattern.{k}", v)
        if k in _RATE_FIELDS and not 0 <= f <= max_rps:
            raise ValueError(f"pattern.{k}: expected a rate from 0 to {max_rps:g} rps, got {v!r}")
        if k in _POSITIVE_FIELDS and f <= 0:
            raise ValueError(f"pattern.{k}: expected a positive number of seconds, got {v!r}")
        if k in _NON_NEGATIVE_FIELDS and f < 0:
            raise ValueError(f"pattern.{k}: expected seconds >= 0, got {v!r}")


def _points(raw: Any, *, max_rps: float) -> tuple[tuple[float, float], ...]:
    if not isinstance(raw, list | tuple):
        raise ValueError("pattern.points: expected a list of [t_s, rps] pairs")
    out = []
    for i, p in enumerate(raw):
        if not isinstance(p, list | tuple) or len(p) != 2:
            raise ValueError(f"pattern.points[{i}]: expected a [t_s, rps] pair")
        t = _number(f"pattern.points[{i}][0]", p[0])
        r = _number(f"pattern.points[{i}][1]", p[1])
        if not 0 <= r <= max_rps:
            raise ValueError(f"pattern.points[{i}]: rate from 0 to {max_rps:g} rps, got {r!r}")
        out.append((t, r))
    return tuple(out)


def _series(name: str, raw: Any, *, minimum: float | None = None) -> tuple[float, ...]:
    if not isinstance(raw, list | tuple):
        raise ValueError(f"pattern.{name}: expected a list of seconds")
    vals = tuple(_number(f"pattern.{name}[{i}]", v) for i, v in enumerate(raw))
    if minimum is not None and any(v < minimum for v in vals):
        raise ValueError(f"pattern.{name}: expected seconds >= {minimum:g}")
    return vals


def pattern_from_json(data: Any, *, max_rps: float = MAX_RPS) -> LoadPattern:
    """Build a pattern from its JSON form; raises ValueError naming the bad field. Numbers must
    be finite, rates within [0, `max_rps`], periods positive and durations not negative."""
    if not isinstance(data, dict):
        raise ValueError("pattern: expected an object with a 'kind' field")
    kind = data.get("kind")
    cls = _KINDS.get(kind) if isinstance(kind, str) else None
    if cls is None:
        raise ValueError(f"pattern.kind: expected one of {sorted(_KINDS)}, got {kind!r}")
    kwargs = {k: v for k, v in data.items() if k != "kind"}
    unknown = set(kwargs) - {f.name for f in fields(cls)}
    if unknown:
        raise ValueError(f"pattern: unknown field(s) {sorted(unknown)} for kind {kind!r}")
    _check_fields(cls, kwargs, max_rps=max_rps)
    try:
        if cls is Piecewise:
            kwargs["points"] = _points(kwargs.get("points", ()), max_rps=max_rps)
        elif cls is Trace:
            kwargs["arrivals"] = _series("arrivals", kwargs.get("arrivals", ()))
            kwargs["service_s"] = _series("service_s", kwargs.get("service_s", ()), minimum=0)
        return cls(**kwargs)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"pattern ({kind}): {exc}") from exc
