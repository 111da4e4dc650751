"""A real `governor run` killed with SIGKILL and restarted: nothing recorded is lost, the downtime
is flagged as estimated, and `governor cost` prints the table against the same emulator."""

from __future__ import annotations

import asyncio
import signal
import sqlite3

import yaml

from controller.clock import WallClock
from controller.emulator.platform import Platform, SimParams
from controller.emulator.server import EmulatorServer
from tests.conftest import BOT, NS, TOKEN, endpoint_body
from tests.test_daemon import free_port, spawn


def _config(tmp_path, base_url: str) -> str:
    cfg = {
        "api": {"base_url": base_url},
        "namespaces": [NS],
        "manage": {"tags": ["managed"]},
        "loop": {"tick_interval_s": 0.5},
        "server": {"listen": f"127.0.0.1:{free_port()}"},
        "state": {"path": str(tmp_path / "state.sqlite")},
        "log": {"format": "json", "level": "info"},
        "budgets": [{"scope": "namespace", "match": NS, "usd": 100.0}],
    }
    p = tmp_path / "governor.yaml"
    p.write_text(yaml.safe_dump(cfg))
    return str(p)


def _ledger(path) -> tuple[dict[tuple[str, str, float, int], int], list[tuple]]:
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        spend = {
            (k, d, p, e): m
            for k, d, p, e, m in db.execute(
                "SELECT key, day, price, estimated, minutes FROM ledger_spend"
            )
        }
        gaps = list(db.execute("SELECT key, t_from, t_to, replicas FROM ledger_gap"))
        last = db.execute("SELECT max(last_observed) FROM ledger_endpoint").fetchone()[0]
    finally:
        db.close()
    return spend, gaps, last


async def _wait_observed(path, after: float) -> None:
    for _ in range(200):
        try:
            _, _, last = _ledger(path)
            if last is not None and last > after:
                return
        except sqlite3.Error:
            pass
        await asyncio.sleep(0.1)
    raise AssertionError("the daemon never recorded a tick")


async def test_kill_9_loses_nothing_and_flags_the_gap(tmp_path):
    clock = WallClock()
    platform = Platform(start=clock.now(), seed=1)
    sim = SimParams(cold_start_s=5.0, concurrency=4, service_time_s=2.0)
    platform.create(
        NS, endpoint_body("chat", min_replica=2, max_replica=2), by=BOT, sim=sim, ready=True
    )
    platform.create(
        NS, endpoint_body("other", min_replica=1, max_replica=1), by=BOT, sim=sim, ready=True
    )
    srv = EmulatorServer(platform, clock=clock, tokens={TOKEN: BOT})
    await srv.start()
    db = tmp_path / "state.sqlite"
    try:
        cfg = _config(tmp_path, srv.base_url)
        proc = await spawn("run", "-c", cfg)
        await _wait_observed(db, 0)
        await asyncio.sleep(1.5)
        before, _, seen = _ledger(db)
        proc.send_signal(signal.SIGKILL)
        await asyncio.wait_for(proc.communicate(), 15)
        assert proc.returncode == -signal.SIGKILL
        after_kill, gaps0, _ = _ledger(db)
        assert before
        assert gaps0 == []
        down_from = clock.now()
        await asyncio.sleep(2.0)  # > 2 ticks down
        proc = await spawn("run", "-c", cfg)
        await _wait_observed(db, down_from + 1.0)
        await asyncio.sleep(1.0)
        proc.send_signal(signal.SIGTERM)
        _, err = await asyncio.wait_for(proc.communicate(), 15)
        assert proc.returncode == 0, err.decode()[-2000:]
        after, gaps, _ = _ledger(db)
        billed = {n: platform.billed_usd(NS, n) for n in ("chat", "other")}
        cost = await spawn("cost", "-c", cfg)
        cout, cerr = await asyncio.wait_for(cost.communicate(), 30)
    finally:
        await srv.stop()
    # every minute committed before the kill is still there, none removed
    assert after_kill == before  # read back after the kill: the same committed rows
    for k, m in after_kill.items():
        assert after.get(k, 0) >= m, k
    # the downtime is an estimated gap for both endpoints, about as long as the process was down
    assert {g[0] for g in gaps} == {f"{NS}/chat", f"{NS}/other"}
    for _, t_from, t_to, _reps in gaps:
        assert t_from <= seen + 1e-6
        assert t_to - t_from >= 2.0
    assert {g[3] for g in gaps} == {1, 2}
    # nothing changed while down, so the estimate is right: the ledger equals the billing
    text = cout.decode()
    rows: dict[str, float] = {}
    for (key, _day, price, _est), minutes in after.items():
        rows[key] = rows.get(key, 0.0) + price * minutes / 60.0
    for n in ("chat", "other"):
        assert abs(rows[f"{NS}/{n}"] - billed[n]) < 0.005, (n, rows, billed)
    assert cost.returncode == 0, cerr.decode()
    for word in ("ENDPOINT", "FORECAST", "HEADROOM", "BUDGET", "QUOTA"):
        assert word in text
    assert f"{NS}/chat" in text
    assert f"namespace:{NS}" in text
    assert "estimated" in text
    assert TOKEN not in text + cerr.decode()
