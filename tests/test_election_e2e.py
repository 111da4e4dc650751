"""Two real `governor run` replicas with leader election, each behind its own fault proxy, on one
emulated account, with the Lease stand-in (controller/emulator/kube.py) as the Kubernetes API.

Before issue 18 two daemons with different configs both acted and reversed each other, and a
shared account was billed twice in two ledgers. Here: only the leader writes (the standby's proxy
sees no write until it takes over), the writes never change direction while both run, only the
leader's ledger has spend and it matches the emulator's bill, and a kill -9 of the leader hands
over within one lease period (plus one retry period: the standby notices on its next round).
"""

from __future__ import annotations

import asyncio
import itertools
import signal
import sqlite3
import time
from pathlib import Path

import httpx
import yaml

from controller.clock import WallClock
from controller.emulator.faults import Fault, FaultProxy
from controller.emulator.kube import LeaseApi, LeaseServer
from controller.emulator.load import Constant
from controller.emulator.platform import Platform, SimParams
from controller.emulator.server import EmulatorServer
from tests.conftest import BOT, NS, TOKEN, endpoint_body
from tests.test_daemon import free_port, spawn

LEASE_S, RENEW_S, RETRY_S = 3.0, 2.0, 0.5
KUBE_TOKEN = "kube-sa-token-for-tests"


def _config(d: Path, base_url: str, kube_url: str, port: int, ident: str, target: float) -> str:
    d.mkdir(parents=True, exist_ok=True)
    (d / "sa-token").write_text(KUBE_TOKEN + "\n")
    cfg = {
        "api": {"base_url": base_url, "backoff_initial_s": 0.05, "backoff_max_s": 0.2},
        "namespaces": [NS],
        "manage": {"tags": ["managed"]},
        "loop": {"tick_interval_s": 0.5},
        "server": {"listen": f"127.0.0.1:{port}"},
        "state": {"path": str(d / "state.sqlite")},
        "log": {"format": "json", "level": "info"},
        "defaults": {
            "floor": 1,
            "ceiling": 8,
            "scale_down_stabilization_s": 0,
            "policies": {"pending_requests": {"target_per_replica": target}},
        },
        "election": {
            "enabled": True,
            "namespace": "governor",
            "identity": ident,
            "api_url": kube_url,
            "token_file": str(d / "sa-token"),
            "ca_file": None,
            "lease_duration_s": LEASE_S,
            "renew_deadline_s": RENEW_S,
            "retry_period_s": RETRY_S,
            "timeout_s": 1.0,
        },
    }
    p = d / "governor.yaml"
    p.write_text(yaml.safe_dump(cfg))
    return str(p)


async def _leader(port: int, ident: str) -> float | None:
    try:
        async with httpx.AsyncClient(timeout=1) as c:
            text = (await c.get(f"http://127.0.0.1:{port}/metrics")).text
    except httpx.HTTPError:
        return None
    for line in text.splitlines():
        if line.startswith(f'governor_leader{{identity="{ident}"}}'):
            return float(line.split()[-1])
    return None


async def _wait(pred, limit_s: float = 20.0) -> float:
    t0 = time.monotonic()
    while time.monotonic() - t0 < limit_s:
        if await pred():
            return time.monotonic() - t0
        await asyncio.sleep(0.05)
    raise AssertionError("condition not reached")


async def _quiet(proxy: FaultProxy, quiet_s: float) -> bool:
    """No write through `proxy` in the last `quiet_s` seconds."""
    last = max((t for t, *_ in proxy.writes), default=0.0)
    return time.time() - last >= quiet_s


def _spend(path: Path) -> tuple[int, float]:
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        rows = db.execute("SELECT price, minutes FROM ledger_spend").fetchall()
    finally:
        db.close()
    return len(rows), sum(p * m / 60.0 for p, m in rows)


def _reversals(writes: list[tuple[float, str, str, object]]) -> int:
    """Direction changes in the sequence of minReplica values written."""
    values = []
    for _, method, _path, body in sorted(writes):
        mins = (body or {}).get("compute", {}).get("scaling", {}).get("minReplica")
        if method == "PUT" and mins is not None and (not values or values[-1] != mins):
            values.append(mins)
    signs = [1 if b > a else -1 for a, b in itertools.pairwise(values)]
    return sum(1 for a, b in itertools.pairwise(signs) if a != b)


async def test_two_replicas_one_acts_one_ledger_and_kill_9_hands_over(tmp_path):
    clock = WallClock()
    platform = Platform(start=clock.now(), seed=2)
    sim = SimParams(cold_start_s=1.0, concurrency=4, service_time_s=1.0)
    platform.create(
        NS,
        endpoint_body("chat", tags=["managed"]),
        by=BOT,
        sim=sim,
        load=Constant(6.0),
        ready=True,
    )
    emu = EmulatorServer(platform, clock=clock, tokens={TOKEN: BOT})
    await emu.start()
    lease = LeaseServer(LeaseApi(tokens={KUBE_TOKEN}))
    await lease.start()
    pa, pb = FaultProxy(emu.root_url, seed=1), FaultProxy(emu.root_url, seed=2)
    await pa.start()
    await pb.start()
    procs = []
    try:
        for p in (pa, pb):  # a flaky API on both sides
            p.add(
                Fault("status", method="GET", path=r"^/v2/endpoint/", status=503, probability=0.05)
            )
        port_a, port_b = free_port(), free_port()
        # two different configs: acting together, they would fight over the replica count
        cfg_a = _config(tmp_path / "a", pa.url + "/v2", lease.url, port_a, "a", 1.0)
        cfg_b = _config(tmp_path / "b", pb.url + "/v2", lease.url, port_b, "b", 6.0)
        a = await spawn("run", "-c", cfg_a)
        procs.append(a)
        await _wait(lambda: _is(port_a, "a", 1.0))
        b = await spawn("run", "-c", cfg_b)
        procs.append(b)
        await _wait(lambda: _is(port_b, "b", 0.0))
        await asyncio.sleep(6.0)
        # Kill the leader once it has seen its own last write (no write for 3 ticks), so the
        # writes checked below are settled; the ledger over a kill -9 with minutes in flight is
        # test_election_ledger.py's (the new leader resumes from the Lease's watermark).
        await _wait(lambda: _quiet(pa, 1.5), limit_s=30.0)
        # both ran: only a wrote, b only watched (and billed nothing)
        assert pb.writes == []
        assert pa.writes, "the leader never acted"
        assert _reversals(pa.writes + pb.writes) == 0
        rows_b, _ = _spend(tmp_path / "b" / "state.sqlite")
        assert rows_b == 0
        killed_at = time.time()
        a.send_signal(signal.SIGKILL)
        await asyncio.wait_for(a.communicate(), 15)
        handover = await _wait(lambda: _is(port_b, "b", 1.0))
        await asyncio.sleep(2.0)
        b.send_signal(signal.SIGTERM)
        _, err_b = await asyncio.wait_for(b.communicate(), 30)
        assert b.returncode == 0, err_b.decode()[-2000:]
        billed_end = platform.billed_usd(NS, "chat")
        _, spend_a = _spend(tmp_path / "a" / "state.sqlite")
        _, spend_b = _spend(tmp_path / "b" / "state.sqlite")
    finally:
        for p in procs:
            if p.returncode is None:
                p.kill()
                await p.communicate()
        await pa.stop()
        await pb.stop()
        await lease.stop()
        await emu.stop()
    # client-go semantics: the standby may take over once the Lease stayed unchanged for a lease
    # period, noticed on its next round; 1 s of slack for a loaded 2-core machine
    assert handover <= LEASE_S + RETRY_S + 1.0, handover
    assert all(t > killed_at for t, *_ in pb.writes)  # b wrote only once it led
    spec = lease.api.leases[("governor", "governor")]["spec"]
    assert spec["leaseTransitions"] == 1
    # one ledger at a time: the standby billed nothing, and after the hand-over it went on from
    # the leader's watermark in the Lease; together they are the platform's bill
    print(f"ledger a {spend_a:.4f} + b {spend_b:.4f}, bill {billed_end:.4f}, {handover:.2f}s")
    assert spend_a > 0
    assert abs(spend_a + spend_b - billed_end) < 0.005, (spend_a, spend_b, billed_end)
    assert pa.total_injected + pb.total_injected > 0


async def _is(port: int, ident: str, value: float) -> bool:
    return await _leader(port, ident) == value
