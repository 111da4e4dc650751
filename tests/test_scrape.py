"""parse_feed on literal feed texts, and the Scraper over httpx.MockTransport."""

from __future__ import annotations

import asyncio
import math

import httpx
import pydantic
import pytest
import structlog
from structlog.testing import capture_logs

from controller.clock import VirtualClock
from controller.errors import AuthError, FeedParseError, FeedUnavailable
from controller.platform.client import EndpointsClient
from controller.platform.scrape import Scraper, parse_feed
from controller.platform.signals import FeedMapping, FeedSample, status_class


@pytest.fixture(autouse=True)
def _default_logging():
    """These tests read debug events with `capture_logs`: a test that ran `main()` in this
    worker before leaves logging filtered at its level (a flake seen under xdist)."""
    saved = structlog.get_config()
    structlog.reset_defaults()
    yield
    structlog.configure(**saved)


# Verbatim from the platform docs (hf-endpoints-api.md): counter without `_total`, `# UNIT`, no EOF.
DOCS_SAMPLE = """\
# HELP latency_distribution Latency distribution
# TYPE latency_distribution summary
latency_distribution{quantile="0.5"} 0.006339203
latency_distribution{quantile="0.9"} 0.007574241
latency_distribution{quantile="0.95"} 0.007994495
latency_distribution{quantile="0.99"} 0.020140918
latency_distribution_count 4
latency_distribution_sum 0.042048857
# HELP http_requests HTTP requests by code and replicas
# TYPE http_requests counter
http_requests{replica_id="fqwg7eri-hskoj",status_code="200"} 1152
http_requests{replica_id="q9cv26ut-3vo4s",status_code="200"} 1
# HELP cpu_usage_percent CPU percent
# TYPE cpu_usage_percent gauge
# UNIT cpu_usage_percent percent
"""

# In the emulator's style: same quirks, plus the series whose names the platform has not published.
EMULATOR_FEED = """\
# HELP pending_requests Requests waiting for a replica
# TYPE pending_requests gauge
pending_requests 7
# HELP http_requests HTTP requests by code and replicas
# TYPE http_requests counter
http_requests{replica_id="6pajyw3k-z7ghx",status_code="200"} 900
http_requests{replica_id="6pajyw3k-z7ghx",status_code="503"} 12
http_requests{replica_id="6pajyw3k-q2w3e",status_code="200"} 300
http_requests{replica_id="6pajyw3k-q2w3e",status_code="404"} 3
# HELP latency_distribution Latency distribution
# TYPE latency_distribution summary
latency_distribution{quantile="0.5"} 0.2
latency_distribution{quantile="0.9"} 0.5
latency_distribution{quantile="0.99"} 1.5
latency_distribution_count 40
latency_distribution_sum 12.5
# HELP cpu_usage_percent CPU percent
# TYPE cpu_usage_percent gauge
# UNIT cpu_usage_percent percent
cpu_usage_percent{replica_id="6pajyw3k-z7ghx"} 40
cpu_usage_percent{replica_id="6pajyw3k-q2w3e"} 60
# TYPE gpu_usage_percent gauge
# UNIT gpu_usage_percent percent
gpu_usage_percent{replica_id="6pajyw3k-z7ghx"} 90
gpu_usage_percent{replica_id="6pajyw3k-q2w3e"} 70
# TYPE memory_usage_percent gauge
# UNIT memory_usage_percent percent
memory_usage_percent{replica_id="6pajyw3k-z7ghx"} 30
memory_usage_percent{replica_id="6pajyw3k-q2w3e"} 50
# TYPE gpu_memory_usage_percent gauge
# UNIT gpu_memory_usage_percent percent
gpu_memory_usage_percent{replica_id="6pajyw3k-z7ghx"} 80
gpu_memory_usage_percent{replica_id="6pajyw3k-q2w3e"} 82
"""

# Strict OpenMetrics: `_total` samples, `_created`, `# EOF`.
OPENMETRICS_FEED = """\
# TYPE pending_requests gauge
pending_requests{replica_id="a"} 2
pending_requests{replica_id="b"} 3
# TYPE http_requests counter
http_requests_total{replica_id="a",status_code="200"} 10
http_requests_created{replica_id="a",status_code="200"} 1700000000.0
http_requests_total{replica_id="b",status_code="500"} 4
http_requests_created{replica_id="b",status_code="500"} 1700000000.0
# TYPE cpu_usage_percent gauge
# UNIT cpu_usage_percent percent
cpu_usage_percent{replica_id="a"} 10.5
cpu_usage_percent{replica_id="b"} 20.5
# EOF
"""

MAPPING = FeedMapping()


def test_docs_sample_parses():
    """The platform's published sample parses: requests per replica, latency, empty cpu."""
    s = parse_feed(DOCS_SAMPLE, MAPPING, at=100.0, endpoint="ns/ep")
    assert s.at == 100.0
    assert s.requests == {"2xx": 1153.0}
    assert s.requests_by_replica == {"fqwg7eri-hskoj": 1152.0, "q9cv26ut-3vo4s": 1.0}
    assert s.latency == {
        0.5: 0.006339203,
        0.9: 0.007574241,
        0.95: 0.007994495,
        0.99: 0.020140918,
    }
    assert (s.latency_count, s.latency_sum) == (4.0, 0.042048857)
    assert s.cpu == {}
    assert s.mean_cpu is None
    assert s.pending is None
    assert s.replicas_seen == frozenset({"fqwg7eri-hskoj", "q9cv26ut-3vo4s"})
    assert s.total_requests == 1153.0


def test_emulator_feed_parses_every_signal():
    """An emulator-style feed yields pending, per-class requests, latency and hardware means."""
    s = parse_feed(EMULATOR_FEED, MAPPING, at=5.0)
    assert s.pending == 7.0
    assert s.requests == {"2xx": 1200.0, "5xx": 12.0, "4xx": 3.0}
    assert s.requests_by_replica == {"6pajyw3k-z7ghx": 912.0, "6pajyw3k-q2w3e": 303.0}
    assert s.request_series[("6pajyw3k-z7ghx", "5xx")] == 12.0
    assert s.latency == {0.5: 0.2, 0.9: 0.5, 0.99: 1.5}
    assert (s.latency_count, s.latency_sum) == (40.0, 12.5)
    assert (s.mean_cpu, s.mean_gpu, s.mean_memory, s.mean_gpu_memory) == (50, 80, 40, 81)
    assert s.value("pending") == 7.0
    assert s.value("gpu") == 80.0
    assert s.replicas_seen == frozenset({"6pajyw3k-z7ghx", "6pajyw3k-q2w3e"})


@pytest.mark.parametrize(
    "text",
    [
        pytest.param(OPENMETRICS_FEED, id="openmetrics"),
        pytest.param(OPENMETRICS_FEED.replace("# EOF\n", ""), id="openmetrics-without-eof"),
        pytest.param(OPENMETRICS_FEED.rstrip("\n"), id="eof-without-newline"),
        pytest.param(OPENMETRICS_FEED + "\n\n", id="blank-lines-after-eof"),
    ],
)
def test_openmetrics_feed_with_total_suffix(text):
    """Strict OpenMetrics (`_total`, `_created`, `# EOF`) parses; `_created` is not a count."""
    s = parse_feed(text, MAPPING, at=1.0)
    assert s.pending == 5.0
    assert s.requests == {"2xx": 10.0, "5xx": 4.0}
    assert s.requests_by_replica == {"a": 10.0, "b": 4.0}
    assert s.cpu == {"a": 10.5, "b": 20.5}


def test_docs_sample_with_eof_falls_back_to_text_parser():
    """The strict parser rejects the docs sample even with `# EOF`; the text parser takes over."""
    s = parse_feed(DOCS_SAMPLE + "# EOF\n", MAPPING, at=1.0)
    assert s.requests == {"2xx": 1153.0}


@pytest.mark.parametrize(
    "mapping",
    [
        pytest.param(FeedMapping(requests="http_requests_total"), id="mapping-with-total"),
        pytest.param(FeedMapping(requests="http_requests"), id="mapping-without-total"),
    ],
)
@pytest.mark.parametrize(
    "line",
    [
        pytest.param('http_requests{replica_id="r",status_code="200"} 5', id="bare"),
        pytest.param('http_requests_total{replica_id="r",status_code="200"} 5', id="untyped-total"),
        pytest.param(
            '# TYPE http_requests counter\nhttp_requests_total{replica_id="r",status_code="200"} 5',
            id="typed-total",
        ),
        pytest.param(
            "# TYPE http_requests_total counter\n"
            'http_requests_total{replica_id="r",status_code="200"} 5',
            id="typed-family-total",
        ),
    ],
)
def test_total_suffix_tolerated_both_ways(mapping, line):
    """The requests counter matches with or without `_total`, in the feed and in the mapping."""
    s = parse_feed(line + "\n", mapping, at=1.0)
    assert s.requests == {"2xx": 5.0}


def test_custom_mapping_with_engine_names():
    """A mapping with other names (TGI queue, custom labels) reads those series instead."""
    feed = """\
# TYPE tgi_queue_size gauge
tgi_queue_size 4
# TYPE container_cpu gauge
container_cpu{pod="p1"} 10
container_cpu{pod="p2"} 30
# TYPE reqs counter
reqs{pod="p1",code="200"} 8
reqs{pod="p1",code="oops"} 1
pending_requests 999
"""
    mapping = FeedMapping(
        pending="tgi_queue_size",
        cpu="container_cpu",
        requests="reqs",
        replica_label="pod",
        status_label="code",
    )
    s = parse_feed(feed, mapping, at=1.0)
    assert s.pending == 4.0
    assert s.cpu == {"p1": 10.0, "p2": 30.0}
    assert s.requests == {"2xx": 8.0, "other": 1.0}
    assert s.replicas_seen == frozenset({"p1", "p2"})


def test_missing_signals_are_empty_not_errors():
    """A feed with only a pending gauge leaves every other signal None or empty."""
    s = parse_feed("pending_requests 0\n", MAPPING, at=1.0)
    assert s.pending == 0.0
    assert (s.requests, s.latency, s.cpu, s.gpu) == ({}, {}, {}, {})
    assert (s.latency_count, s.latency_sum, s.mean_gpu) == (None, None, None)
    assert s.replicas_seen == frozenset()


def test_declared_but_empty_families_are_a_valid_empty_sample():
    """Declared mapped families without samples (no replica running) parse to an empty sample."""
    s = parse_feed(
        "# HELP cpu_usage_percent CPU\n# TYPE cpu_usage_percent gauge\n", MAPPING, at=1.0
    )
    assert s.cpu == {}
    assert s.pending is None


def test_per_replica_duplicates_are_averaged_and_pending_summed():
    """Several series for one replica (e.g. per GPU) average; pending sums over its series."""
    feed = """\
gpu_usage_percent{replica_id="a",gpu="0"} 50
gpu_usage_percent{replica_id="a",gpu="1"} 100
gpu_usage_percent{replica_id="b",gpu="0"} 25
pending_requests{replica_id="a"} 1
pending_requests{replica_id="b"} 2
"""
    s = parse_feed(feed, MAPPING, at=1.0)
    assert s.gpu == {"a": 75.0, "b": 25.0}
    assert s.pending == 3.0


def test_nan_quantile_is_dropped():
    """A summary quantile of NaN (no recent observations) is skipped, not an error."""
    feed = 'latency_distribution{quantile="0.5"} NaN\nlatency_distribution_count 0\n'
    s = parse_feed(feed, MAPPING, at=1.0)
    assert s.latency == {}
    assert s.latency_count == 0.0


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        pytest.param("", "no known series", id="empty"),
        pytest.param("   \n\n", "no known series", id="whitespace"),
        pytest.param("<html><body>502</body></html>", "line 1", id="html"),
        pytest.param("foo{", "line 1", id="unclosed-brace"),
        pytest.param("pending_requests 1\nfoo{\n", "line 2", id="bad-second-line"),
        pytest.param("x 1 2 3 4", "no known series", id="unknown-series"),
        pytest.param("Not Found", "unparseable", id="plain-text"),
        pytest.param('{"error": "no plan"}', "unparseable", id="json"),
        pytest.param("pending_requests abc", "unparseable", id="non-numeric"),
        pytest.param("pending_requests -1", "pending_requests", id="negative-gauge"),
        pytest.param('cpu_usage_percent{replica_id="a"} NaN', "replica_id", id="nan-gauge"),
        pytest.param(
            'http_requests{replica_id="a",status_code="200"} +Inf', "http_requests", id="inf"
        ),
        pytest.param(
            'http_requests{replica_id="a",status_code="200"} -5', "impossible", id="neg-counter"
        ),
        pytest.param('latency_distribution{quantile="x"} 1', "quantile", id="bad-quantile"),
        pytest.param("latency_distribution_sum -1", "latency_distribution_sum", id="neg-sum"),
    ],
)
def test_unusable_feeds_raise_feed_parse_error(text, fragment):
    """Garbage, empty bodies and impossible values raise FeedParseError naming the problem."""
    with pytest.raises(FeedParseError) as info:
        parse_feed(text, MAPPING, at=1.0, endpoint="ns/ep")
    assert fragment in str(info.value)
    assert info.value.endpoint == "ns/ep"
    assert info.value.reason == "parse_error"


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        pytest.param("200", "2xx", id="200"),
        pytest.param("302", "3xx", id="302"),
        pytest.param("429", "4xx", id="429"),
        pytest.param("503", "5xx", id="503"),
        pytest.param("101", "other", id="101"),
        pytest.param("2000", "other", id="too-long"),
        pytest.param("ok", "other", id="text"),
        pytest.param(None, "other", id="missing"),
    ],
)
def test_status_class(code, expected):
    """Status codes fold into 2xx..5xx, anything else into "other"."""
    assert status_class(code) == expected


@pytest.mark.parametrize(
    "kwargs",
    [
        pytest.param({"pendng": "x"}, id="unknown-key"),
        pytest.param({"pending": "bad name"}, id="bad-metric-name"),
        pytest.param({"replica_label": "a:b"}, id="bad-label-name"),
        pytest.param({"cpu": ""}, id="empty"),
    ],
)
def test_feed_mapping_validates(kwargs):
    """FeedMapping forbids unknown keys and names that cannot be Prometheus names."""
    with pytest.raises(pydantic.ValidationError):
        FeedMapping(**kwargs)


def test_feed_mapping_accepts_vllm_style_names():
    """Colons are legal in metric names (vLLM's `vllm:num_requests_waiting`)."""
    m = FeedMapping(pending="vllm:num_requests_waiting")
    s = parse_feed('vllm:num_requests_waiting{model_name="m"} 6\n', m, at=1.0)
    assert s.pending == 6.0


# ------------------------------------------------------------------------------ Scraper


def _client(handler, **kw) -> EndpointsClient:
    return EndpointsClient(
        "https://api.test/v2", "tok", transport=httpx.MockTransport(handler), **kw
    )


async def test_scraper_respects_concurrency_and_isolates_failures():
    """At most `concurrency` fetches run at once; a 500 or garbage is one endpoint's value only."""
    in_flight = 0
    peak = 0

    async def handler(request: httpx.Request) -> httpx.Response:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        await asyncio.sleep(0.002)
        in_flight -= 1
        name = request.url.path.split("/")[-2]
        if name == "broken":
            return httpx.Response(500, json={"error": "feed backend down"})
        if name == "garbage":
            return httpx.Response(200, text="<html>")
        return httpx.Response(200, text=DOCS_SAMPLE)

    clock = VirtualClock(start=1000.0)
    keys = [("ns", f"ep{i}") for i in range(20)] + [("ns", "broken"), ("other", "garbage")]
    async with _client(handler) as client:
        scraper = Scraper(client, MAPPING, concurrency=3, clock=clock)
        results = await scraper.scrape(keys)
    assert 2 <= peak <= 3
    assert set(results) == {f"{ns}/{n}" for ns, n in keys}
    assert isinstance(results["ns/broken"], FeedUnavailable)
    assert results["ns/broken"].status == 500
    assert results["ns/broken"].endpoint == "ns/broken"
    assert isinstance(results["other/garbage"], FeedParseError)
    samples = [results[f"ns/ep{i}"] for i in range(20)]
    assert all(isinstance(s, FeedSample) and s.at == 1000.0 for s in samples)


async def test_scraper_stamps_each_sample_when_its_response_arrives():
    """`at` is the clock reading when that endpoint's response came back."""
    clock = VirtualClock(start=0.0)

    def handler(request: httpx.Request) -> httpx.Response:
        clock.advance(5.0)
        return httpx.Response(200, text="pending_requests 1\n")

    async with _client(handler) as client:
        results = await Scraper(client, MAPPING, concurrency=1, clock=clock).scrape(
            [("ns", "a"), ("ns", "b"), ("ns", "a")]
        )
    assert sorted(r.at for r in results.values() if isinstance(r, FeedSample)) == [5.0, 10.0]


async def test_scraper_wraps_auth_errors_and_logs_them():
    """A 401 on one feed becomes FeedUnavailable (cause: AuthError) and a warning, not a raise."""

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(401, json={"error": "token lacks permission"})

    async with _client(handler) as client:
        with capture_logs() as logs:
            results = await Scraper(client, MAPPING, clock=VirtualClock()).scrape([("ns", "a")])
    err = results["ns/a"]
    assert isinstance(err, FeedUnavailable)
    assert isinstance(err.__cause__, AuthError)
    assert err.status == 401
    assert [e["event"] for e in logs if e["log_level"] == "warning"] == ["feed_auth_refused"]


async def test_scraper_empty_key_list():
    """Scraping nothing returns nothing and sends nothing."""

    def handler(request: httpx.Request) -> httpx.Response:  # pragma: no cover
        raise AssertionError("no request expected")

    async with _client(handler) as client:
        assert await Scraper(client, MAPPING, clock=VirtualClock()).scrape([]) == {}


def test_scraper_rejects_zero_concurrency():
    """A concurrency below one is a configuration error."""
    with pytest.raises(ValueError, match="concurrency"):
        Scraper(None, MAPPING, concurrency=0, clock=VirtualClock())  # type: ignore[arg-type]


def test_feed_sample_defaults_allow_hand_built_samples():
    """Other tests can build a FeedSample from `at` and the few signals they need."""
    s = FeedSample(at=1.0, cpu={"a": 10.0, "b": 20.0})
    assert s.mean_cpu == 15.0
    assert s.value("pending") is None
    assert math.isclose(s.total_requests, 0.0)


@pytest.mark.parametrize(
    ("text", "fallback"),
    [
        pytest.param(OPENMETRICS_FEED, False, id="strict-openmetrics"),
        pytest.param(DOCS_SAMPLE + "# EOF\n", True, id="docs-sample-with-eof"),
        pytest.param(DOCS_SAMPLE, False, id="text-format-straight-to-text-parser"),
    ],
)
def test_parser_choice(text, fallback):
    """`# EOF` bodies try the strict parser first and fall back only when it refuses."""
    with capture_logs() as logs:
        parse_feed(text, MAPPING, at=1.0)
    assert ("feed_openmetrics_fallback" in [e["event"] for e in logs]) is fallback


def test_public_names_exist():
    """Every name in __all__ is defined (guards the public surface)."""
    import controller.platform.scrape as mod

    assert all(hasattr(mod, name) for name in mod.__all__)


@pytest.mark.parametrize(
    ("text", "at"),
    [
        ("pending_requests 3 1000000\n", 1000.0),  # Prometheus text: ms
        ("# TYPE pending_requests gauge\npending_requests 3 1000\n# EOF\n", 1000.0),  # seconds
        ("pending_requests 3 1000000\nunmapped_series 1 1000\n", 1000.0),  # unmapped: ignored
        ("pending_requests 3 999999000000\n", 5000.0),  # a future timestamp never dates it later
        ("pending_requests 3\n", 5000.0),  # no timestamp: the scrape's time
    ],
)
def test_a_sample_is_as_old_as_its_oldest_mapped_timestamp(text, at):
    assert parse_feed(text, MAPPING, at=5000.0).at == at
