"""The real daemon as a user runs it: `governor run` / `plan` as subprocesses against the emulator
on loopback, its HTTP endpoints, SIGTERM handling, and the token staying out of every output."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
from pathlib import Path

import httpx
import yaml

from controller.clock import WallClock
from controller.emulator.load import Constant
from controller.emulator.platform import Platform, SimParams
from controller.emulator.server import EmulatorServer
from tests.conftest import BOT, NS, TOKEN, endpoint_body


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def start_emulator(load_rps: float = 6.0) -> EmulatorServer:
    clock = WallClock()
    platform = Platform(start=clock.now(), seed=1)
    sim = SimParams(cold_start_s=5.0, concurrency=4, service_time_s=2.0)
    platform.create(
        NS,
        endpoint_body("chat", tags=["managed"]),
        by=BOT,
        sim=sim,
        load=Constant(load_rps),
        ready=True,
    )
    platform.create(NS, endpoint_body("other", tags=[]), by=BOT, sim=sim, load=None, ready=True)
    srv = EmulatorServer(platform, clock=clock, tokens={TOKEN: BOT})
    await srv.start()
    return srv


def write_config(tmp_path, base_url: str, port: int) -> str:
    cfg = {
        "api": {"base_url": base_url},
        "namespaces": [NS],
        "manage": {"tags": ["managed"]},
        "loop": {"tick_interval_s": 1},
        "server": {"listen": f"127.0.0.1:{port}"},
        "state": {"path": str(tmp_path / "state.sqlite")},
        "log": {"format": "json", "level": "debug"},
        "defaults": {"floor": 1, "ceiling": 5},
    }
    p = tmp_path / "governor.yaml"
    p.write_text(yaml.safe_dump(cfg))
    return str(p)


def read_yaml(path: str) -> dict:
    return yaml.safe_load(Path(path).read_text())


async def spawn(*args: str) -> asyncio.subprocess.Process:
    env = {**os.environ, "HF_TOKEN": TOKEN}
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "controller.cli",
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


async def test_run_serves_probes_and_metrics_and_stops_on_sigterm(tmp_path):
    """`governor run`: /readyz turns 200 after the first tick, /metrics shows the decisions,
    SIGTERM exits 0 — and the token appears in no log line or metric."""
    srv = await start_emulator()
    port = free_port()
    try:
        proc = await spawn("run", "-c", write_config(tmp_path, srv.base_url, port))
        url = f"http://127.0.0.1:{port}"
        ready = False
        async with httpx.AsyncClient(base_url=url, timeout=2) as c:
            for _ in range(200):
                try:
                    if (await c.get("/readyz")).status_code == 200:
                        ready = True
                        break
                except httpx.TransportError:
                    pass
                await asyncio.sleep(0.05)
            assert ready, "daemon never became ready"
            assert (await c.get("/healthz")).status_code == 200
            await asyncio.sleep(2.5)  # a few more ticks
            body = (await c.get("/metrics")).text
        proc.send_signal(signal.SIGTERM)
        out, err = await asyncio.wait_for(proc.communicate(), 15)
    finally:
        await srv.stop()
    assert proc.returncode == 0, err.decode()[-2000:]
    assert 'governor_ticks_total{result="ok"}' in body
    assert 'governor_decisions_total{action="scale_up",policy="slo_target"' in body
    assert 'governor_endpoint_replicas{endpoint="chat",kind="desired",namespace="acme"}' in body
    # the unmanaged endpoint gets no control gauges (its cost is reported: governor_spend_*)
    assert not [
        ln
        for ln in body.splitlines()
        if 'endpoint="other"' in ln
        and "_usd" not in ln
        and "governor_cost_rate" not in ln
        and "governor_ledger" not in ln
    ]
    logs = err.decode()
    assert '"event": "stopped"' in logs
    assert TOKEN not in logs + out.decode() + body


async def test_plan_prints_table_and_changes_nothing(tmp_path):
    """`governor plan` prints what it would do and why, and sends no mutating call."""
    srv = await start_emulator()
    try:
        proc = await spawn("plan", "-c", write_config(tmp_path, srv.base_url, 0))
        out, err = await asyncio.wait_for(proc.communicate(), 30)
        async with httpx.AsyncClient(base_url=srv.admin_url) as c:
            calls = (await c.get("/calls")).json()
    finally:
        await srv.stop()
    text = out.decode()
    assert proc.returncode == 0, err.decode()
    assert "ENDPOINT" in text
    assert "acme/chat" in text
    assert "why:" in text
    # The feed as read: the detected preset and the signal values the decision used.
    assert "feed: preset platform, in flight " in text, text
    assert "not managed (never touched): acme/other" in text
    assert [c for c in calls if c["method"] != "GET"] == []
    assert TOKEN not in text + err.decode()


async def test_run_without_token_exits_2(tmp_path):
    """No HF_TOKEN and no token file: a clear configuration error and exit code 2."""
    env = {k: v for k, v in os.environ.items() if k != "HF_TOKEN"}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "controller.cli",
        "run",
        "-c",
        write_config(tmp_path, "http://127.0.0.1:9/v2", 0),
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 2
    assert "HF_TOKEN" in err.decode()
    assert "Traceback" not in err.decode()


async def test_plan_with_every_policy_names_the_winner(tmp_path):
    """A config mixing all built-in policies plans cleanly and names the winning policy/reason."""
    srv = await start_emulator(load_rps=0.3)  # demand stays below the schedule floor
    try:
        cfg = read_yaml(write_config(tmp_path, srv.base_url, 0))
        cfg["defaults"]["policies"] = {
            "pending_requests": {"target_per_replica": 3},
            "hardware_utilisation": {"target_util_percent": 80},
            "schedule": {
                "timezone": "UTC",
                "windows": [
                    {
                        "name": "always",
                        "days": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"],
                        "start": "00:00",
                        "end": "24:00",
                        "floor": 4,
                    }
                ],
            },
            "budget": {},
            "pause_to_free_quota": {"idle_pause_after_s": 3600},
        }
        cfg["budgets"] = [{"scope": "namespace", "match": NS, "period": "month", "usd": 1000}]
        cfg["quota"] = {
            "limits": [
                {"namespace": NS, "vendor": "aws", "accelerator": "gpu", "max_accelerators": 8}
            ]
        }
        p = tmp_path / "mixed.yaml"
        p.write_text(yaml.safe_dump(cfg))
        proc = await spawn("plan", "-c", str(p))
        out, err = await asyncio.wait_for(proc.communicate(), 30)
    finally:
        await srv.stop()
    text = out.decode()
    assert proc.returncode == 0, err.decode()
    row = next(line for line in text.splitlines() if line.startswith("acme/chat "))
    assert "scale_up" in row
    assert "schedule" in row
    assert "constraint_floor" in row
    assert "floor 4 from schedule" in text
