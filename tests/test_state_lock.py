"""One Governor per state: a second `governor run` on the same state directory exits 2 with one
line; the lock dies with its process (kill -9 included); state and ledger files are 0600."""

from __future__ import annotations

import asyncio
import os
import signal
import stat
from pathlib import Path

import httpx
import pytest
import yaml

from controller.cost.ledger import CostTracker
from controller.daemon.lock import LOCK_NAME, StateLock
from controller.daemon.store import StateStore
from controller.errors import StateLockedError
from controller.settings import load_settings
from tests.test_daemon import free_port, spawn, start_emulator, write_config


def _same_state(cfg: str, state_dir: Path) -> None:
    """Point config `cfg` at the state file in `state_dir`."""
    p = Path(cfg)
    data = yaml.safe_load(p.read_text())
    data["state"]["path"] = str(state_dir / "state.sqlite")
    p.write_text(yaml.safe_dump(data))


async def _wait_lock_taken(path: Path, proc: asyncio.subprocess.Process) -> None:
    """Wait until `proc` holds the lock, reading the pid it writes (a probe `flock` would race it:
    a daemon starting while the probe holds the lock would rightly refuse to start)."""
    lock = Path(path) / LOCK_NAME
    for _ in range(1200):
        if proc.returncode is not None:
            raise AssertionError(f"the daemon exited {proc.returncode} before taking the lock")
        if lock.exists() and lock.read_text().strip() == str(proc.pid):
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the daemon never took the lock")


async def test_second_run_on_the_same_state_exits_2_and_kill_9_frees_the_lock(tmp_path):
    srv = await start_emulator()
    try:
        cfg = write_config(tmp_path, srv.base_url, free_port())
        first = await spawn("run", "-c", cfg)
        await _wait_lock_taken(tmp_path, first)
        # a second daemon with its own port but the same state file refuses to start
        (tmp_path / "b").mkdir()
        port = free_port()
        second_cfg = write_config(tmp_path / "b", srv.base_url, port)
        _same_state(second_cfg, tmp_path)
        second = await spawn("run", "-c", second_cfg)
        _, err = await asyncio.wait_for(second.communicate(), 30)
        assert second.returncode == 2
        lines = err.decode().strip().splitlines()
        assert len(lines) == 1, lines
        assert "in use by another governor" in lines[0]
        assert str(first.pid) in lines[0]
        first.send_signal(signal.SIGKILL)
        await asyncio.wait_for(first.communicate(), 15)
        # the kernel dropped the dead process's lock: a restart is not blocked
        third = await spawn("run", "-c", second_cfg)
        await _wait_lock_taken(tmp_path, third)
        await _wait_http(port)
        third.send_signal(signal.SIGTERM)
        _, err3 = await asyncio.wait_for(third.communicate(), 30)
        assert third.returncode == 0, err3.decode()[-2000:]
    finally:
        await srv.stop()


async def _wait_http(port: int) -> None:
    async with httpx.AsyncClient() as c:
        for _ in range(200):
            try:
                await c.get(f"http://127.0.0.1:{port}/healthz")
                return
            except httpx.HTTPError:
                await asyncio.sleep(0.05)
    raise AssertionError("the daemon never served /healthz")


def test_lock_is_per_directory(tmp_path):
    a = StateLock.for_files(tmp_path / "s.sqlite", tmp_path / "l.sqlite")
    assert len(a.paths) == 1
    with a:
        with pytest.raises(StateLockedError, match="in use"):
            StateLock([tmp_path]).acquire()
        StateLock([tmp_path / "elsewhere"]).acquire()
    with StateLock([tmp_path]):
        pass


@pytest.mark.parametrize("umask", [0o022, 0o000])
def test_state_and_ledger_files_are_private(tmp_path, umask):
    old = os.umask(umask)
    try:
        s = load_settings(
            None,
            overrides={
                "state": {"path": str(tmp_path / "st.sqlite")},
                "ledger": {"path": str(tmp_path / "lg.sqlite")},
            },
            env={},
        )
        store = StateStore(s.state.path)
        store.save_memory({}, now=0)
        tracker = CostTracker.open(s)
        tracker.observe([], now=1.0)
        tracker.close()
        store.close()
    finally:
        os.umask(old)
    made = [p for p in tmp_path.iterdir() if p.name.startswith(("st.sqlite", "lg.sqlite"))]
    assert {p.name for p in made} >= {"st.sqlite", "lg.sqlite"}
    for p in made:
        assert stat.S_IMODE(p.stat().st_mode) == 0o600, p


def test_existing_world_readable_state_is_tightened(tmp_path):
    p = tmp_path / "st.sqlite"
    StateStore(p).close()
    os.chmod(p, 0o644)
    StateStore(p).close()
    assert stat.S_IMODE(p.stat().st_mode) == 0o600
