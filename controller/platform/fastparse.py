"""A narrow, fast twin of `prometheus_client`'s text parser for the feed shape endpoints serve.

`scrape._families` is the reference: a body ending in `# EOF` goes to the strict OpenMetrics
parser, anything else (or an OpenMetrics body it refuses) to the lenient Prometheus text parser.
Both cost ~0.5-0.8 ms per HF-sized feed in prometheus_client 0.26, half the per-endpoint budget at
10,000 endpoints per tick. `parse_text` returns exactly what that rule returns (same `Metric`s, same
`Sample`s, same order) for bodies written in the subset below, and `None` -- "ask the library" --
for everything else, so a feed it does not fully understand costs one wasted pass, never a wrong
value.

The subset, line by line after `str.strip()` (the text parser's own view of a line):

- blank lines; `#` comments other than HELP/TYPE (so `# UNIT` and `# EOF` are no-ops, as there);
- `# HELP name` / `# HELP name doc` (the doc unescaped as the library does it);
- `# TYPE name type`, with `type` one the library's `Metric` accepts (or `untyped`);
- samples `name value` and `name{l="v",...} value`: single spaces, legacy names, no `__` labels,
  no duplicate labels, label values escaping only backslash, quote and newline, no timestamp,
  no exemplar; the value an int (kept an int, as the library keeps it) or anything `float()`
  accepts in printable ASCII without `_` (`NaN`, `+Inf`, `-1.5e-3`...).

Families are then assembled by the text parser's own state machine (ported, quirks included: a
counter's family loses `_total` or its samples gain it; an unexpected sample name becomes an untyped
one-sample family). A body ending in `# EOF` is taken only when the strict parser is certain to
refuse it, which is the platform's case: `# TYPE x counter` (then only HELP/UNIT lines for `x`)
followed by a sample named exactly `x`: the strict parser files that sample as a second family
named `x` and must raise ("Clashing name", if nothing else fails first), so the result is the text
parser's, as in `_families`. Any other `# EOF` body returns `None`.

A value is an int when the library makes it one: `int(v)`, and `float(v)` where `int` refuses, so an
integer too long for `int` (over `sys.get_int_max_str_digits()`, 4,300 by default) is the float
the library returns (inf for 4,301 nines), never an exception.

`scan_text` is the same pass without the objects: the samples as (name, labels, value) rows in
feed order, counter names as the library spells them, and `recipes.family_names`' set, which is
what `scrape.parse_feed` reduces (`recipes.reduce_rows`); `parse_text` wraps the same rows in
Metric/Sample objects, so both answer for exactly the same bodies.

`deadline` (a `time.monotonic()` reading) bounds the pass: past it, every 1,024 lines,
`ParseOvertime` is raised with the line reached, which `scrape` turns into a parse error.

The proof is tests/test_fastparse.py (a hypothesis differential test against both library
parsers, plus every emulator feed and the platform's sample); the need is benchmarks/parse.py.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass

from prometheus_client.metrics_core import METRIC_TYPES, Metric
from prometheus_client.samples import Sample

from controller.platform.recipes import base_name

__all__ = ["ParseOvertime", "Row", "Scan", "parse_text", "scan_text"]

_METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
_ASCII_SPACE = " \t\n\r\x0b\x0c"  # what the library's tokenizer splits on (string.whitespace)
_LABEL_ESCAPES = {"\\": "\\", "n": "\n", '"': '"'}
_HELP_ESCAPE = re.compile(r"\\[\\n]")
_SUFFIXES: dict[str, tuple[str, ...]] = {
    "counter": ("",),
    "gauge": ("",),
    "summary": ("_count", "_sum", ""),
    "histogram": ("_count", "_sum", "_bucket"),
}
_TYPES = frozenset((*METRIC_TYPES, "untyped"))
_CACHE_MAX = 4096  # per cache; bounded so hostile feeds cannot grow it without limit

# Validated names, so a feed's repeated names cost a set/dict lookup, not a regex.
_metric_names: set[str] = set()
_first_tokens: dict[str, str] = {}  # `name=` -> name (a label set's first label)
_next_tokens: dict[str, str] = {}  # `,name=` -> name (every later label)
_heads: dict[str, tuple[str, str]] = {}  # `metric{label=` -> (metric, label)
_allowed: dict[tuple[str, str], tuple[str, ...]] = {}  # (family, type) -> its sample names
_CHECK_EVERY = 1023  # lines between deadline checks, minus one (a mask)
_new_sample = tuple.__new__  # builds a Sample without its Python-level __new__ (3x cheaper)


def _metric_name_ok(name: str) -> bool:
    if name in _metric_names:
        return True
    if _METRIC_NAME.fullmatch(name) is None:
        return False
    if len(_metric_names) < _CACHE_MAX:
        _metric_names.add(name)
    return True


def _label_token(token: str, first: bool) -> str | None:
    """`name=` (first label) or `,name=` (later ones) -> the label name if valid, else None."""
    cache = _first_tokens if first else _next_tokens
    name = cache.get(token)
    if name is not None:
        return name
    if token[-1:] != "=" or (token[:1] == ",") == first:
        return None
    name = token[:-1] if first else token[1:-1]
    if _LABEL_NAME.fullmatch(name) is None or name.startswith("__"):
        return None  # `__name__` and the other reserved names are the library's business
    if len(cache) < _CACHE_MAX:
        cache[token] = name
    return name


class ParseOvertime(ValueError):
    """The parse passed its deadline at `line` (1-based) and was abandoned."""

    def __init__(self, line: int) -> None:
        super().__init__(f"parse deadline passed at line {line}")
        self.line = line


def _value(v: str) -> float | None:
    """The library's `int(v)`-else-`float(v)`, for the printable-ASCII tokens it accepts."""
    if not v.isascii() or not v.isprintable() or "_" in v or not v:
        return None  # `_` and unicode digits/spaces: the library has its own rules for them
    if v.isdigit() or (v[0] in "+-" and v[1:].isdigit()):
        try:
            return int(v)
        except ValueError:  # longer than int() takes: the library's float (inf, or a big one)
            return float(v)
    try:
        return float(v)
    except ValueError:
        return None


def _escaped_labels(inner: str) -> dict[str, str] | None:
    """Labels whose values hold backslashes: walked, unescaping only the library's three."""
    labels: dict[str, str] = {}
    pos = 0
    end = len(inner)
    while pos < end:
        eq = inner.find("=", pos)
        if eq < 0 or not inner.startswith('"', eq + 1):
            return None
        lname = _label_token(inner[pos : eq + 1], pos == 0)
        if lname is None or lname in labels:
            return None
        chars: list[str] = []
        i = eq + 2
        while True:
            if i >= end:
                return None
            c = inner[i]
            if c == '"':
                break
            if c == "\\":
                mapped = _LABEL_ESCAPES.get(inner[i + 1 : i + 2])
                if mapped is None:
                    return None  # e.g. `\t`, which the library keeps verbatim
                chars.append(mapped)
                i += 2
            else:
                chars.append(c)
                i += 1
        labels[lname] = "".join(chars)
        pos = i + 1
        if pos < end and (inner[pos] != "," or pos == end - 1):
            return None  # text after the closing quote, or a trailing comma
    return labels


def _head(token: str) -> tuple[str, str] | None:
    """`metric{label=`, a labelled sample's text up to its first quote -> (metric, label)."""
    brace = token.find("{")
    name = token[:brace]
    if brace < 0 or not _metric_name_ok(name):
        return None
    label = _label_token(token[brace + 1 :], True)
    if label is None:
        return None
    if len(_heads) < _CACHE_MAX:
        _heads[token] = (name, label)
    return name, label


def _escaped_sample(line: str) -> tuple[str, dict[str, str], str] | None:
    """A sample whose label values hold backslashes -> (name, labels, value text)."""
    key, _, v = line.rpartition(" ")
    brace = key.find("{")
    name = key[:brace]
    if brace < 0 or not key.endswith("}") or not _metric_name_ok(name):
        return None
    labels = _escaped_labels(key[brace + 1 : -1])
    return None if labels is None else (name, labels, v)


def _allowed_names(name: str, typ: str) -> tuple[str, ...]:
    """The sample names the text parser files under family `name` of type `typ`; cached."""
    names = tuple(name + suffix for suffix in _SUFFIXES.get(typ, ("",)))
    if len(_allowed) < _CACHE_MAX:
        _allowed[name, typ] = names
    return names


def _unescape_help(match: re.Match[str]) -> str:
    return "\\" if match[0] == "\\\\" else "\n"


def _metadata(line: str) -> tuple[str, str | None] | None:
    """`# HELP name [doc]` / `# TYPE name type` -> (name, rest or None); None if not plain."""
    name, sep, rest = line[7:].partition(" ")
    if not _metric_name_ok(name):
        return None
    if not sep:
        return name, None
    if rest[0] in _ASCII_SPACE:
        return None  # the library's tokenizer would skip it; keep to the plain form
    return name, rest


Row = tuple[str, dict[str, str], float]  # a sample as the single pass keeps it: name, labels, value
_Raw = tuple[str, str, str, list[Row]]  # a family: name, documentation, type, rows


def _build(name: str, documentation: str, typ: str, samples: list[Row]) -> _Raw | None:
    """The text parser's `build_metric`: counter families lose `_total` or samples gain it."""
    if typ == "counter":
        if name.endswith("_total"):
            name = name[:-6]
            if not name:
                return None  # the library raises on an empty family name
        else:
            samples = [(s[0] + "_total", s[1], s[2]) for s in samples]
    return name, documentation, typ, samples


def parse_text(text: str, deadline: float | None = None) -> list[Metric] | None:
    """`scrape._families(text)`'s families if `text` is in the known subset, else None.

    Raises ParseOvertime once `time.monotonic()` passes `deadline` (checked every 1,024 lines).
    """
    raw = _families(text, deadline)
    if raw is None:
        return None
    out = []
    for name, documentation, typ, rows in raw:
        metric = Metric(name, documentation, typ)
        metric.samples = [_new_sample(Sample, (*row, None, None, None)) for row in rows]
        out.append(metric)
    return out


@dataclass(frozen=True, slots=True)
class Scan:
    """A feed read in one pass, no Metric/Sample objects: its samples in feed order (counter
    names with `_total`, as the library spells them) and `recipes.family_names`' set."""

    rows: list[Row]
    names: frozenset[str]


def scan_text(text: str, deadline: float | None = None) -> Scan | None:
    """`parse_text`'s samples and family names without building its objects; None likewise."""
    raw = _families(text, deadline)
    if raw is None:
        return None
    rows: list[Row] = []
    names: set[str] = set()
    for name, _, _, samples in raw:
        names.add(base_name(name))
        if samples:
            names.add(base_name(samples[0][0]))
            rows += samples
    return Scan(rows, frozenset(names))


def _families(text: str, deadline: float | None) -> list[_Raw] | None:
    """The families, as plain tuples, if `text` is in the known subset, else None."""
    eof = text.rstrip().endswith("# EOF")
    doomed = False  # this `# EOF` body is certain to be refused by the strict parser
    counter = ""  # (`# EOF` bodies) a counter just declared, with only its HELP/UNIT lines since
    metric_names, heads, next_tokens = _metric_names, _heads, _next_tokens

    out: list[_Raw] = []
    # The text parser's state: the current family and the sample names it accepts.
    name = ""
    documentation = ""
    typ = "untyped"
    samples: list[Row] = []
    allowed: tuple[str, ...] = ()
    number = 0
    for raw in text.split("\n"):
        number += 1
        if not number & _CHECK_EVERY and deadline is not None and time.monotonic() > deadline:
            raise ParseOvertime(number)
        line = raw.strip()
        if not line:
            counter = ""
            continue
        if line[0] == "#":
            if line[1:2] != " " and line != "#":
                return None  # `#HELP`, `#\tTYPE`...: tokenised in ways not worth copying
            kind = line[2:7]
            if kind != "HELP " and kind != "TYPE ":
                if line[2:].lstrip().startswith(("HELP", "TYPE")):
                    return None  # a HELP/TYPE the library reads, but not in the plain form
                if counter and not (len(raw) == len(line) and raw.startswith(f"# UNIT {counter} ")):
                    counter = ""
                continue
            meta = _metadata(line)
            if meta is None:
                return None
            cname, rest = meta
            if kind == "HELP ":
                if cname != name:
                    if name:
                        metric = _build(name, documentation, typ, samples)
                        if metric is None:
                            return None
                        out.append(metric)
                    name = cname
                    typ = "untyped"
                    samples = []
                    allowed = (cname,)
                if rest is None:
                    documentation = ""
                elif "\\" in rest:
                    documentation = _HELP_ESCAPE.sub(_unescape_help, rest)
                else:
                    documentation = rest
                if counter and (cname != counter or len(raw) != len(line)):
                    counter = ""
                continue
            if rest not in _TYPES:
                return None  # includes a TYPE line without a type, which the library rejects
            if cname != name:
                if name:
                    metric = _build(name, documentation, typ, samples)
                    if metric is None:
                        return None
                    out.append(metric)
                name = cname
                documentation = ""
                samples = []
            typ = rest
            allowed = _allowed.get((name, typ)) or _allowed_names(name, typ)
            if eof:
                counter = cname if typ == "counter" and len(raw) == len(line) else ""
            continue

        # A sample: `name value`, `name{} value` or `name{l="v",...} value`.
        parts = line.split('"')
        last = len(parts) - 1
        if not last:  # no quotes: no labels
            key, sep, v = line.rpartition(" ")
            sname = key[:-2] if key.endswith("{}") else key
            if not sep or (sname not in metric_names and not _metric_name_ok(sname)):
                return None
            labels = {}
        elif "\\" in line:
            got = _escaped_sample(line)
            if got is None:
                return None
            sname, labels, v = got
        else:
            # No escapes, so every quote delimits a value: `n{a="x",b="y"} 1` -> n{a=|x|,b=|y|} 1.
            head = heads.get(parts[0]) or _head(parts[0])
            tail = parts[last]
            if head is None or last & 1 or not tail.startswith("} "):
                return None
            sname, lname = head
            labels = {lname: parts[1]}
            for i in range(2, last, 2):
                lname = next_tokens.get(parts[i]) or _label_token(parts[i], False)
                if lname is None or lname in labels:
                    return None
                labels[lname] = parts[i + 1]
            v = tail[2:]
            if " " in v:
                return None  # a timestamp
        value: float | None = int(v) if len(v) < 20 and v.isdigit() and v.isascii() else _value(v)
        if value is None:
            return None
        sample = (sname, labels, value)
        if eof:
            if counter and sname == counter and len(raw) == len(line):
                doomed = True
            counter = ""
        if sname in allowed:
            samples.append(sample)
            continue
        # Not this family's: the library closes it and emits the sample as its own family.
        if name:
            metric = _build(name, documentation, typ, samples)
            if metric is None:
                return None
            out.append(metric)
        name = ""
        documentation = ""
        typ = "untyped"
        samples = []
        allowed = ()
        metric = _build(sname, "", "untyped", [sample])
        if metric is None:
            return None
        out.append(metric)
    if name:
        metric = _build(name, documentation, typ, samples)
        if metric is None:
            return None
        out.append(metric)
    if eof and not doomed:
        return None  # the strict parser might accept it, and it is not copied here
    return out
