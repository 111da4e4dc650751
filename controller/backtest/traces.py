"""Request traces for the backtest: a CSV loader and documented transformations.

A trace file is a CSV with a header row and one request per row:

- an **arrival time** column, one of
  - `TIMESTAMP` / `timestamp` / `time` / `arrival_time`: a date-time
    (`YYYY-MM-DD HH:MM:SS[.fffffff]`, any number of fractional digits, `T` or space, optional `Z`
    or `+HH:MM`; naive times are taken as UTC) **or** epoch seconds (a number);
  - `offset_s` / `offset` / `arrival_offset_s`: seconds since the start of the trace;
- optionally **input tokens** (`ContextTokens`, `input_tokens`, `prompt_tokens`, `tokens_in`) and
  **output tokens** (`GeneratedTokens`, `output_tokens`, `completion_tokens`, `tokens_out`):
  non-negative integers. Missing token columns mean "unknown" and the service model's defaults
  apply. Column names match case-insensitively; other columns are ignored.

The Azure LLM inference traces (Azure Public Dataset, 2023; `TIMESTAMP,ContextTokens,
GeneratedTokens`) load as they are. Rows need not be sorted. `.csv.gz` files are read transparently.
Every problem is a `TraceError` naming the file and line (`trace.csv:17: ...`), never a traceback.

Transformations (each returns a new `RequestTrace`, and its `notes` say what was done, so every
reported figure can state it):

- `speedup(f)`: time compression: arrival offsets divided by `f` (rate x f, duration / f);
- `scale_rate(f, seed)`: the same duration at `f` x the rate: each request is kept `floor(f)` times
  plus once more with probability `frac(f)` (seeded), copies spread by up to 1 s; `f < 1` thins;
- `shift(s)`: start `s` seconds later (leading idle time);
- `window(start_s, duration_s)`: the requests in `[start_s, start_s + duration_s)`, re-based to 0;
- `concat(traces, gap_s)`: one after the other with `gap_s` of idle time in between;
- `repeat(n, gap_s)`: `concat` of `n` copies.
"""

from __future__ import annotations

import csv
import gzip
import io
import math
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path

__all__ = [
    "BUNDLED",
    "RequestTrace",
    "TraceError",
    "concat",
    "load_trace",
    "parse_trace",
    "resolve_trace",
]

# Traces shipped in `controller/data/traces/` (see the README there for attribution).
BUNDLED: dict[str, str] = {
    "azure-code": "azure-llm-2023-code.csv.gz",
    "azure-conv": "azure-llm-2023-conv.csv.gz",
    # the generated loads of the suite (`controller.backtest.loads`)
    **{
        n: f"load-{n}.csv.gz"
        for n in (
            "conv-x0.5",
            "code-x1.5",
            "diurnal-day",
            "business-days",
            "code-days",
            "slow-ramp",
            "step-change",
            "flash-crowd",
            "sparse",
            "hourly-bursts",
        )
    },
}

_TIME_COLS = ("timestamp", "time", "arrival_time", "arrival")
_OFFSET_COLS = ("offset_s", "offset", "arrival_offset_s")
_IN_COLS = ("contexttokens", "input_tokens", "prompt_tokens", "tokens_in")
_OUT_COLS = ("generatedtokens", "output_tokens", "completion_tokens", "tokens_out")


class TraceError(ValueError):
    """A trace that cannot be used; the message names the file and line."""


@dataclass(frozen=True)
class RequestTrace:
    """Requests sorted by arrival: offsets in seconds from the trace's start, optional tokens."""

    name: str
    offsets: tuple[float, ...]
    input_tokens: tuple[int, ...] | None = None
    output_tokens: tuple[int, ...] | None = None
    start_epoch: float | None = None  # the first request's wall time, when the file had one
    notes: tuple[str, ...] = field(default=())

    def __len__(self) -> int:
        return len(self.offsets)

    @property
    def duration_s(self) -> float:
        return self.offsets[-1] if self.offsets else 0.0

    def _with(self, offsets: Sequence[float], idx: Sequence[int] | None, note: str) -> RequestTrace:
        def pick(col: tuple[int, ...] | None) -> tuple[int, ...] | None:
            if col is None:
                return None
            return tuple(col[i] for i in idx) if idx is not None else col

        return RequestTrace(
            self.name,
            tuple(offsets),
            pick(self.input_tokens),
            pick(self.output_tokens),
            self.start_epoch,
            (*self.notes, note),
        )

    def speedup(self, factor: float) -> RequestTrace:
        if not factor > 0:
            raise TraceError(f"speedup must be > 0, got {factor}")
        return self._with([o / factor for o in self.offsets], None, f"speedup x{factor:g}")

    def scale_rate(self, factor: float, *, seed: int = 0) -> RequestTrace:
        if not factor > 0:
            raise TraceError(f"rate scale must be > 0, got {factor}")
        rng = random.Random(f"scale_rate:{seed}:{factor}")
        whole, frac = math.floor(factor), factor - math.floor(factor)
        pairs: list[tuple[float, int]] = []
        for i, o in enumerate(self.offsets):
            n = whole + (1 if rng.random() < frac else 0)
            for k in range(n):
                pairs.append((o if k == 0 else o + rng.random(), i))
        pairs.sort()
        base = pairs[0][0] if pairs else 0.0
        return self._with(
            [o - base for o, _ in pairs], [i for _, i in pairs], f"rate x{factor:g} (seed {seed})"
        )

    def shift(self, seconds: float) -> RequestTrace:
        if seconds < 0:
            raise TraceError(f"shift must be >= 0, got {seconds}")
        return self._with([o + seconds for o in self.offsets], None, f"shifted +{seconds:g}s")

    def window(self, start_s: float, duration_s: float | None = None) -> RequestTrace:
        end = math.inf if duration_s is None else start_s + duration_s
        idx = [i for i, o in enumerate(self.offsets) if start_s <= o < end]
        span = "end" if duration_s is None else f"{start_s + duration_s:g}s"
        return self._with(
            [self.offsets[i] - start_s for i in idx], idx, f"window {start_s:g}s-{span}"
        )

    def repeat(self, n: int, *, gap_s: float = 0.0) -> RequestTrace:
        if n < 1:
            raise TraceError(f"repeat must be >= 1, got {n}")
        out = concat([self] * n, gap_s=gap_s)
        return RequestTrace(
            self.name,
            out.offsets,
            out.input_tokens,
            out.output_tokens,
            self.start_epoch,
            (*self.notes, f"repeated x{n} with {gap_s:g}s gaps"),
        )


def concat(traces: Sequence[RequestTrace], *, gap_s: float = 0.0) -> RequestTrace:
    """The traces one after the other; each starts `gap_s` after the previous one's last arrival
    (plus 1 s, so no two requests of different parts coincide)."""
    if not traces:
        raise TraceError("concat needs at least one trace")
    offsets: list[float] = []
    ins: list[int] | None = [] if all(t.input_tokens is not None for t in traces) else None
    outs: list[int] | None = [] if all(t.output_tokens is not None for t in traces) else None
    base = 0.0
    for t in traces:
        offsets.extend(base + o for o in t.offsets)
        if ins is not None:
            ins.extend(t.input_tokens or ())
        if outs is not None:
            outs.extend(t.output_tokens or ())
        base = (offsets[-1] if offsets else base) + 1.0 + gap_s
    name = "+".join(dict.fromkeys(t.name for t in traces))
    return RequestTrace(
        name,
        tuple(offsets),
        tuple(ins) if ins is not None else None,
        tuple(outs) if outs is not None else None,
        traces[0].start_epoch,
        (f"concatenation of {len(traces)} traces with {gap_s:g}s gaps",),
    )


def _parse_time(text: str) -> float:
    """Epoch seconds from a number or an ISO-like date-time with any number of fractional
    digits; raises ValueError."""
    s = text.strip()
    try:
        v = float(s)
    except ValueError:
        pass
    else:
        if not math.isfinite(v):
            raise ValueError(f"not a finite number: {s!r}")
        return v
    if not s:
        raise ValueError("empty time")
    s = s.replace("T", " ", 1)
    tz = ""
    if s.endswith("Z"):
        s, tz = s[:-1], "+00:00"
    elif len(s) > 6 and s[-6] in "+-" and s[-3] == ":":
        s, tz = s[:-6], s[-6:]
    frac = 0.0
    if "." in s:
        s, _, digits = s.partition(".")
        if not digits.isdigit():
            raise ValueError(f"bad fractional seconds {digits!r}")
        frac = float("0." + digits)
    dt = datetime.fromisoformat(s + tz)
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.timestamp() + frac


def _find(header: list[str], names: Iterable[str]) -> int | None:
    low = [h.strip().lower() for h in header]
    for n in names:
        if n in low:
            return low.index(n)
    return None


def _tokens(value: str, col: str, where: str) -> int:
    v = value.strip()
    try:
        n = int(v)
    except ValueError:
        try:
            f = float(v)
        except ValueError:
            raise TraceError(
                f"{where}: {col}: expected a whole number of tokens, got {v!r}"
            ) from None
        if not f.is_integer():
            raise TraceError(
                f"{where}: {col}: expected a whole number of tokens, got {v!r}"
            ) from None
        n = int(f)
    if n < 0:
        raise TraceError(f"{where}: {col}: expected tokens >= 0, got {n}")
    return n


def parse_trace(text: str, *, name: str = "trace", source: str = "<string>") -> RequestTrace:
    """Parse trace CSV text (see the module docstring). Raises `TraceError` with line numbers."""
    rows = csv.reader(io.StringIO(text), strict=True)
    try:
        header = next(rows)
    except StopIteration:
        raise TraceError(f"{source}: empty file (expected a header row)") from None
    except csv.Error as exc:
        raise TraceError(f"{source}:1: unreadable CSV: {exc}") from None
    t_col = _find(header, _TIME_COLS)
    o_col = _find(header, _OFFSET_COLS)
    if t_col is None and o_col is None:
        raise TraceError(
            f"{source}:1: no arrival column: expected one of "
            f"{', '.join(_TIME_COLS + _OFFSET_COLS)} (case-insensitive), got {header}"
        )
    col = t_col if t_col is not None else o_col
    assert col is not None
    col_name = header[col].strip()
    i_col, g_col = _find(header, _IN_COLS), _find(header, _OUT_COLS)
    times: list[float] = []
    ins: list[int] = []
    outs: list[int] = []
    width = len(header)
    line = 1
    try:
        for row in rows:
            line = rows.line_num
            where = f"{source}:{line}"
            if not row or all(not c.strip() for c in row):
                continue
            if len(row) != width:
                raise TraceError(f"{where}: expected {width} fields ({header}), got {len(row)}")
            try:
                t = _parse_time(row[col]) if t_col is not None else float(row[col])
            except ValueError as exc:
                raise TraceError(
                    f"{where}: {col_name}: cannot read {row[col]!r} as a time ({exc})"
                ) from None
            if not math.isfinite(t) or (t_col is None and t < 0):
                raise TraceError(f"{where}: {col_name}: expected a finite offset >= 0, got {t}")
            times.append(t)
            if i_col is not None:
                ins.append(_tokens(row[i_col], header[i_col].strip(), where))
            if g_col is not None:
                outs.append(_tokens(row[g_col], header[g_col].strip(), where))
    except csv.Error as exc:
        raise TraceError(f"{source}:{rows.line_num}: unreadable CSV: {exc}") from None
    if not times:
        raise TraceError(f"{source}: no requests (only a header)")
    order = sorted(range(len(times)), key=times.__getitem__)
    t0 = times[order[0]]
    return RequestTrace(
        name,
        tuple(times[i] - t0 for i in order),
        tuple(ins[i] for i in order) if i_col is not None else None,
        tuple(outs[i] for i in order) if g_col is not None else None,
        t0 if t_col is not None and t0 > 1e8 else None,
    )


def _read(path: Path) -> str:
    data = path.read_bytes()
    if path.suffix == ".gz":
        data = gzip.decompress(data)
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise TraceError(f"{path}: not UTF-8 text ({exc})") from None


def resolve_trace(spec: str) -> tuple[str, str]:
    """(name, text) of a trace given as a bundled name (`azure-code`, `azure-conv`) or a path."""
    if spec in BUNDLED:
        res = resources.files("controller").joinpath("data/traces", BUNDLED[spec])
        return spec, gzip.decompress(res.read_bytes()).decode("utf-8-sig")
    path = Path(spec)
    if not path.is_file():
        raise TraceError(
            f"{spec}: no such trace file (bundled traces: {', '.join(sorted(BUNDLED))})"
        )
    try:
        text = _read(path)
    except OSError as exc:
        raise TraceError(f"{spec}: cannot read: {exc}") from None
    name = path.name.removesuffix(".gz").removesuffix(".csv")
    return name, text


def load_trace(spec: str | Path) -> RequestTrace:
    """Load a bundled trace by name or a CSV file (optionally gzipped) by path."""
    name, text = resolve_trace(str(spec))
    return parse_trace(text, name=name, source=str(spec))
