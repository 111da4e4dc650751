"""The ledger under leader election, end to end: real `governor run` processes on a sped-up clock
shared with the emulator (`--virtual-clock`), the Lease stand-in as the Kubernetes API, and the
ledger's replica-minutes held against the emulator's bill per endpoint.

Issue 18's fault soak found minutes that no ledger counted: a replica restarted with election
ran its first tick before its first Lease round, so as a standby, and a standby's ledger steps
over the interval as though another replica had billed it; nobody had (the downtime).
"""

from __future__ import annotations

import asyncio
import signal
import sqlite3
import time
from pathlib import Path
from typing import Any

import httpx
import yaml

from controller.clock import ScaledClock
from controller.emulator.kube import LeaseApi, LeaseServer
from controller.emulator.load import Constant
from controller.emulator.platform import Platform, SimParams
from controller.emulator.server import EmulatorServer
from tests.conftest import BOT, NS, TOKEN, endpoint_body
from tests.test_daemon import free_port, spawn

SPEED = 60.0  # virtual seconds per wall second: a wall second is a billed minute
TICK_S = 15.0  # virtual
KUBE_TOKEN = "kube-sa-token-for-ledger-tests"
LEASE_S, RENEW_S, RETRY_S = 3.0, 2.0, 0.5  # wall


class World:
    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.wall0 = time.time()
        self.clock = ScaledClock(speed=SPEED, origin=self.wall0, started_at=self.wall0)
        self.platform = Platform(start=self.clock.now(), seed=5)
        self.emu = EmulatorServer(self.platform, clock=self.clock, tokens={TOKEN: BOT})
        self.lease = LeaseServer(LeaseApi(tokens={KUBE_TOKEN}))

    async def __aenter__(self) -> World:
        await self.emu.start()
        await self.lease.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.lease.stop()
        await self.emu.stop()

    def config(self, name: str, port: int, *, election: bool) -> str:
        d = self.tmp / name
        d.mkdir(parents=True, exist_ok=True)
        cfg: dict[str, Any] = {
            "api": {"base_url": self.emu.base_url, "backoff_initial_s": 0.05},
            "namespaces": [NS],
            "manage": {"tags": ["managed"]},
            "loop": {"tick_interval_s": TICK_S},
            "server": {"listen": f"127.0.0.1:{port}"},
            "state": {"path": str(d / "state.sqlite")},
            "log": {"format": "json", "level": "info"},
            "defaults": {"floor": 2, "ceiling": 2},
            # The emulator creates these endpoints ready (no pending phase) and a loaded machine
            # can see one first after the gap threshold: bill them from their creation, so the
            # ledger's replica starts are the platform's and the comparison is exact.
            "ledger": {"pending_s": 0, "gap_ticks": 1000},
        }
        if election:
            (d / "sa-token").write_text(KUBE_TOKEN + "\n")
            cfg["election"] = {
                "enabled": True,
                "namespace": "governor",
                "identity": name,
                "api_url": self.lease.url,
                "token_file": str(d / "sa-token"),
                "ca_file": None,
                "lease_duration_s": LEASE_S,
                "renew_deadline_s": RENEW_S,
                "retry_period_s": RETRY_S,
                "timeout_s": 2.0,
            }
        p = d / ("ha.yaml" if election else "solo.yaml")
        p.write_text(yaml.safe_dump(cfg))
        return str(p)

    async def start(self, name: str, port: int, *, election: bool) -> asyncio.subprocess.Process:
        vc = f"{SPEED},{self.clock.origin},{self.wall0}"
        cfg = self.config(name, port, election=election)
        proc = await spawn("run", "-c", cfg, "--virtual-clock", vc)
        await _until(lambda: _healthy(port), 90.0)
        return proc

    def ledger_vs_bill(self, names: list[str], endpoint: str) -> tuple[int, int]:
        """The ledgers' replica-minutes summed, and the bill as of their last look."""
        minutes, last = 0, 0.0
        for n in names:
            db = sqlite3.connect(f"file:{self.tmp / n / 'state.sqlite'}?mode=ro", uri=True)
            try:
                key = f"{NS}/{endpoint}"
                q = "SELECT COALESCE(SUM(minutes), 0) FROM ledger_spend WHERE key = ?"
                minutes += db.execute(q, (key,)).fetchone()[0]
                row = db.execute(
                    "SELECT last_observed FROM ledger_endpoint WHERE key = ?", (key,)
                ).fetchone()
                last = max(last, row[0] if row else 0.0)
            finally:
                db.close()
        billed = sum(self.platform.billed_minutes(NS, endpoint, at=last).values())
        return minutes, billed


async def _healthy(port: int) -> bool:
    try:
        async with httpx.AsyncClient(timeout=1) as c:
            return (await c.get(f"http://127.0.0.1:{port}/healthz")).status_code == 200
    except httpx.HTTPError:
        return False


async def _ticks_ok(port: int) -> float:
    try:
        async with httpx.AsyncClient(timeout=1) as c:
            text = (await c.get(f"http://127.0.0.1:{port}/metrics")).text
    except httpx.HTTPError:
        return 0.0
    for line in text.splitlines():
        if line.startswith('governor_ticks_total{result="ok"}'):
            return float(line.split()[-1])
    return 0.0


async def _until(pred, limit_s: float) -> None:
    t0 = time.monotonic()
    while time.monotonic() - t0 < limit_s:
        if await pred():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("condition not reached")


async def _stop(proc: asyncio.subprocess.Process) -> str:
    proc.send_signal(signal.SIGTERM)
    _, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()[-2000:]
    return err.decode()


def _create(world: World, name: str) -> None:
    sim = SimParams(cold_start_s=30.0, concurrency=4, service_time_s=1.0)
    body = endpoint_body(name, min_replica=2, max_replica=2, tags=["managed"])
    world.platform.create(NS, body, by=BOT, sim=sim, load=Constant(3.0), ready=True)


async def test_a_restart_with_election_bills_its_downtime(tmp_path):
    """Stopped, down for minutes, restarted with election behind a slow Kubernetes API: the
    first tick waits for the first Lease round, so the replica that leads bills the downtime as
    a leader (an estimated gap), and the ledger equals the bill. Before the fix the first tick
    ran as a standby and those replica-minutes were in no ledger."""
    async with World(tmp_path) as w:
        w.lease.api.delay_s = 0.6  # the first round (GET 404, POST) takes 1.2 s
        port = free_port()
        solo = await w.start("a", port, election=False)
        _create(w, "chat")
        await _until(lambda: _ticks_ok_at_least(port, 4), 90.0)
        await _stop(solo)
        await asyncio.sleep(3.0)  # three virtual minutes down, two replicas running
        ha = await w.start("a", port, election=True)
        await _until(lambda: _ticks_ok_at_least(port, 4), 90.0)
        await _stop(ha)
        ledger, billed = w.ledger_vs_bill(["a"], "chat")
    assert billed > 6
    assert ledger == billed, (ledger, billed)


async def _ticks_ok_at_least(port: int, n: int) -> bool:
    return await _ticks_ok(port) >= n


async def _leads(port: int, ident: str) -> bool:
    try:
        async with httpx.AsyncClient(timeout=1) as c:
            text = (await c.get(f"http://127.0.0.1:{port}/metrics")).text
    except httpx.HTTPError:
        return False
    return f'governor_leader{{identity="{ident}"}} 1.0' in text


async def test_kill_9_of_the_leader_hands_over_every_minute_once(tmp_path):
    """Two replicas; the leader is killed with SIGKILL while replicas run and the standby takes
    over a few (virtual) minutes later; the killed one comes back as the standby. The two ledgers
    together are the emulator's bill: the new leader billed from the old one's watermark in the
    Lease. Before the watermark, the minutes between the old leader's last tick and the take-over
    were in no ledger (about 3 replica-minutes per replica here)."""
    async with World(tmp_path) as w:
        pa, pb = free_port(), free_port()
        a = await w.start("a", pa, election=True)
        await _until(lambda: _leads(pa, "a"), 90.0)
        _create(w, "chat")
        b = await w.start("b", pb, election=True)
        await _until(lambda: _ticks_ok_at_least(pb, 4), 90.0)
        await _until(lambda: _ticks_ok_at_least(pa, 8), 90.0)
        killed = time.monotonic()
        a.send_signal(signal.SIGKILL)
        await asyncio.wait_for(a.communicate(), 15)
        await _until(lambda: _leads(pb, "b"), 90.0)
        handover = time.monotonic() - killed
        a = await w.start("a", pa, election=True)  # back, as the standby
        await _until(lambda: _ticks_ok_at_least(pa, 3), 90.0)
        await _until(lambda: _ticks_ok_at_least(pb, 20), 90.0)
        await _stop(a)
        err_b = await _stop(b)
        ledger, billed = w.ledger_vs_bill(["a", "b"], "chat")
        only_a, _ = w.ledger_vs_bill(["a"], "chat")
    assert handover <= LEASE_S + RETRY_S + 1.5, handover
    assert '"ledger_take_over"' in err_b
    assert 0 < only_a < ledger
    assert billed >= 10
    assert ledger == billed, (ledger, billed)
