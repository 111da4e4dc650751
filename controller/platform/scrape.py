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
Proof: tests/test_fastparse.py (differential against both library parsers); need and figures:
benchmarks/parse.py and benchmarks/results/parse.md.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import structlog
from prometheus_client.metrics_core import Metric
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as _openmetrics_families,
)
from prometheus_client.parser import text_string_to_metric_families as _text_families

from controller.clock import Clock
from controller.errors import AuthError, FeedError, FeedParseError, FeedUnavailable
from controller.platform.fastparse import parse_text
from controller.platform.presets import AUTO, choose_preset
from controller.platform.recipes import Recipe, family_names, reduce_feed
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
    "status_class",
]

log = structlog.get_logger(__name__)

# ------------------------------------------------------------------------------------- parsing


def _families(text: str, endpoint: str | None) -> list[Metric]:
    """Parse with the OpenMetrics parser if the body says it is OpenMetrics, else leniently."""
    fast = parse_text(text)  # None unless certain to equal the library's result
    if fast is not None:
        if text.rstrip().endswith("# EOF"):  # taken only where the strict parser must refuse
            log.debug("feed_openmetrics_fallback", endpoint=endpoint)
        return fast
    if text.rstrip().endswith("# EOF"):
        try:
            return list(_openmetrics_families(text.rstrip() + "\n"))
        except Exception:  # strict parser refused; the lenient one decides below
            log.debug("feed_openmetrics_fallback", endpoint=endpoint)
    try:
        return list(_text_families(text))
    except Exception as exc:  # the parser raises bare ValueError/IndexError/etc.
        raise FeedParseError(
            f"unparseable feed ({_locate(text)}): {type(exc).__name__}: {str(exc)[:120]}",
            endpoint=endpoint,
        ) from exc


def _locate(text: str) -> str:
    """Name the first line the text parser rejects on its own (error path only)."""
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        try:
            list(_text_families(stripped + "\n"))
        except Exception:
            return f"line {number}: {stripped[:80]!r}"
    return "no single bad line"


def parse_feed(
    text: str,
    mapping: FeedMapping | None = None,
    *,
    at: float,
    endpoint: str | None = None,
    preset: str = AUTO,
    overrides: Mapping[str, Recipe] | None = None,
) -> FeedSample:
    """Parse one feed body into a `FeedSample` stamped `at` (epoch seconds of the scrape).

    The body is reduced through a preset's recipes (`controller.platform.recipes`): `preset`
    pins one by name; `auto` uses `mapping` (the config's `scrape.mapping`) when one is given, as
    the one recipe set it used to be, else detects the preset from the families present.
    `overrides` replaces single signals' recipes. Raises FeedParseError on a malformed body, an
    impossible value, or a body carrying none of the preset's series (none detected).
    """
    if not text.strip():
        raise FeedParseError("empty feed: no known series", endpoint=endpoint)
    families = _families(text, endpoint)
    chosen = choose_preset(family_names(families), pin=preset, custom=mapping, overrides=overrides)
    if chosen is None:
        raise FeedParseError(
            "no known series in feed: no preset's families present (set feed_preset or "
            "feed_recipes for this endpoint)",
            endpoint=endpoint,
        )
    return reduce_feed(families, chosen, at=at, endpoint=endpoint)


@dataclass(frozen=True, slots=True)
class FeedChoice:
    """How one endpoint's feed is read: a preset name (or `auto`) and per-signal recipes."""

    preset: str = AUTO
    overrides: Mapping[str, Recipe] = field(default_factory=dict)


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
    ) -> None:
        """`mapping`: the config's `scrape.mapping` (None: presets detected); `choice(key)`: the
        endpoint's pinned preset and recipe overrides (its `EndpointSettings`)."""
        if concurrency < 1:
            raise ValueError(f"concurrency must be >= 1, got {concurrency}")
        self._client = client
        self._mapping = mapping
        self._choice = choice
        self._concurrency = concurrency
        self._clock = clock

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
            try:
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
        try:
            how = (self._choice(key) if self._choice is not None else None) or FeedChoice()
            sample = parse_feed(
                text,
                self._mapping,
                at=at,
                endpoint=key,
                preset=how.preset,
                overrides=how.overrides,
            )
            return key, sample
        except FeedParseError as exc:
            log.debug("feed_parse_error", endpoint=key, error=str(exc))
            return key, exc
        except Exception as exc:  # a parser bug must not sink the other endpoints
            log.exception("feed_parse_crashed", endpoint=key)
            err = FeedParseError(f"feed parse crashed: {type(exc).__name__}", endpoint=key)
            err.__cause__ = exc
            return key, err
