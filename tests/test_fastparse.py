"""`fastparse.parse_text` against prometheus_client: it returns what the library returns, or None.

The reference is `scrape._families`' rule applied to the library directly: a body ending in `# EOF`
goes to the OpenMetrics parser, and to the text parser when that refuses it; anything else goes to
the text parser. The fast parser must return None wherever the library raises, and otherwise
either None or families equal to the library's (names, types, HELP, samples, labels, values with
their int/float type, NaN equal to NaN). Properties run on feeds of the known shape (where the
fast path must be taken), on any feed of the subset it claims (taken exactly when the library
accepts), and on nasty feeds (timestamps, exemplars, bad escapes, junk, `# EOF`...).
"""

from __future__ import annotations

import contextlib
import math
import re
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as om_families,
)
from prometheus_client.parser import text_string_to_metric_families as text_families

import controller.platform.scrape as scrape
import controller.platform.signals as signals
from controller.emulator.engines import ENGINE_FEEDS, EngineLoad, render_engine
from controller.emulator.load import Constant
from controller.emulator.platform import Platform, SimParams
from controller.errors import FeedParseError
from controller.platform.fastparse import parse_text, scan_text
from controller.platform.models import UserRef
from controller.platform.recipes import family_names
from tests.test_scrape import DOCS_SAMPLE, EMULATOR_FEED, OPENMETRICS_FEED

SHARED = Path(__file__).resolve().parents[2] / "shared"
MAPPING = signals.FeedMapping()


# ------------------------------------------------------------------------------------- oracle


def library(text: str) -> list[Any]:
    """`_families`' rule on the library alone (raises what the text parser raises)."""
    if text.rstrip().endswith("# EOF"):
        with contextlib.suppress(Exception):  # refused: the lenient parser decides
            return list(om_families(text.rstrip() + "\n"))
    return list(text_families(text))


def _v(value: Any) -> Any:
    return ("NaN", type(value)) if isinstance(value, float) and math.isnan(value) else value


def norm(families: list[Any]) -> list[Any]:
    """Everything a consumer can see, NaN made comparable, int/float kept apart."""
    return [
        (
            f.name,
            f.type,
            f.documentation,
            f.unit,
            [
                (s.name, s.labels, _v(s.value), type(s.value), s.timestamp, s.exemplar)
                for s in f.samples
            ],
        )
        for f in families
    ]


def check(text: str) -> list[Any] | None:
    """The differential property for one body; returns the fast result."""
    fast = parse_text(text)
    try:
        ref = library(text)
    except Exception:
        assert fast is None, f"library refuses, fast parser returned {fast!r}"
        return None
    if fast is not None:
        assert norm(fast) == norm(ref)
        if text.rstrip().endswith("# EOF"):
            try:  # taken only because the strict parser must refuse it: check that claim
                list(om_families(text.rstrip() + "\n"))
            except ValueError:
                pass
            else:
                pytest.fail("the strict parser accepts a `# EOF` body the fast path took")
    return fast


def parse_feed_outcome(text: str) -> Any:
    try:
        return scrape.parse_feed(text, MAPPING, at=1.0, endpoint="ns/ep")
    except FeedParseError as exc:
        return ("error", str(exc))


def assert_parse_feed_same(text: str) -> None:
    """`parse_feed` gives the same sample (or the same error) with the fast path switched off."""
    with_fast = parse_feed_outcome(text)
    with (
        mock.patch.object(scrape, "parse_text", return_value=None),
        mock.patch.object(scrape, "scan_text", return_value=None),
    ):
        without = parse_feed_outcome(text)
    assert with_fast == without
    assert_scan_matches(text)


def assert_scan_matches(text: str) -> None:
    """The single pass (`scan_text`) holds exactly `parse_text`'s samples and family names."""
    fast = parse_text(text)
    scan = scan_text(text)
    if fast is None:
        assert scan is None
        return
    assert scan is not None
    flat = [(s.name, s.labels, _v(s.value), type(s.value)) for f in fast for s in f.samples]
    assert [(n, labels, _v(v), type(v)) for n, labels, v in scan.rows] == flat
    assert scan.names == family_names(fast)


# ------------------------------------------------------------------------------ table: feeds


T0 = 1_700_000_000.0
NS = "acme"
USER = UserRef(id="u-1", name="governor-bot")


def _endpoint(p: Platform, name: str, *, replicas: int, accelerator: str, rps: float) -> None:
    gpu = accelerator == "gpu"
    body = {
        "name": name,
        "type": "protected",
        "compute": {
            "accelerator": accelerator,
            "instanceType": "nvidia-l4" if gpu else "intel-spr",
            "instanceSize": "x1" if gpu else "x2",
            "scaling": {
                "minReplica": replicas,
                "maxReplica": max(replicas, 1),
                "scaleToZeroTimeout": None,
            },
        },
        "provider": {"vendor": "aws", "region": "us-east-1"},
        "model": {"repository": "gpt2", "framework": "pytorch", "task": "text-generation"},
    }
    sim = SimParams(cold_start_s=60.0, concurrency=4, service_time_s=1.0)
    load = Constant(rps) if rps > 0 else None
    p.create(NS, body, by=USER, sim=sim, load=load, ready=True)


def emulator_feeds() -> dict[str, str]:
    """What the emulator renders in a spread of states."""
    p = Platform(start=T0, seed=3)
    p.set_quota(NS, "aws", "gpu", 1000)
    p.set_quota(NS, "aws", "cpu", 1000)
    _endpoint(p, "busy", replicas=2, accelerator="gpu", rps=6.0)
    _endpoint(p, "many", replicas=24, accelerator="gpu", rps=80.0)
    _endpoint(p, "idle-cpu", replicas=1, accelerator="cpu", rps=0.0)  # NaN quantiles
    _endpoint(p, "zero", replicas=0, accelerator="gpu", rps=0.0)  # scaled to zero
    _endpoint(p, "woken", replicas=0, accelerator="gpu", rps=2.0)  # 503s, cold replicas
    _endpoint(p, "paused", replicas=2, accelerator="gpu", rps=3.0)
    feeds = {"fresh": p.render_metrics(NS, "busy")}
    p.advance_to(T0 + 30)
    feeds["woken-30s"] = p.render_metrics(NS, "woken")
    p.advance_to(T0 + 300)
    p.pause(NS, "paused", by=USER)
    for name in ("busy", "many", "idle-cpu", "zero", "woken", "paused"):
        feeds[name] = p.render_metrics(NS, name)
    return feeds


EMULATOR = emulator_feeds()
LITERALS = {
    "docs-sample": DOCS_SAMPLE,
    "docs-sample+eof": DOCS_SAMPLE + "# EOF\n",
    "test-scrape-emulator": EMULATOR_FEED,
}


def _shared_feeds() -> dict[str, str]:
    """Fenced blocks with `# TYPE` lines in ../shared/reference (documented and engine feeds)."""
    feeds = {}
    for path in sorted((SHARED / "reference").glob("*.md")):
        blocks = re.findall(r"^```[a-z]*\n(.*?)^```", path.read_text(), flags=re.M | re.S)
        for i, block in enumerate(blocks):
            if "# TYPE " in block:
                feeds[f"{path.stem}#{i}"] = block
    return feeds


@pytest.mark.parametrize(
    "text", [*EMULATOR.values(), *LITERALS.values()], ids=[*EMULATOR, *LITERALS]
)
def test_known_feeds_take_the_fast_path_and_match(text):
    """Every emulator state and the platform's sample: fast path taken, library's result."""
    assert check(text) is not None
    assert_parse_feed_same(text)


def test_emulator_feeds_cover_the_states_they_claim():
    """The table really holds NaN quantiles, empty families, 503s and many replicas."""
    assert "} NaN" in EMULATOR["idle-cpu"]
    assert 'replica_id="proxy",status_code="503"' in EMULATOR["woken"]
    assert "cpu_usage_percent{" not in EMULATOR["paused"]
    assert EMULATOR["many"].count("cpu_usage_percent{") >= 20


def test_shared_reference_feeds():
    """Feeds documented under ../shared (the platform's and the engines'): taken and equal."""
    if not SHARED.is_dir():
        pytest.skip(f"{SHARED} is absent (reference material lives outside the project)")
    feeds = _shared_feeds()
    assert feeds, "no fenced feed found under ../shared/reference"
    for name, text in feeds.items():
        assert check(text) is not None, name
        assert_parse_feed_same(text)


def test_strict_openmetrics_body_goes_to_the_library():
    """A well-formed OpenMetrics body might be accepted by the strict parser: not copied, None."""
    assert parse_text(OPENMETRICS_FEED) is None
    assert check(OPENMETRICS_FEED.replace("# EOF\n", "")) is not None
    assert_parse_feed_same(OPENMETRICS_FEED)


# Semantics checked by experiment against the library (each case is also run through `check`).
CASES: list[tuple[str, str, bool]] = [
    ("counter-renames-samples", "# TYPE c counter\nc 1\n", True),
    ("counter-named-total", "# TYPE c_total counter\nc_total 1\n", True),
    ("counter-family-total-sample-bare", "# TYPE c_total counter\nc 1\n", True),
    ("untyped-counter-suffix", "c_total 1\n", True),
    ("unit-line-ignored", "# TYPE g gauge\n# UNIT g percent\ng 1\n", True),
    ("help-escapes", "# HELP g a\\\\b\\nc\\td\ng 1\n", True),
    ("help-only-name", "# HELP g\ng 1\n", True),
    ("help-after-samples", "# TYPE g gauge\ng 1\n# HELP g late\ng 2\n", True),
    ("type-twice", "# TYPE g gauge\n# TYPE g counter\ng 1\n", True),
    ("type-after-samples", "g 1\n# TYPE g counter\ng 2\n", True),
    ("repeated-untyped", "u 1\nu 2\n", True),
    ("summary", '# TYPE s summary\ns{quantile="0.5"} NaN\ns_count 0\ns_sum 0\n', True),
    ("histogram", '# TYPE h histogram\nh_bucket{le="+Inf"} 3\nh_sum 1.5\nh_count 3\nh 9\n', True),
    ("values", "a +Inf\nb -Inf\nc NaN\nd -1.5e-3\ne +7\nf 1E3\ng .5\nh 0009\n", True),
    ("label-escapes", 'a{x="q\\"\\\\\\n}, {=#"} 1\n', True),
    ("label-unicode", 'a{x="é ☃ \u2028 x"} 1\n', True),
    ("empty-labels", "a{} 1\n", True),
    ("whitespace-around-lines", "  a 1\t\r\n\n\t\n# TYPE b gauge  \nb 2", True),
    ("no-trailing-newline", "a 1", True),
    ("colon-names", "a:b:c 1\n", True),
    ("eof-doomed-counter", "# HELP c x\n# TYPE c counter\n# UNIT c n\nc 1\n# EOF", True),
    ("eof-clean-counter", "# TYPE c counter\nc_total 1\n# EOF\n", False),
    ("eof-no-counter", "# TYPE g gauge\ng 1\n# EOF\n", False),
    ("eof-doomed-but-blank-before", "# TYPE c counter\n\nc 1\n# EOF\n", False),
    ("timestamp", "a 1 1700000000000\n", False),
    ("exemplar", 'a_total 1 # {t="x"} 1\n', False),
    ("tab-separator", "a\t1\n", False),
    ("double-space", "a  1\n", False),
    ("bad-escape", 'a{x="\\t"} 1\n', False),
    ("unescaped-quote", 'a{x="a"b"} 1\n', False),
    ("duplicate-label", 'a{x="1",x="2"} 1\n', False),
    ("trailing-comma", 'a{x="1",} 1\n', False),
    ("space-in-labels", 'a{x="1", y="2"} 1\n', False),
    ("name-label", '{__name__="a"} 1\n', False),
    ("reserved-label", 'a{__x="1"} 1\n', False),
    ("underscore-value", "a 1_000\n", False),
    ("unicode-digit", "a \u0663\n", False),
    ("type-without-type", "# TYPE a\na 1\n", False),
    ("type-unknown-word", "# TYPE a bogus\na 1\n", False),
    ("type-indented", "#  TYPE a counter\na 1\n", False),
    ("hash-no-space", "#TYPE a counter\na 1\n", False),
    ("counter-named-total-only", "# TYPE _total counter\n", False),
    ("junk", "<html>\n", False),
    ("unclosed", 'a{x="1"\n', False),
    # Issue 13: huge integers are the library's float (inf past 4,300 digits), a BOM is refused.
    ("int-4300-digits", "a " + "9" * 4300 + "\n", True),
    ("int-4301-digits", "a " + "9" * 4301 + "\n", True),
    ("negative-int-4301-digits", "a -" + "9" * 4301 + "\n", True),
    ("int-past-float-range", "a 1" + "0" * 400 + "\n", True),
    ("bom", "\ufeff# TYPE a gauge\na 1\n", False),
    ("bom-sample", "\ufeffa 1\n", False),
    # Repeated series and data after `# EOF`: the parsers' families (both count or drop them);
    # `_families` refuses them whichever ran (test_refused_whichever_parser_ran).
    ("repeated-series", 'a{x="1"} 1\na{x="1"} 2\n', True),
    ("repeated-series-label-order", 'a{x="1",y="2"} 1\na{y="2",x="1"} 2\n', True),
    ("data-after-eof", "a 1\n# EOF\na 2\n", True),
]


@pytest.mark.parametrize(
    ("text", "taken"), [(t, k) for _, t, k in CASES], ids=[n for n, _, _ in CASES]
)
def test_edge_cases(text, taken):
    """Each case: fast path taken or not as listed, and never a result the library won't give."""
    assert (check(text) is not None) is taken
    assert_parse_feed_same(text)


REFUSED: list[tuple[str, str, str]] = [
    (
        "repeated-series",
        'a{x="1"} 1\na{x="1"} 2\n',
        'line 2: duplicate series a{x="1"} (first at line 1)',
    ),
    (
        "repeated-label-order",
        '# TYPE a gauge\na{x="1",y="2"} 1\na{y="2",x="1"} 2\n',
        'line 3: duplicate series a{x="1",y="2"} (first at line 2)',
    ),
    (
        "feed-served-twice",
        DOCS_SAMPLE + DOCS_SAMPLE,
        'line 18: duplicate series latency_distribution{quantile="0.5"} (first at line 3)',
    ),
    (
        "counter-bare-and-total",
        "# TYPE c counter\nc 1\nc_total 2\n",
        "line 3: duplicate series c_total (first at line 2)",
    ),
    # The strict parser drops a repeat within a group without a word: still refused.
    (
        "strict-openmetrics-repeat",
        '# TYPE g gauge\ng{a="1"} 1\ng{a="1"} 2\n# EOF\n',
        'line 3: duplicate series g{a="1"} (first at line 2)',
    ),
    (
        "strict-openmetrics-family-twice",
        OPENMETRICS_FEED.replace("# EOF\n", "") * 2 + "# EOF\n",
        "duplicate series",
    ),
    ("data-after-eof", "a 1\n# EOF\na 2\n", "line 3: content after `# EOF` (line 2)"),
    ("data-after-eof-blank-lines", "a 1\n# EOF\n\n  \n# x\n", "line 5: content after `# EOF`"),
    ("eof-twice", OPENMETRICS_FEED + OPENMETRICS_FEED, "line 14: content after `# EOF` (line 13)"),
    ("bom", "\ufeff# TYPE a gauge\na 1\n", "line 1: the feed starts with a UTF-8 byte-order mark"),
]


@pytest.mark.parametrize(
    ("text", "message"), [(t, m) for _, t, m in REFUSED], ids=[n for n, _, _ in REFUSED]
)
def test_refused_whichever_parser_ran(text, message):
    """Repeats, data after `# EOF` and a BOM: a parse error naming the line, never a sum, and
    the same error with the fast path off (so the two paths cannot disagree)."""
    for fast in (True, False):
        fake = parse_text if fast else lambda *a: None
        with mock.patch.object(scrape, "parse_text", fake), pytest.raises(FeedParseError) as info:
            scrape._families(text, "ns/ep")
        assert message in str(info.value), (fast, str(info.value))
    assert_parse_feed_same(text)


def test_blank_lines_after_eof_are_fine():
    """Trailing blank lines after `# EOF` are not content."""
    assert scrape._families(OPENMETRICS_FEED + "\n  \n", None)


@pytest.mark.parametrize("digits", [4300, 4301, 400])
def test_huge_integers_end_as_impossible_values_not_crashes(digits):
    """The library returns an int or inf; either way the value is impossible, not a crash."""
    text = "pending_requests " + "9" * digits + "\n"
    got = parse_feed_outcome(text)
    assert got[0] == "error"
    assert "impossible value inf" in got[1]
    assert_parse_feed_same(text)


def test_error_path_reads_the_feed_once(monkeypatch):
    """A bad last line is found by counting the lines the library read, not by re-parsing each
    line on its own (the old locator parsed every line again: 3.6x a normal parse)."""
    lines = [f'pending_requests{{replica_id="r{i}"}} 1' for i in range(2000)]
    text = "\n".join([*lines, "pending_requests{"]) + "\n"
    read = 0
    real = scrape._Cursor.lines

    def counting(self, body, deadline):
        nonlocal read
        for line in real(self, body, deadline):
            read += 1
            yield line

    monkeypatch.setattr(scrape._Cursor, "lines", counting)
    with pytest.raises(FeedParseError, match=r"line 2001: 'pending_requests\{'"):
        scrape._families(text, None)
    assert read == 2001


@pytest.mark.parametrize("fast", [True, False])
def test_parse_deadline_abandons_a_long_parse(fast):
    """Past `parse_deadline_s` the parse stops (fast pass and library alike): a parse error."""
    lines = [f'pending_requests{{replica_id="r{i}"}} 1' for i in range(5000)]
    if not fast:
        lines[0] += " 1700000000000"  # a timestamp: the fast parser gives up at once
    text = "\n".join(lines) + "\n"
    assert (parse_text(text) is not None) is fast
    with pytest.raises(FeedParseError, match=r"line \d+: parse abandoned, over scrape"):
        scrape.parse_feed(text, MAPPING, at=1.0, parse_deadline_s=1e-9)
    assert scrape.parse_feed(text, MAPPING, at=1.0, parse_deadline_s=60.0).pending == 5000


def test_fast_path_is_what_families_uses(monkeypatch):
    """`_families` returns the fast result when there is one, and the library's otherwise."""
    sentinel: list[Any] = []
    monkeypatch.setattr(scrape, "parse_text", lambda _text, _deadline=None: sentinel)
    assert scrape._families("whatever", None) is sentinel
    monkeypatch.setattr(scrape, "parse_text", lambda _text, _deadline=None: None)
    with pytest.raises(FeedParseError, match="line 1"):
        scrape._families("foo{", None)


# ------------------------------------------------------------------------ hypothesis: grammar

_FIRST = "abcxyzABCXYZ_:"
_REST = "abcxyzABCXYZ0129_:"


def _names(first: str, rest: str, max_size: int) -> st.SearchStrategy[str]:
    """Valid-alphabet names, cheaper to draw than `from_regex`."""
    return st.tuples(st.sampled_from(first), st.text(rest, max_size=max_size)).map("".join)


METRIC_NAMES = st.one_of(
    st.sampled_from(
        ["latency_distribution", "http_requests", "pending_requests", "cpu_usage_percent", "x"]
    ),
    _names(_FIRST, _REST, 10),
)
SUFFIXES = st.sampled_from(["", "", "", "_total", "_count", "_sum", "_bucket", "_created"])
LABEL_NAMES = st.one_of(
    st.sampled_from(["replica_id", "status_code", "quantile", "le", "gpu"]),
    _names(_FIRST.replace(":", ""), _REST.replace(":", ""), 6),
)
RAW_CHARS = st.one_of(
    st.sampled_from(list("\\\"\n}{,= #\t'é☃\u2028\x85\r")),
    st.characters(codec="utf-8", exclude_categories=["Cs"]),
)
LABEL_VALUES = st.text(RAW_CHARS, max_size=8)
TYPES = st.sampled_from(
    ["counter", "gauge", "summary", "histogram", "untyped", "unknown", "info", "stateset"]
)
PADDING = st.sampled_from(["", "", "", " ", "\t", "  ", "\r", "\x0b", "\xa0"])


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


@st.composite
def values(draw: st.DrawFn, nasty: bool = False) -> str:
    options = [
        st.integers(-(10**20), 10**20).map(str),
        st.floats(allow_nan=True, allow_infinity=True).map(repr),
        st.floats(allow_nan=False, allow_infinity=False).map(lambda f: f"{f:.9g}"),
        st.floats(allow_nan=False, allow_infinity=False).map(lambda f: f"{f:e}"),
        st.sampled_from(
            ["NaN", "+Inf", "-Inf", "nan", "inf", "-0", "+5", "1E3", ".5", "5.", "007"]
        ),
    ]
    if nasty:
        options.append(
            st.sampled_from(
                [
                    *("0x10", "1_000", "\u0663", "\u00b2", "", "1.2.3", "abc", "++1", "1e"),
                    *("Infinity", "9" * 4301, "-" + "9" * 4301, "1" + "0" * 400, "9" * 4300),
                ]
            )
        )
        options.append(st.text(RAW_CHARS, max_size=4))
    return draw(st.one_of(options))


@st.composite
def labels(draw: st.DrawFn) -> str:
    names = draw(st.lists(LABEL_NAMES, max_size=3, unique=True))
    if not names:
        return draw(st.sampled_from(["", "", "{}"]))
    pairs = [f'{n}="{_escape(draw(LABEL_VALUES))}"' for n in names]
    return "{" + ",".join(pairs) + "}"


@st.composite
def subset_line(draw: st.DrawFn) -> str:
    """A line of the subset the fast parser claims, padded as the text parser tolerates."""
    name = draw(METRIC_NAMES)
    kind = draw(st.sampled_from(["sample", "sample", "sample", "help", "type", "unit", "other"]))
    if kind == "sample":
        line = f"{name}{draw(SUFFIXES)}{draw(labels())} {draw(values())}"
    elif kind == "help":
        doc = draw(st.text(RAW_CHARS, max_size=10)).replace("\n", "").replace("\r", "").strip()
        line = f"# HELP {name} {doc}".rstrip()
    elif kind == "type":
        line = f"# TYPE {name} {draw(TYPES)}"
    elif kind == "unit":
        line = f"# UNIT {name} percent"
    else:
        line = draw(st.sampled_from(["", "#", "# EOF here", "# a comment", "# UNIT", "  "]))
    return draw(PADDING) + line + draw(PADDING)


@st.composite
def nasty_line(draw: st.DrawFn) -> str:
    name = draw(METRIC_NAMES)
    lab = draw(labels())
    value = draw(values(nasty=True))
    return draw(
        st.sampled_from(
            [
                f"{name}{lab} {value} 1700000000000",  # timestamp
                f'{name}_total{lab} {value} # {{trace_id="a"}} 1',  # exemplar
                f"{name}{lab}\t{value}",
                f"{name}{lab}  {value}",
                f"{name} {lab} {value}",
                f"{name}{lab} {value}",
                f'{name}{{a="{draw(LABEL_VALUES)}"}} {value}',  # unescaped value
                f'{name}{{a="\\t",b="x"}} {value}',
                f'{name}{{a="1",a="2"}} {value}',
                f'{name}{{a="1",}} {value}',
                f'{name}{{a = "1"}} {value}',
                f'{name}{{a="1" ,b="2"}} {value}',
                f'{{__name__="{name}"}} {value}',
                f'{name}{{__name__="{name}"}} {value}',
                f'{name}{{a:b="1"}} {value}',
                f"{name}{{",
                f'{name}{{a="1"',
                f"# HELP {name}",
                f"# TYPE {name}",
                f"#HELP {name} doc",
                f"#  TYPE {name} gauge",
                f"#\tHELP {name} doc",
                f"# TYPE {name} COUNTER",
                f"# TYPE {name} counter extra",
                f'# HELP "{name}" doc',
                f"# HELP {name}  doc",
                f"# TYPE {name}_total counter",
                "# TYPE _total counter",
                "# EOF",
                "<html><body>502</body></html>",
                '{"error": "no plan"}',
                "}",
                '"',
                draw(st.text(RAW_CHARS, max_size=12)),
            ]
        )
    )


@st.composite
def known_shape(draw: st.DrawFn) -> str:
    """Feeds like the emulator's and the platform's, with random ids, values and options."""
    rid = st.text("abcdefghjkmnpqrstuvwxyz0123456789", min_size=13, max_size=13)
    replicas = draw(st.lists(rid.map(lambda r: f"{r[:8]}-{r[8:]}"), max_size=6, unique=True))
    eof = draw(st.booleans()) and bool(replicas)
    blocks: list[list[str]] = []
    quantiles = draw(st.lists(st.sampled_from(["0.5", "0.9", "0.95", "0.99"]), unique=True))
    nan = draw(st.booleans())
    lat = [
        "# HELP latency_distribution Latency distribution",
        "# TYPE latency_distribution summary",
    ]
    for q in quantiles:
        v = "NaN" if nan else f"{draw(st.floats(0, 100)):.9g}"
        lat.append(f'latency_distribution{{quantile="{q}"}} {v}')
    lat.append(f"latency_distribution_count {draw(st.integers(0, 10**9))}")
    lat.append(f"latency_distribution_sum {draw(st.floats(0, 1e9)):.9g}")
    blocks.append(lat)
    req = [
        "# HELP http_requests HTTP requests by code and replicas",
        "# TYPE http_requests counter",
    ]
    codes = st.sampled_from(["200", "404", "429", "500", "503"])
    for rid in replicas:
        req.append(
            f'http_requests{{replica_id="{rid}",status_code="{draw(codes)}"}} '
            f"{draw(st.integers(0, 10**12))}"
        )
    blocks.append(req)
    if draw(st.booleans()):
        pending = draw(st.integers(0, 10**6))
        blocks.append(["# HELP pending_requests Requests", "# TYPE pending_requests gauge"])
        blocks[-1].append(f"pending_requests {pending}")
    for metric in draw(
        st.lists(
            st.sampled_from(
                [
                    "cpu_usage_percent",
                    "gpu_usage_percent",
                    "memory_usage_percent",
                    "gpu_memory_usage_percent",
                ]
            ),
            unique=True,
        )
    ):
        block = [f"# HELP {metric} Percent"] if draw(st.booleans()) else []
        block += [f"# TYPE {metric} gauge", f"# UNIT {metric} percent"]
        block += [f'{metric}{{replica_id="{r}"}} {draw(st.floats(0, 100)):.2f}' for r in replicas]
        blocks.append(block)
    order = draw(st.permutations(range(len(blocks))))
    text = "\n".join(line for i in order for line in blocks[i])
    if eof:
        text += "\n# EOF"
    return text + draw(st.sampled_from(["\n", "", "\n\n"]))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(known_shape())
def test_known_shape_is_taken_and_equal(text):
    """The feed shape endpoints serve always takes the fast path, and parses as the library."""
    assert check(text) is not None
    assert_parse_feed_same(text)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(subset_line(), max_size=14), st.sampled_from(["\n", "\n", ""]))
def test_subset_is_taken_exactly_when_the_library_accepts(lines, end):
    """Random names, labels, escapes, values, metadata orders: the claimed subset is complete."""
    text = "\n".join(lines) + end
    if text.rstrip().endswith("# EOF"):
        return  # not generated on purpose; a `# EOF` body is the next test's business
    try:
        library(text)
    except Exception:
        accepted = False
    else:
        accepted = True
    event(f"library accepts: {accepted}")
    assert (check(text) is not None) is accepted
    assert_scan_matches(text)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.sampled_from(ENGINE_FEEDS),
    st.integers(0, 50),
    st.integers(0, 50),
    st.integers(0, 10**6),
    st.floats(0, 1e6),
    st.booleans(),
)
def test_engine_feeds_single_pass_equals_library(feed, waiting, running, done, total, om):
    """Each engine's own exposition, any load, detected preset: the single pass's FeedSample is
    the library path's (or both refuse alike)."""
    load = EngineLoad(
        waiting=waiting,
        running=running,
        capacity=8,
        completed=done,
        latency_count=done,
        latency_sum=total,
        created=T0,
    )
    text = render_engine(feed, load, openmetrics=om)[0]

    def outcome() -> Any:
        try:
            return scrape.parse_feed(text, None, at=1.0, endpoint="ns/ep")
        except FeedParseError as exc:
            return ("error", str(exc))

    with_fast = outcome()
    with (
        mock.patch.object(scrape, "parse_text", return_value=None),
        mock.patch.object(scrape, "scan_text", return_value=None),
    ):
        assert outcome() == with_fast
    assert_scan_matches(text)


def test_parse_feed_takes_the_single_pass(monkeypatch):
    """A normal feed is reduced from the single pass's rows: no Metric objects are built."""

    def refuse(*_args: Any) -> None:
        raise AssertionError("parse_text called")

    monkeypatch.setattr(scrape, "parse_text", refuse)
    got = scrape.parse_feed(EMULATOR_FEED, MAPPING, at=1.0)
    assert got.pending is not None
    monkeypatch.setattr(scrape, "scan_text", lambda _text, _deadline=None: None)
    with pytest.raises(AssertionError, match="parse_text called"):
        scrape._families(EMULATOR_FEED, None)


@st.composite
def nasty_feed(draw: st.DrawFn) -> str:
    """A known-shape feed with subset and nasty lines spliced in, odd line ends and endings."""
    lines = draw(known_shape()).split("\n")
    for extra in draw(st.lists(st.one_of(subset_line(), nasty_line()), max_size=6)):
        lines.insert(draw(st.integers(0, len(lines))), extra)
    if draw(st.booleans()):  # repeat a line (a series twice, a HELP twice...)
        lines.insert(draw(st.integers(0, len(lines))), draw(st.sampled_from(lines)))
    if draw(st.integers(0, 9)) == 0:
        lines[0] = "\ufeff" + lines[0]
    end = draw(st.sampled_from(["", "\n", "\n\n", "# EOF", "# EOF\n", "\n# EOF\n  \n"]))
    return draw(st.sampled_from(["\n", "\n", "\r\n"])).join(lines) + end


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(nasty_feed(), st.lists(nasty_line(), max_size=4).map("\n".join)))
def test_nasty_feeds_are_library_equal_or_none(text):
    """Anything at all: the fast result is None or exactly the library's."""
    event(f"fast path taken: {check(text) is not None}")
    assert_parse_feed_same(text)
