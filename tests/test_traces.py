"""The trace loader: the real Azure format, other time columns, malformed rows, transformations."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from controller.backtest.traces import BUNDLED, TraceError, concat, load_trace, parse_trace

SHARED = Path(__file__).resolve().parents[2] / "shared" / "traces"


def test_azure_format_loads_as_is():
    text = (
        "TIMESTAMP,ContextTokens,GeneratedTokens\n"
        "2023-11-16 18:17:03.9799600,4808,10\n"
        "2023-11-16 18:17:04.0319600,3180,8\n"
        "2023-11-16 18:17:05.5000000,110,27\n"
    )
    tr = parse_trace(text, name="t")
    assert tr.offsets == pytest.approx((0.0, 0.052, 1.520040))
    assert tr.input_tokens == (4808, 3180, 110)
    assert tr.output_tokens == (10, 8, 27)
    assert tr.start_epoch == pytest.approx(1700158623.97996)


@pytest.mark.parametrize(
    ("text", "offsets"),
    [
        ("timestamp\n1700000000.5\n1700000002\n", (0.0, 1.5)),  # epoch seconds
        ("offset_s,input_tokens,output_tokens\n3,1,2\n0.5,3,4\n", (0.0, 2.5)),  # unsorted offsets
        ("time\n2024-01-01T00:00:00Z\n2024-01-01T01:00:00+01:00\n", (0.0, 0.0)),
        ("Arrival_Time,other\n2024-01-01 00:00:01,x\n2024-01-01 00:00:03.25,y\n", (0.0, 2.25)),
    ],
)
def test_other_time_columns(text, offsets):
    assert parse_trace(text).offsets == pytest.approx(offsets)


def test_tokens_sorted_with_arrivals_and_optional():
    tr = parse_trace("offset_s,prompt_tokens,completion_tokens\n5,50,5\n1,10,1\n")
    assert tr.input_tokens == (10, 50)
    assert tr.output_tokens == (1, 5)
    assert parse_trace("offset_s\n1\n").input_tokens is None


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty file"),
        ("TIMESTAMP,ContextTokens\n", "no requests"),
        ("when,ContextTokens\n2023-11-16 18:17:03,1\n", ":1: no arrival column"),
        ("TIMESTAMP,ContextTokens\n2023-11-16 18:17:03,1\n2023-11-16 18:17:04\n", ":3: expected 2"),
        ("TIMESTAMP,ContextTokens\n2023-11-16 18:17:03,1\nyesterday,2\n", ":3: TIMESTAMP: cannot"),
        ("TIMESTAMP,ContextTokens\n2023-13-16 18:17:03,1\n", ":2: TIMESTAMP: cannot"),
        ("TIMESTAMP,ContextTokens\n2023-11-16 18:17:03.12x,1\n", ":2: TIMESTAMP: cannot"),
        ("TIMESTAMP,ContextTokens\n2023-11-16 18:17:03,-4\n", ":2: ContextTokens: expected tok"),
        ("TIMESTAMP,GeneratedTokens\n2023-11-16 18:17:03,1.5\n", ":2: GeneratedTokens: expected a"),
        (
            "TIMESTAMP,GeneratedTokens\n2023-11-16 18:17:03,lots\n",
            ":2: GeneratedTokens: expected a",
        ),
        ("offset_s\n1\n\n-3\n", ":4: offset_s: expected a finite offset"),
        ("offset_s\n1\nnan\n", ":3: offset_s: "),
        ('offset_s,x\n1,"unterminated\n', "unterminated|expected|unreadable"),
    ],
)
def test_malformed_rows_name_the_line(text, message):
    with pytest.raises(TraceError, match=message) as info:
        parse_trace(text, source="bad.csv")
    assert str(info.value).startswith("bad.csv")


def test_missing_file_and_gzip(tmp_path):
    with pytest.raises(TraceError, match="no such trace file"):
        load_trace(tmp_path / "nope.csv")
    p = tmp_path / "t.csv.gz"
    p.write_bytes(gzip.compress(b"offset_s\n0\n2\n"))
    tr = load_trace(p)
    assert tr.name == "t"
    assert tr.offsets == (0.0, 2.0)


AZURE = {k: v for k, v in BUNDLED.items() if k.startswith("azure-")}


@pytest.mark.parametrize("name", sorted(AZURE))
def test_bundled_traces_load(name):
    tr = load_trace(name)
    assert len(tr) > 8000
    assert tr.input_tokens is not None
    assert tr.output_tokens is not None
    assert 3000 < tr.duration_s < 3600


@pytest.mark.skipif(not SHARED.is_dir(), reason="../shared/traces not present")
@pytest.mark.parametrize(("name", "file"), [(k, v.removesuffix(".gz")) for k, v in AZURE.items()])
def test_bundled_equal_shared(name, file):
    shared = load_trace(SHARED / file)
    bundled = load_trace(name)
    assert shared.offsets == bundled.offsets
    assert shared.input_tokens == bundled.input_tokens


def test_transformations():
    tr = parse_trace("offset_s,input_tokens\n0,1\n10,2\n20,3\n", name="x")
    assert tr.speedup(2).offsets == (0.0, 5.0, 10.0)
    assert tr.shift(5).offsets == (5.0, 15.0, 25.0)
    w = tr.window(5, 10)
    assert w.offsets == (5.0,)
    assert w.input_tokens == (2,)
    rep = tr.repeat(2, gap_s=100)
    assert rep.offsets == (0.0, 10.0, 20.0, 121.0, 131.0, 141.0)
    assert rep.input_tokens == (1, 2, 3, 1, 2, 3)
    assert concat([tr, tr.speedup(10)], gap_s=0).offsets == (0.0, 10.0, 20.0, 21.0, 22.0, 23.0)
    doubled = tr.scale_rate(2.0, seed=1)
    assert len(doubled) == 6
    assert doubled.duration_s <= 21.0
    assert doubled.offsets == tr.scale_rate(2.0, seed=1).offsets
    half = parse_trace("offset_s\n" + "\n".join(str(i) for i in range(1000))).scale_rate(0.5)
    assert 400 < len(half) < 600
    assert "speedup x2" in tr.speedup(2).notes
    for bad in (lambda: tr.speedup(0), lambda: tr.scale_rate(-1), lambda: tr.repeat(0)):
        with pytest.raises(TraceError):
            bad()
