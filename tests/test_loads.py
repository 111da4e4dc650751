"""The load suite: shipped files regenerate bit-identically, the split is documented, all load."""

from __future__ import annotations

from importlib import resources

import pytest

from controller.backtest.loads import LOADS, START_EPOCH, encode, load_suite
from controller.backtest.traces import BUNDLED


def test_suite_has_the_shapes_and_a_train_test_split():
    assert len(LOADS) >= 10
    assert {ld.name for ld in LOADS} <= set(BUNDLED)
    shapes = {ld.shape for ld in LOADS}
    assert shapes >= {
        "steady",
        "bursty",
        "diurnal",
        "multi-day",
        "ramp",
        "step",
        "flash",
        "sparse",
        "recurring",
    }
    train, test = load_suite("train"), load_suite("test")
    assert train
    assert test
    assert len(train) + len(test) == len(LOADS)
    assert len({ld.seed for ld in LOADS if ld.make is not None}) == sum(
        1 for ld in LOADS if ld.make is not None
    )


@pytest.mark.parametrize("load", [ld for ld in LOADS if ld.make is not None], ids=lambda x: x.name)
def test_shipped_file_is_what_the_generator_writes(load):
    shipped = resources.files("controller").joinpath("data/traces", load.file).read_bytes()
    assert encode(load) == shipped
    tr = load.trace()
    assert len(tr) > 0
    assert tr.input_tokens is not None
    assert tr.output_tokens is not None
    assert tr.start_epoch is not None
    assert tr.start_epoch >= START_EPOCH


def test_multi_day_load_has_idle_nights_and_a_weekend():
    ld = next(x for x in LOADS if x.name == "business-days")
    tr = ld.trace()
    base = tr.start_epoch - START_EPOCH
    per_day = [0] * 4
    night = 0
    for o in tr.offsets:
        t = base + o
        per_day[int(t // 86400)] += 1
        night += (t % 86400) < 7 * 3600
    assert night == 0
    assert per_day[1] < 50
    assert per_day[2] < 50
    assert per_day[0] > 10_000
    assert per_day[3] > 10_000
