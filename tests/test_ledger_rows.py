"""The ledger writes an endpoint's row only when its state changed: whatever a tick left in the
file must be exactly the state in memory (a `kill -9` after any commit resumes from the file), and
the unchanged rows' `data` must really be left alone."""

from __future__ import annotations

import json
import sqlite3
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from controller.cost.ledger import _SCHEMA, Ledger
from controller.cost.pricing import PriceBook
from tests.helpers import T0, endpoint

STATES = ["running", "initializing", "scaledToZero", "paused", "updating", "pending"]
TICK = 15.0


def _view(lg: Ledger) -> dict[str, tuple]:
    return {k: (st.to_json(), st.last_observed) for k, st in lg.known().items()}


def _listing(step: dict, now: float) -> list:
    out = []
    for i, (target, state, bump, tag) in enumerate(step["eps"]):
        ep = endpoint(target=target, state=state, name=f"e{i}", tags=[tag] if tag else None)
        if bump:  # an API call inside the interval, so `updatedAt` dates the change
            ep.status.updated_at = datetime.fromtimestamp(now - step["dt"] / 3, tz=UTC)
        out.append(ep)
    return out


_ep = st.tuples(
    st.integers(0, 3), st.sampled_from(STATES), st.booleans(), st.sampled_from(["", "a"])
)
_step = st.fixed_dictionaries(
    {
        "dt": st.sampled_from([5.0, TICK, 40.0, 61.0, 200.0]),  # 200 s: past the gap threshold
        "eps": st.lists(_ep, min_size=1, max_size=3),
        "wobble": st.sampled_from([0.0, 0.5, 3.0]),  # listing asked this long before the answer
    }
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps=st.lists(_step, min_size=1, max_size=8), extra=st.integers(0, 7))
def test_the_file_says_what_memory_says_after_every_tick(steps, extra):
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "l.sqlite"
        lg = Ledger(path, prices=PriceBook(), tick_interval_s=TICK)
        now = T0 + 10_000
        if extra:
            # A watermark whose replica has more minutes than its lifetime rounds to: the row must
            # store them explicitly until the lifetime catches up.
            lg.observe(_listing(steps[0], now), now=now)
            wm = lg.watermark()
            for row in wm.values():
                row["reps"] = [[s, p, m + extra] for s, p, m in row["reps"]]
            lg.take_over(wm, since=now)
            assert _view(Ledger(path, prices=PriceBook(), tick_interval_s=TICK)) == _view(lg)
        for step in steps:
            now += step["dt"]
            lg.observe(_listing(step, now), now=now, asked_at=now - step["wobble"])
            reopened = Ledger(path, prices=PriceBook(), tick_interval_s=TICK, readonly=True)
            try:
                assert _view(reopened) == _view(lg)
            finally:
                reopened.close()
        lg.close()


def test_a_steady_endpoint_moves_only_its_columns(tmp_path):
    path = tmp_path / "l.sqlite"
    lg = Ledger(path, prices=PriceBook(), tick_interval_s=TICK)
    eps = [endpoint(target=2, name="steady"), endpoint(target=1, name="moving")]
    lg.observe(eps, now=T0)
    db = sqlite3.connect(path)

    def rows() -> dict[str, tuple]:
        q = "SELECT key, data, last_observed, asked FROM ledger_endpoint"
        return {k: (d, lo, a) for k, d, lo, a in db.execute(q)}

    before = rows()
    lg.observe([eps[0], endpoint(target=3, name="moving")], now=T0 + 75, asked_at=T0 + 74)
    after = rows()
    assert after["org/steady"][0] == before["org/steady"][0]  # data untouched
    assert after["org/steady"][1:] == (T0 + 75, T0 + 74)
    assert after["org/moving"][0] != before["org/moving"][0]
    # A minute and a quarter later the steady replicas have billed 2 minutes each, though the
    # row's data was written when they had billed none: the minutes follow `last_observed`.
    reps = Ledger(path, prices=PriceBook(), tick_interval_s=TICK).known()["org/steady"].reps
    assert [r.minutes for r in reps] == [2, 2]
    assert json.loads(after["org/steady"][0])["reps"][0][2] is None
    db.close()


def test_a_schema_1_file_is_read_and_upgraded(tmp_path):
    path = tmp_path / "l.sqlite"
    db = sqlite3.connect(path)
    schema_1 = _SCHEMA.replace(
        "last_observed REAL NOT NULL,\n    asked REAL", "last_observed REAL NOT NULL"
    )
    assert "asked" not in schema_1
    db.executescript(schema_1)
    db.execute("INSERT INTO ledger_meta VALUES ('schema', '1')")
    data = {
        "namespace": "org",
        "name": "chat",
        "tags": [],
        "instance": ["aws", "nvidia-l4", "x1"],
        "state": "running",
        "target": 1,
        "min_replica": 1,
        "max_replica": 1,
        "updated_at": "2026-01-01T00:00:00+00:00",
        "reps": [[T0 - 30, 0.8, 1]],
        "asked": T0 - 1,
    }
    db.execute("INSERT INTO ledger_endpoint VALUES ('org/chat', ?, ?)", (json.dumps(data), T0))
    db.commit()
    db.close()
    ro = Ledger(path, prices=PriceBook(), tick_interval_s=TICK, readonly=True)
    assert ro.known()["org/chat"].asked_at == T0 - 1
    ro.close()
    lg = Ledger(path, prices=PriceBook(), tick_interval_s=TICK)
    st_ = lg.known()["org/chat"]
    assert (st_.asked_at, [(r.start, r.minutes) for r in st_.reps]) == (T0 - 1, [(T0 - 30, 1)])
    lg.observe([endpoint(target=1)], now=T0 + TICK)
    assert _view(Ledger(path, prices=PriceBook(), tick_interval_s=TICK)) == _view(lg)
    lg.close()
    db = sqlite3.connect(path)
    assert db.execute("SELECT value FROM ledger_meta WHERE key='schema'").fetchone() == ("2",)
    db.close()


def test_minutes_ahead_of_the_lifetime_are_kept_until_it_catches_up(tmp_path):
    path = tmp_path / "l.sqlite"
    lg = Ledger(path, prices=PriceBook(), tick_interval_s=TICK)
    ep = endpoint(target=1)
    lg.observe([ep], now=T0)
    wm = lg.watermark()
    wm["org/chat"]["reps"] = [[s, p, m + 3] for s, p, m in wm["org/chat"]["reps"]]
    lg.take_over(wm, since=T0)
    seen = []
    for i in range(1, 25):  # 6 minutes of steady ticks: 3 ahead, then following again
        lg.observe([ep], now=T0 + i * TICK)
        reopened = Ledger(path, prices=PriceBook(), tick_interval_s=TICK, readonly=True)
        assert _view(reopened) == _view(lg)
        seen.append(reopened.known()["org/chat"].reps[0].minutes)
        reopened.close()
    assert seen[0] == 3
    assert seen[-1] == 6
