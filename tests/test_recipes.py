"""Recipes and presets over feeds in each engine's shape (tests/data/feeds, built from the engines'
code), detection order, pins and overrides, and the never-twice property of the reduction."""

from __future__ import annotations

import dataclasses
import math
import random
from pathlib import Path
from types import SimpleNamespace

import pydantic
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from controller.core.params import EndpointSettings
from controller.errors import FeedParseError
from controller.platform.presets import DETECTION_ORDER, PRESETS, choose_preset, detect
from controller.platform.recipes import Recipe, base_name, family_names, reduce_feed
from controller.platform.scrape import parse_feed
from controller.platform.signals import FeedMapping
from tests.test_scrape import DOCS_SAMPLE, EMULATOR_FEED

FEEDS = Path(__file__).parent / "data" / "feeds"


def _feed(name: str) -> str:
    return (FEEDS / name).read_text()


# file, preset, in flight, waiting, running, KV cache % (mean), requests, latency count
TABLE = [
    # A saturated TGI replica: queue 0, batch 32 -> 32 in flight (one-name mappings read 0).
    ("tgi.txt", "tgi", 32.0, 0.0, 32.0, None, 1519.0, 1519.0),
    # TEI has no batch gauge: its queue is the waiting part only, in flight is left unread.
    ("tei.txt", "tei", None, 5.0, None, None, 9800.0, 9800.0),
    ("llamacpp.txt", "llamacpp", 6.0, 2.0, 4.0, None, 0.0, None),
    ("llamacpp-old.txt", "llamacpp", 1.0, 0.0, 1.0, 25.0, 0.0, None),
    ("hf-toolkit.txt", "hf-toolkit", 10.0, 7.0, 3.0, None, 0.0, None),
    # Two data-parallel engines add up; the instrumentator's http_requests_total is not counted;
    # the deprecated gpu_cache_usage_perc (same value) is a fallback, not a second term.
    ("vllm.txt", "vllm", 18.0, 4.0, 14.0, 51.0, 201.0, 201.0),
    ("vllm.om.txt", "vllm", 18.0, 4.0, 14.0, 51.0, 201.0, 201.0),
    ("vllm-v0.txt", "vllm", 7.0, 2.0, 5.0, 50.0, 40.0, 40.0),
    ("vllm-v0.om.txt", "vllm", 7.0, 2.0, 5.0, 50.0, 40.0, 40.0),
    # Two tensor-parallel ranks of one scheduler: read once.
    ("sglang.txt", "sglang", 16.0, 4.0, 12.0, 28.0, 500.0, 500.0),
    ("sglang.om.txt", "sglang", 16.0, 4.0, 12.0, 28.0, 500.0, 500.0),
]


@pytest.mark.parametrize(
    ("fixture", "preset", "pending", "waiting", "running", "kv", "requests", "lat_n"), TABLE
)
def test_each_preset_reads_its_engines_feed(
    fixture: str,
    preset: str,
    pending: float | None,
    waiting: float | None,
    running: float | None,
    kv: float | None,
    requests: float,
    lat_n: float | None,
) -> None:
    s = parse_feed(_feed(fixture), at=1.0)
    assert s.preset == preset
    assert s.pending == (None if pending is None else pytest.approx(pending))
    assert s.waiting == (None if waiting is None else pytest.approx(waiting))
    assert s.running == (None if running is None else pytest.approx(running))
    assert s.value("kv_cache") == (None if kv is None else pytest.approx(kv))
    assert s.total_requests == pytest.approx(requests)
    assert s.latency_count == (None if lat_n is None else pytest.approx(lat_n))


def test_the_platform_sample_is_read_with_the_platform_preset() -> None:
    s = parse_feed(DOCS_SAMPLE, at=1.0)
    assert s.preset == "platform"
    assert s.pending is None  # the published sample has no pending series
    assert s.requests == {"2xx": 1153.0}
    assert s.latency_count == 4.0
    e = parse_feed(EMULATOR_FEED, at=1.0)
    assert (e.preset, e.pending, e.mean_cpu) == ("platform", 7.0, 50.0)


def test_an_engine_feed_beside_the_platform_families_keeps_both() -> None:
    s = parse_feed(EMULATOR_FEED + _feed("vllm.txt"), at=1.0)
    assert s.preset == "vllm"  # engines come before the platform
    assert s.pending == 18.0  # the engine's gauges, not pending_requests
    assert s.requests["2xx"] == 1200.0  # the platform's counter by status code comes first
    assert "other" not in s.requests or s.requests.get("other", 0.0) == 0.0
    assert s.latency_count == 40.0  # the platform's summary before the engine histogram
    assert s.mean_cpu == 50.0


def test_detection_follows_the_documented_order() -> None:
    assert DETECTION_ORDER[-1] == "platform"
    both = _feed("tgi.txt") + _feed("vllm.txt")
    assert parse_feed(both, at=1.0).preset == "vllm"  # earlier in DETECTION_ORDER
    names = family_names([SimpleNamespace(name="tgi_queue_size", samples=[])])
    assert detect(names) is PRESETS["tgi"]
    assert detect(frozenset({"something_else"})) is None
    with pytest.raises(FeedParseError, match="no known series"):
        parse_feed("# TYPE something_else gauge\nsomething_else 1\n", at=1.0)


def test_a_pinned_preset_is_used_and_a_wrong_pin_is_an_error() -> None:
    s = parse_feed(_feed("tgi.txt"), at=1.0, preset="tgi")
    assert s.pending == 32.0
    with pytest.raises(FeedParseError, match="preset 'platform'"):
        parse_feed(_feed("tgi.txt"), at=1.0, preset="platform")


def test_overrides_replace_single_signals() -> None:
    over = {"pending": Recipe.model_validate([["tgi_queue_size"]])}
    s = parse_feed(_feed("tgi.txt"), at=1.0, overrides=over)
    assert (s.preset, s.pending, s.running) == ("tgi", 0.0, 32.0)
    kv = {"kv_cache": Recipe.model_validate([[{"name": "vllm:gpu_cache_usage_perc"}]])}
    raw = parse_feed(_feed("vllm.txt"), at=1.0, overrides=kv)
    assert raw.value("kv_cache") == pytest.approx(0.51)  # no scale: the engine's 0-1


def test_scrape_mapping_is_the_custom_recipe_as_before() -> None:
    legacy = FeedMapping(pending="tgi_queue_size")
    s = parse_feed(_feed("tgi.txt"), legacy, at=1.0)
    assert (s.preset, s.pending) == ("custom", 0.0)  # one name per signal, as it always read
    pinned = parse_feed(_feed("tgi.txt"), legacy, at=1.0, preset="tgi")
    assert pinned.pending == 32.0


def test_fallbacks_are_taken_in_order() -> None:
    only_waiting = "# TYPE vllm:num_requests_waiting gauge\nvllm:num_requests_waiting 3\n"
    assert parse_feed(only_waiting, at=1.0).pending == 3.0
    only_old_kv = "# TYPE vllm:gpu_cache_usage_perc gauge\nvllm:gpu_cache_usage_perc 0.5\n"
    assert parse_feed(only_old_kv, at=1.0).value("kv_cache") == 50.0


def test_endpoint_settings_validate_the_preset_and_the_recipes() -> None:
    es = EndpointSettings(feed_preset="sglang", feed_recipes={"pending": [["q"], ["r"]]})
    assert es.feed_recipes["pending"].alternatives[1][0].name == "r"
    with pytest.raises(pydantic.ValidationError, match="feed_preset"):
        EndpointSettings(feed_preset="triton")
    with pytest.raises(pydantic.ValidationError, match="feed_recipes"):
        EndpointSettings(feed_recipes={"queue": [["q"]]})
    with pytest.raises(pydantic.ValidationError, match="counted twice"):
        EndpointSettings(feed_recipes={"pending": [["q", "q"]]})


# -- never twice --------------------------------------------------------------------------------

_NAMES = sorted(
    {
        s.name
        for p in PRESETS.values()
        for r in p.recipes.values()
        for a in r.alternatives
        for s in a
    }
)


def _sample(name: str, labels: dict[str, str], value: float) -> SimpleNamespace:
    return SimpleNamespace(name=name, labels=labels, value=value)


_series = st.tuples(
    st.sampled_from(_NAMES),
    st.dictionaries(
        st.sampled_from(["replica_id", "status_code", "engine", "tp_rank", "model_name"]),
        st.sampled_from(["0", "1", "200", "503", "a"]),
        max_size=3,
    ),
    st.floats(min_value=0, max_value=1e6, allow_nan=False),
)


@settings(max_examples=150, deadline=None)
@given(series=st.lists(_series, min_size=1, max_size=12), seed=st.integers(0, 2**32 - 1))
def test_repeats_respellings_and_order_never_change_the_sample(
    series: list[tuple[str, dict[str, str], float]], seed: int
) -> None:
    """A series served again, under the other spelling (`:` as `_`, `_total` on or off) or in
    another order is one series: the sample and the detected preset are the same."""
    unique: dict[tuple[str, frozenset[tuple[str, str]]], tuple[str, dict[str, str], float]] = {}
    for name, labels, value in series:
        unique.setdefault((base_name(name), frozenset(labels.items())), (name, labels, value))
    once = [SimpleNamespace(name=n, samples=[_sample(n, lb, v)]) for n, lb, v in unique.values()]
    rng = random.Random(seed)
    noisy = list(once)
    for n, lb, v in unique.values():
        for _ in range(rng.randint(0, 2)):
            spelt = n.replace(":", "_")
            spelt = spelt.removesuffix("_total") if rng.random() < 0.5 else spelt + "_total"
            if spelt.endswith("_total_total"):
                spelt = spelt.removesuffix("_total")
            noisy.append(SimpleNamespace(name=spelt, samples=[_sample(spelt, lb, v)]))
    rng.shuffle(noisy)
    p1 = choose_preset(family_names(once))
    p2 = choose_preset(family_names(noisy))
    assert p1 == p2
    if p1 is None:
        return
    a = reduce_feed(once, p1, at=1.0)
    b = reduce_feed(noisy, p1, at=1.0)
    # Equal up to the order floats were added in (the feed's order is not the sum's).
    assert _close(dataclasses.asdict(a), dataclasses.asdict(b)), (a, b)


def _close(x: object, y: object) -> bool:
    if isinstance(x, float) and isinstance(y, float):
        return math.isclose(x, y, rel_tol=1e-12, abs_tol=1e-12)
    if isinstance(x, dict) and isinstance(y, dict):
        return x.keys() == y.keys() and all(_close(x[k], y[k]) for k in x)
    return x == y


@pytest.mark.parametrize("preset", DETECTION_ORDER)
def test_remembered_names_are_each_presets_own_overrides_included(preset):
    """`Preset.names()` is remembered per preset object (issue 16): a copy with an overridden
    recipe, and many copies coming and going (ids reused), still answer their own names."""

    def walked(p):
        return frozenset(s.key for r in p.recipes.values() for a in r.alternatives for s in a)

    base = PRESETS[preset]
    assert base.names() == walked(base)
    assert base.names() is base.names()
    for i in range(600):  # more than the cache holds: it is cleared and refilled meanwhile
        copy = base.with_overrides({"pending": Recipe.model_validate([f"made_up_{i}"])})
        assert copy.names() == walked(copy)
        assert f"made_up_{i}" in copy.names()
    assert base.names() == walked(base)
