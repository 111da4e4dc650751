"""Metrics feeds -> `FeedSample`s: fetch every managed endpoint's open-metrics text, parse, reduce.

Parsing uses `prometheus_client`'s parsers, because the real feed is not strict OpenMetrics: the
platform's published sample has a counter whose samples lack `_total`, a `# UNIT` line and no
`# EOF`, and the strict parser rejects it ("Clashing name: http_requests"). So:

- a body ending in `# EOF` is tried with the OpenMetrics parser first;
- anything else, or an OpenMetrics body the strict parser refuses, goes through the Prometheus text
  parser. That parser accepts the sample: it keeps the family name `http_requests`, renames the
  counter's samples to `http_requests_total`, and skips `# UNIT` lines.

Series are then matched by *sample* name, tolerant of the `_total` suffix either way and of `:`
spelt `_` (OpenMetrics from prometheus_client), so it does not matter which parser ran, whether the
counter was typed, or which Accept header was sent. Which series feeds which signal is a preset's
recipes (`controller.platform.recipes`, `presets`: detected from the families present, pinned or
overridden per endpoint, or the config's `scrape.mapping` as a custom recipe set); see
docs/signals.md. NaN quantiles (a summary with no recent observations) are dropped; NaN, infinite
or negative values anywhere else in a series the preset reads make the whole feed unusable
(`FeedParseError`).

Cost note: prometheus_client 0.26's parsers take ~0.5-0.8 ms on an HF-sized feed, half the
1.5 ms per-endpoint budget at 10,000 endpoints per 15 s tick. So `_families` first tries
`controller.platform.fastparse.parse_text`, a narrow parser for the feed shape endpoints serve
(plain HELP/TYPE lines, single-spaced samples, no timestamps or exemplars) that returns what the
rule above returns, several times cheaper. It takes a `# EOF` body only when the strict parser is
certain to refuse it (the platform's counter without `_total`) and returns None on anything else
it is not certain about; then the library path below runs unchanged, error messages included.
`parse_feed` uses its single-pass form, `scan_text`: the same walk, but its samples stay plain
(name, labels, value) rows, reduced by `recipes.reduce_rows` with `reduce_feed`'s checks, so no
Metric/Sample objects are built for a normal feed (issue 16).
Proof: tests/test_fastparse.py (differential against both library parsers); need and figures:
benchmarks/parse.py and benchmarks/results/parse.md.

Bad input. What a feed may not do, each a FeedParseError naming the line, whichever parser ran:

- repeat a series (same name and labels): OpenMetrics forbids it and summing would double the
  load (a feed served twice); the strict parser silently drops an adjacent repeat, so its result is
  checked too;
- carry anything but blank lines after a `# EOF` line (the text parser would count it);
- start with a UTF-8 byte-order mark: both of prometheus_client's parsers refuse one ("invalid
  metric name"), and so does this, with a message that says so;
- take longer than `parse_deadline_s` to parse: both the fast pass and the library's are checked
  every 1,024 lines (the library through the line iterator handed to it).

An integer longer than Python's `int()` takes (4,301 digits) is the library's float, inf, then an
impossible value like any other. The error path costs about one parse: the line the library
stopped at is counted while it reads, not found by re-parsing every line. The `Scraper` parses
bodies over `parse_inline_bytes` in a worker thread, so a big feed's parse leaves the event loop
(and `/healthz`, and the other endpoints' scrapes) running.
"""

from __future__ import annotations

import asyncio
import dataclasses
import io
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import structlog
from prometheus_client.metrics_core import Metric
from prometheus_client.openmetrics.parser import (
    text_fd_to_metric_families as _openmetrics_fd,
)
from prometheus_client.parser import text_fd_to_metric_families as _text_fd
from prometheus_client.parser import text_string_to_metric_families as _text_families

from controller.clock import Clock
from controller.errors import AuthError, FeedError, FeedParseError, FeedUnavailable
from controller.platform.fastparse import ParseOvertime, Scan, parse_text, scan_text
from controller.platform.presets import AUTO, choose_preset
from controller.platform.recipes import Recipe, family_names, reduce_feed, reduce_rows
from controller.platform.signals import (
    STATUS_CLASSES,
    FeedMapping,
    FeedSample,
    Signal,
    status_class,
)

if TYPE_CHECKING:
    from controller.platform.client import EndpointsClient

__all__ = [
    "STATUS_CLASSES",
    "FeedChoice",
    "FeedMapping",
    "FeedSample",
    "Scraper",
    "Signal",
    "parse_feed",
    "per_replica_estimate",
    "status_class",
]

log = structlog.get_logger(__name__)

# ------------------------------------------------------------------------------------- parsing


def _families(text: str, endpoint: str | None, deadline: float | None = None) -> list[Metric]:
    """Parse with the OpenMetrics parser if the body says it is OpenMetrics, else leniently.

    Then refuse what no parser may let through (module docstring): a BOM, data after `# EOF`,
    a repeated series. `deadline` is a `time.monotonic()` reading bounding the parse.
    """
    _refuse_framing(text, endpoint)
    try:
        fast = parse_text(text, deadline)  # None unless certain to equal the library's result
        if fast is not None:
            _log_eof_fallback(text, endpoint)
            families = fast
        else:
            families = _library(text, endpoint, deadline)
    except ParseOvertime as exc:
        raise _overtime(exc, endpoint) from None
    _unique(families, text, endpoint)
    return families


def _scanned(text: str, endpoint: str | None, deadline: float | None) -> Scan | list[Metric]:
    """`_families`, but the single pass's rows (no Metric/Sample objects) where it applies."""
    _refuse_framing(text, endpoint)
    try:
        scan = scan_text(text, deadline)  # None unless certain to equal the library's result
        if scan is None:
            families = _library(text, endpoint, deadline)
    except ParseOvertime as exc:
        raise _overtime(exc, endpoint) from None
    if scan is None:
        _unique(families, text, endpoint)
        return families
    _log_eof_fallback(text, endpoint)
    _unique_keys(
        [(name, frozenset(labels.items())) for name, labels, _ in scan.rows], text, endpoint
    )
    return scan


def _refuse_framing(text: str, endpoint: str | None) -> None:
    if text.startswith("\ufeff"):
        raise FeedParseError(
            "line 1: the feed starts with a UTF-8 byte-order mark, which prometheus_client's "
            "parsers refuse",
            endpoint=endpoint,
        )
    _nothing_after_eof(text, endpoint)


def _log_eof_fallback(text: str, endpoint: str | None) -> None:
    if text.rstrip().endswith("# EOF"):  # taken only where the strict parser must refuse
        log.debug("feed_openmetrics_fallback", endpoint=endpoint)


def _overtime(exc: ParseOvertime, endpoint: str | None) -> FeedParseError:
    return FeedParseError(
        f"line {exc.line}: parse abandoned, over scrape.parse_deadline_s", endpoint=endpoint
    )


class _Cursor:
    """The line a library parser is reading, counted as it reads (the error path's locator)."""

    __slots__ = ("line", "number")

    def __init__(self) -> None:
        self.number = 0
        self.line = ""

    def lines(self, text: str, deadline: float | None) -> Iterator[str]:
        for line in io.StringIO(text):  # the lines the library's own string entry point reads
            self.number += 1
            self.line = line
            if deadline is not None and not self.number & 1023 and time.monotonic() > deadline:
                raise ParseOvertime(self.number)
            yield line


def _library(text: str, endpoint: str | None, deadline: float | None) -> list[Metric]:
    """prometheus_client's parsers, as the module docstring says, one pass each at most."""
    if text.rstrip().endswith("# EOF"):
        strict = text.rstrip() + "\n"
        try:
            families = list(_openmetrics_fd(_Cursor().lines(strict, deadline)))
        except ParseOvertime:
            raise
        except Exception:  # strict parser refused; the lenient one decides below
            log.debug("feed_openmetrics_fallback", endpoint=endpoint)
        else:
            lines = sum(1 for line in strict.split("\n") if line and line[0] != "#")
            if lines != sum(len(f.samples) for f in families):
                # It drops a series repeated within a group: find it with the lenient parser.
                _unique(_lenient(text, endpoint, deadline), text, endpoint)
            return families
    return _lenient(text, endpoint, deadline)


def _lenient(text: str, endpoint: str | None, deadline: float | None) -> list[Metric]:
    cursor = _Cursor()
    try:
        return list(_text_fd(cursor.lines(text, deadline)))
    except ParseOvertime:
        raise
    except Exception as exc:  # the parser raises bare ValueError/IndexError/etc.
        where = f"line {cursor.number}: {cursor.line.strip()[:80]!r}"
        raise FeedParseError(
            f"unparseable feed ({where}): {type(exc).__name__}: {str(exc)[:120]}",
            endpoint=endpoint,
        ) from exc


def _nothing_after_eof(text: str, endpoint: str | None) -> None:
    """A `# EOF` line ends the feed (OpenMetrics): anything but blank lines after it is an error."""
    pos = text.find("# EOF")
    while pos >= 0:
        start = text.rfind("\n", 0, pos) + 1
        end = text.find("\n", pos)
        end = len(text) if end < 0 else end
        if text[start:end].strip() == "# EOF":
            rest = text[end:]
            if not rest.strip():
                return
            eof_line = text.count("\n", 0, start) + 1
            offset = next(i for i, line in enumerate(rest.split("\n")) if line.strip())
            raise FeedParseError(
                f"line {eof_line + offset}: content after `# EOF` (line {eof_line})",
                endpoint=endpoint,
            )
        pos = text.find("# EOF", end)


def _unique(families: Iterable[Metric], text: str, endpoint: str | None) -> None:
    """Refuse a repeated series (same sample name and labels), naming its lines."""
    keys = [(s.name, frozenset(s.labels.items())) for f in families for s in f.samples]
    _unique_keys(keys, text, endpoint)


def _unique_keys(
    keys: list[tuple[str, frozenset[tuple[str, str]]]], text: str, endpoint: str | None
) -> None:
    if len(set(keys)) == len(keys):
        return
    seen: set[tuple[str, frozenset[tuple[str, str]]]] = set()
    for key in keys:
        if key in seen:
            break
        seen.add(key)
    name, labels = key
    series = _series(name, dict(labels))
    lines = _series_lines(text, name, dict(labels))
    where = f"line {lines[1]}: " if len(lines) > 1 else ""
    first = f" (first at line {lines[0]})" if len(lines) > 1 else ""
    raise FeedParseError(
        f"{where}duplicate series {series}{first}; a series may appear once in a feed",
        endpoint=endpoint,
    )


def _series(name: str, labels: Mapping[str, str]) -> str:
    inner = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    return f"{name}{{{inner}}}" if inner else name


def _series_lines(text: str, name: str, labels: Mapping[str, str]) -> list[int]:
    """The lines holding series `name{labels}` (a counter's `_total` either way); error path only.

    Only lines starting with the name are parsed, one at a time: at most one parse of the feed.
    """
    base = name.removesuffix("_total")
    found = []
    for number, raw in enumerate(text.split("\n"), start=1):
        line = raw.strip()
        if not line.startswith(base):
            continue
        try:
            samples = [s for f in _text_families(line + "\n") for s in f.samples]
        except Exception:
            continue
        if any(s.name.removesuffix("_total") == base and s.labels == labels for s in samples):
            found.append(number)
    return found


def parse_feed(
    text: str,
    mapping: FeedMapping | None = None,
    *,
    at: float,
    endpoint: str | None = None,
    preset: str = AUTO,
    overrides: Mapping[str, Recipe] | None = None,
    parse_deadline_s: float | None = None,
) -> FeedSample:
    """Parse one feed body into a `FeedSample` stamped `at` (epoch seconds of the scrape).

    The body is reduced through a preset's recipes (`controller.platform.recipes`): `preset`
    pins one by name; `auto` uses `mapping` (the config's `scrape.mapping`) when one is given, as
    the one recipe set it used to be, else detects the preset from the families present.
    `overrides` replaces single signals' recipes. Raises FeedParseError on a malformed body, an
    impossible value, or a body carrying none of the preset's series (none detected), or when
    parsing takes longer than `parse_deadline_s` (wall seconds).
    """
    if not text.strip():
        raise FeedParseError("empty feed: no known series", endpoint=endpoint)
    deadline = None if parse_deadline_s is None else time.monotonic() + parse_deadline_s
    parsed = _scanned(text, endpoint, deadline)
    names = parsed.names if isinstance(parsed, Scan) else family_names(parsed)
    chosen = choose_preset(names, pin=preset, custom=mapping, overrides=overrides)
    if chosen is None:
        raise FeedParseError(
            "no known series in feed: no preset's families present (set feed_preset or "
            "feed_recipes for this endpoint)",
            endpoint=endpoint,
        )
    if isinstance(parsed, Scan):
        return reduce_rows(parsed.rows, names, chosen, at=at, endpoint=endpoint)
    return reduce_feed(parsed, chosen, at=at, endpoint=endpoint, names=names)


@dataclass(frozen=True, slots=True)
class FeedChoice:
    """How one endpoint's feed is read: a preset name (or `auto`) and per-signal recipes, and
    where from: `source` platform (the API's feed) or engine (the engine's own metrics at
    `engine_url`, the endpoint URL plus its path, one replica of `ready` answering; see
    `per_replica_estimate`)."""

    preset: str = AUTO
    overrides: Mapping[str, Recipe] = field(default_factory=dict)
    source: str = "platform"
    engine_url: str | None = None
    ready: int = 0


def per_replica_estimate(sample: FeedSample, ready: int) -> FeedSample:
    """One replica's engine sample -> the endpoint's, given its `ready` replica count.

    The endpoint URL is load-balanced, so a scrape of the engine's own metrics reaches one
    replica. Its counts (pending, waiting, running) times the ready replicas estimate the
    endpoint's total: right on average when the balancer spreads requests evenly, off by `ready`
    times that replica's excess over the replicas' mean at that instant (docs/signals.md).
    Per-replica percentages (GPU, KV cache...) are kept as that replica's, an estimate of the
    mean. Its cumulative counters (requests, latency count and sum) are one replica's and the
    next scrape may reach another, so their differences would be noise: with more than one
    ready replica they are dropped, and the rate and latency signals come only from the
    platform's feed.
    """
    n = max(ready, 1)  # a replica answered, whatever the last listing said

    def scaled(v: float | None) -> float | None:
        return None if v is None else v * n

    if n == 1:
        return sample
    return dataclasses.replace(
        sample,
        pending=scaled(sample.pending),
        waiting=scaled(sample.waiting),
        running=scaled(sample.running),
        requests={},
        requests_by_replica={},
        request_series={},
        latency={},
        latency_count=None,
        latency_sum=None,
    )


# ------------------------------------------------------------------------------------- scraping


class Scraper:
    """Fetch and parse many feeds concurrently; one endpoint's failure is a value, not a raise."""

    def __init__(
        self,
        client: EndpointsClient,
        mapping: FeedMapping | None = None,
        *,
        concurrency: int = 16,
        clock: Clock,
        choice: Callable[[str], FeedChoice | None] | None = None,
        parse_deadline_s: float | None = 2.0,
        parse_inline_bytes: int = 256 * 1024,
    ) -> None:
        """`mapping`: the config's `scrape.mapping` (None: presets detected); `choice(key)`: the
        endpoint's pinned preset and recipe overrides (its `EndpointSettings`); a body longer
        than `parse_inline_bytes` is parsed in a worker thread, each within `parse_deadline_s`."""
        if concurrency < 1:
            raise ValueError(f"concurrency must be >= 1, got {concurrency}")
        self._client = client
        self._mapping = mapping
        self._choice = choice
        self._concurrency = concurrency
        self._clock = clock
        self._parse_deadline_s = parse_deadline_s
        self._inline = parse_inline_bytes
        # Parses running in worker threads now (the loop is free meanwhile); tests watch it.
        self.parsing_off_loop = 0

    async def scrape(self, keys: Sequence[tuple[str, str]]) -> dict[str, FeedSample | FeedError]:
        """Result keyed `ns/name`: a FeedSample, or the FeedUnavailable/FeedParseError it got."""
        done: dict[str, FeedSample | FeedError] = {}
        await self.scrape_into(keys, done.__setitem__)
        return {key: done[key] for key in (f"{ns}/{name}" for ns, name in dict.fromkeys(keys))}

    async def scrape_into(
        self,
        keys: Sequence[tuple[str, str]],
        sink: Callable[[str, FeedSample | FeedError], None],
    ) -> None:
        """Hand each endpoint's result to `sink(key, result)` as soon as it is parsed.

        The loop's sink puts a sample straight into its window, so the previous sample can go at
        once instead of both ticks' samples being alive until the scrape ends (~35 MB at 10,000).
        `concurrency` workers drain one iterator rather than one task per endpoint: gathering
        10,000 coroutines holds 10,000 tasks and frames for the whole scrape.
        """
        unique = list(dict.fromkeys(keys))
        todo: Iterator[tuple[str, str]] = iter(unique)
        sem = asyncio.Semaphore(self._concurrency)  # uncontended; `_one` keeps its contract

        async def worker() -> None:
            for ns, name in todo:
                sink(*await self._one(ns, name, sem))

        await asyncio.gather(*(worker() for _ in range(min(self._concurrency, len(unique)))))

    async def _one(
        self, namespace: str, name: str, sem: asyncio.Semaphore
    ) -> tuple[str, FeedSample | FeedError]:
        key = f"{namespace}/{name}"
        async with sem:
            how = (self._choice(key) if self._choice is not None else None) or FeedChoice()
            try:
                if how.source == "engine":
                    if not how.engine_url:
                        raise FeedUnavailable(
                            "engine metrics: the endpoint has no URL (status.url) yet",
                            endpoint=key,
                        )
                    text = await self._client.fetch_engine_metrics(how.engine_url, key)
                else:
                    text = await self._client.fetch_metrics(namespace, name)
            except FeedError as exc:
                log.debug("feed_unavailable", endpoint=key, error=str(exc))
                return key, exc
            except AuthError as exc:
                log.warning("feed_auth_refused", endpoint=key, status=exc.status, error=str(exc))
                err = FeedUnavailable(f"feed refused: {exc}", endpoint=key, status=exc.status)
                err.__cause__ = exc
                return key, err
            except Exception as exc:  # a client bug must not sink the other endpoints
                log.exception("feed_fetch_crashed", endpoint=key)
                err = FeedUnavailable(f"feed fetch crashed: {type(exc).__name__}", endpoint=key)
                err.__cause__ = exc
                return key, err
            at = self._clock.now()
        if len(text) <= self._inline:
            got = self._parse(key, text, at, how)
        else:
            # A big body: parse it in a thread so the loop (probes, other feeds) goes on.
            self.parsing_off_loop += 1
            try:
                got = await asyncio.to_thread(self._parse, key, text, at, how)
            finally:
                self.parsing_off_loop -= 1
        if how.source == "engine" and isinstance(got, FeedSample):
            got = per_replica_estimate(got, how.ready)
        return key, got

    def _parse(self, key: str, text: str, at: float, how: FeedChoice) -> FeedSample | FeedError:
        try:
            return parse_feed(
                text,
                self._mapping,
                at=at,
                endpoint=key,
                preset=how.preset,
                overrides=how.overrides,
                parse_deadline_s=self._parse_deadline_s,
            )
        except FeedParseError as exc:
            log.debug("feed_parse_error", endpoint=key, error=str(exc))
            return exc
        except Exception as exc:  # a parser bug must not sink the other endpoints
            log.exception("feed_parse_crashed", endpoint=key)
            err = FeedParseError(f"feed parse crashed: {type(exc).__name__}", endpoint=key)
            err.__cause__ = exc
            return err
