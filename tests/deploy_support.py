"""Shared by tests/test_deploy_*.py: a real `governor run` subprocess against the in-process
emulator on loopback (the pattern of tests/test_daemon.py), with a budget and a quota limit so the
cost, budget and quota metrics exist, and one endpoint held at its ceiling by heavy load."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from controller.clock import WallClock
from controller.emulator.load import Constant
from controller.emulator.platform import Platform, SimParams
from controller.emulator.server import EmulatorServer
from tests.conftest import BOT, NS, TOKEN, endpoint_body

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"


def need(tool: str) -> str:
    """The tool's path, or skip the test with the reason (`.ci/run` installs them)."""
    path = shutil.which(tool)
    if path is None:
        pytest.skip(f"{tool} not installed (bash .ci/run installs it)")
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def start_emulator() -> EmulatorServer:
    """`chat` (managed) under a load far above its ceiling of 2; `batch` (managed, idle);
    `other` (not managed, but billed)."""
    clock = WallClock()
    platform = Platform(start=clock.now(), seed=1)
    sim = SimParams(cold_start_s=2.0, concurrency=2, service_time_s=2.0)
    platform.create(
        NS,
        endpoint_body("chat", tags=["managed"]),
        by=BOT,
        sim=sim,
        load=Constant(20.0),
        ready=True,
    )
    platform.create(
        NS, endpoint_body("batch", tags=["managed"]), by=BOT, sim=sim, load=None, ready=True
    )
    platform.create(NS, endpoint_body("other", tags=[]), by=BOT, sim=sim, load=None, ready=True)
    srv = EmulatorServer(platform, clock=clock, tokens={TOKEN: BOT})
    await srv.start()
    return srv


def governor_config(base_url: str, port: int, state: Path, **extra: Any) -> dict[str, Any]:
    cfg: dict[str, Any] = {
        "api": {"base_url": base_url, "max_attempts": 1, "timeout_s": 5},
        "namespaces": [NS],
        "manage": {"tags": ["managed"]},
        "loop": {"tick_interval_s": 1},
        "server": {"listen": f"127.0.0.1:{port}"},
        "state": {"path": str(state)},
        "log": {"format": "json", "level": "info"},
        "defaults": {"floor": 1, "ceiling": 2, "scale_down_stabilization_s": 0},
        "budgets": [
            {"scope": "namespace", "match": NS, "period": "month", "usd": 100000},
            {"scope": "namespace", "match": NS, "period": "day", "usd": 5000},
        ],
        "quota": {
            "limits": [
                {"namespace": NS, "vendor": "aws", "accelerator": "gpu", "max_accelerators": 8}
            ]
        },
    }
    for k, v in extra.items():
        cfg[k] = v
    return cfg


def write_config(tmp: Path, cfg: Mapping[str, Any]) -> str:
    p = tmp / "governor.yaml"
    p.write_text(yaml.safe_dump(dict(cfg)))
    return str(p)


async def spawn_governor(
    config: str, *, env: Mapping[str, str] | None = None
) -> asyncio.subprocess.Process:
    full = {**os.environ, "HF_TOKEN": TOKEN, **(env or {})}
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "controller.cli",
        "run",
        "-c",
        config,
        env=full,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


async def wait_http(
    url: str,
    *,
    status: int = 200,
    timeout_s: float = 30.0,
    proc: asyncio.subprocess.Process | None = None,
) -> None:
    """Poll `url` until it answers `status`; fail early, with its stderr, if `proc` exits."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    async with httpx.AsyncClient(timeout=2) as c:
        while loop.time() < deadline:
            if proc is not None and proc.returncode is not None:
                err = (await proc.stderr.read()).decode() if proc.stderr else ""
                raise AssertionError(f"process exited {proc.returncode}: {err[-3000:]}")
            try:
                if (await c.get(url)).status_code == status:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.1)
    raise AssertionError(f"{url} never answered {status} within {timeout_s}s")
