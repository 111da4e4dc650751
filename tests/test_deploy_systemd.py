"""deploy/systemd: `systemd-analyze verify` and `security` pass on the unit, and a real
`governor run` speaks the sd_notify protocol: READY=1 after its first tick, WATCHDOG=1 after every
tick, none while a tick hangs, STOPPING=1 on SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import httpx
import pytest

from controller.daemon.sdnotify import Notifier
from tests.deploy_support import (
    DEPLOY,
    free_port,
    governor_config,
    need,
    spawn_governor,
    start_emulator,
    write_config,
)

UNIT = DEPLOY / "systemd" / "governor.service"


def unit_settings() -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in UNIT.read_text().splitlines():
        if "=" in line and not line.lstrip().startswith(("#", "[")):
            k, _, v = line.partition("=")
            out.setdefault(k.strip(), []).append(v.strip())
    return out


@pytest.fixture
def unit_copy(tmp_path) -> Path:
    """The unit with ExecStart pointing at an installed `governor` (verify checks it exists)."""
    exe = shutil.which("governor") or sys.executable
    text = UNIT.read_text().replace("/opt/governor/venv/bin/governor", exe)
    p = tmp_path / "governor.service"
    p.write_text(text)
    return p


def test_systemd_analyze_verify(unit_copy):
    tool = need("systemd-analyze")
    out = subprocess.run(
        [tool, "verify", "--man=no", str(unit_copy)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "governor.service" not in out.stderr, out.stderr  # no warnings about the unit


def test_systemd_analyze_security_exposure_is_low(unit_copy):
    tool = need("systemd-analyze")
    out = subprocess.run(
        [tool, "security", "--offline=yes", "--no-pager", str(unit_copy)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    m = re.search(r"Overall exposure level for governor.service: ([0-9.]+)", out.stdout)
    if m is None and "--offline" in out.stderr:
        pytest.skip("this systemd-analyze has no offline security analysis")
    assert m, out.stdout[-2000:] + out.stderr
    assert float(m.group(1)) <= 2.0, out.stdout


def test_unit_has_the_required_settings():
    s = unit_settings()
    one = {k: v[-1] for k, v in s.items()}
    assert one["Type"] == "notify"
    assert one["Restart"] == "on-failure"
    assert one["RestartPreventExitStatus"] == "2"  # a config error: restarting cannot help
    assert one["NoNewPrivileges"] == "yes"
    assert one["ProtectSystem"] == "strict"
    assert one["PrivateTmp"] == "yes"
    assert one["CapabilityBoundingSet"] == ""
    assert one["DynamicUser"] == "yes"
    assert one["StateDirectory"] == "governor"
    assert set(one["RestrictAddressFamilies"].split()) == {"AF_UNIX", "AF_INET", "AF_INET6"}
    assert any(v.startswith("hf_token:") for v in s["LoadCredential"])
    assert "GOVERNOR_API__TOKEN_FILE=%d/hf_token" in s["Environment"]
    assert "GOVERNOR_STATE__PATH=%S/governor/state.sqlite" in s["Environment"]
    assert one["EnvironmentFile"].startswith("-")  # optional
    assert one["ExecStart"].split()[1:] == ["run", "-c", "/etc/governor/governor.yaml"]
    assert one["ExecReload"] == "/bin/kill -HUP $MAINPID"  # `systemctl reload`: SIGHUP
    # the watchdog must outlast several ticks of the default 15 s interval
    assert int(one["WatchdogSec"].rstrip("s")) >= 4 * 15


def test_a_config_error_exits_2(tmp_path):
    """The status RestartPreventExitStatus=2 names: `governor run` on a bad config exits 2
    with a one-line error, so systemd stops instead of restarting into the start limit."""
    bad = tmp_path / "governor.yaml"
    bad.write_text("namespaces: [acme]\nloop: {tick_interval_s: -1}\n")
    out = subprocess.run(
        [sys.executable, "-m", "controller.cli", "run", "-c", str(bad)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "HF_TOKEN": "hf_x"},
    )
    assert out.returncode == 2, out.stderr
    assert "tick_interval_s" in out.stderr
    assert "Traceback" not in out.stderr


def test_env_example_only_has_comments_or_governor_keys():
    for line in (DEPLOY / "systemd" / "governor.env.example").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            assert re.match(r"^(GOVERNOR_[A-Z_]+|HF_TOKEN)=", line), line


def test_notifier_abstract_socket_and_noop():
    assert not Notifier({}).enabled
    assert Notifier({}).ready() is False
    name = f"governor-test-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as rx:
        rx.bind("\0" + name)
        rx.settimeout(2)
        n = Notifier({"NOTIFY_SOCKET": "@" + name, "WATCHDOG_USEC": "4000000"})
        assert n.watchdog_s == 4.0
        assert n.ready("hello")
        assert rx.recv(4096) == b"READY=1\nSTATUS=hello"
        assert n.stopping()
        assert rx.recv(4096) == b"STOPPING=1\nSTATUS=stopping"
    # the watchdog is for another process: ignored
    n = Notifier({"NOTIFY_SOCKET": "@x", "WATCHDOG_USEC": "1000", "WATCHDOG_PID": "1"})
    assert n.watchdog_s is None
    # a socket nobody listens on: no exception
    assert Notifier({"NOTIFY_SOCKET": "/nonexistent/notify"}).watchdog() is False


async def _recv_until(sock: socket.socket, pred, timeout_s: float) -> list[tuple[float, str]]:
    loop = asyncio.get_running_loop()
    got: list[tuple[float, str]] = []
    deadline = loop.time() + timeout_s
    while loop.time() < deadline:
        try:
            data = await asyncio.wait_for(loop.sock_recv(sock, 4096), deadline - loop.time())
        except TimeoutError:
            break
        got.append((loop.time(), data.decode()))
        if pred(got):
            break
    return got


async def test_daemon_sends_ready_watchdog_and_stopping(tmp_path):
    """With NOTIFY_SOCKET and WATCHDOG_USEC set (as systemd does), `governor run` sends READY=1
    once its first tick is done (when /readyz is already 200), WATCHDOG=1 tick after tick, no
    WATCHDOG=1 while a tick hangs, and STOPPING=1 on SIGTERM."""
    sockdir = Path(tempfile.mkdtemp(prefix="gov-sd-", dir="/tmp"))  # short path for AF_UNIX
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(sockdir / "notify"))
    sock.setblocking(False)
    srv = await start_emulator()
    port = free_port()
    proc = None
    try:
        cfg = governor_config(srv.base_url, port, tmp_path / "state.sqlite")
        cfg["api"]["timeout_s"] = 60  # so an injected delay hangs the tick
        proc = await spawn_governor(
            write_config(tmp_path, cfg),
            env={"NOTIFY_SOCKET": str(sockdir / "notify"), "WATCHDOG_USEC": "3000000"},
        )
        got = await _recv_until(sock, lambda g: any("READY=1" in m for _, m in g), 30)
        assert any("READY=1" in m for _, m in got), f"no READY=1: {got}"
        assert got[0][1].startswith("READY=1")  # nothing before READY
        async with httpx.AsyncClient(timeout=5) as c:
            assert (await c.get(f"http://127.0.0.1:{port}/readyz")).status_code == 200
        got = await _recv_until(sock, lambda g: len(g) >= 3, 15)
        assert len(got) >= 3, got
        assert all(m.startswith("WATCHDOG=1") for _, m in got), got
        assert "STATUS=ticks ok:" in got[0][1]

        # hang the loop: the endpoint listing now takes 9 s, the next tick cannot complete
        async with httpx.AsyncClient(base_url=srv.admin_url, timeout=5) as c:
            r = await c.post(
                "/faults", json={"route": "list", "status": None, "delay_s": 9, "count": -1}
            )
            assert r.status_code < 300, r.text
        # drain what was sent before the hang took hold, then expect silence
        await _recv_until(sock, lambda g: False, 2.5)
        hung = await _recv_until(sock, lambda g: True, 4.0)
        assert hung == [], f"watchdog fed while the tick hangs: {hung}"
        async with httpx.AsyncClient(base_url=srv.admin_url, timeout=5) as c:
            await c.delete("/faults")

        proc.send_signal(signal.SIGTERM)
        got = await _recv_until(sock, lambda g: any("STOPPING=1" in m for _, m in g), 40)
        assert any(m.startswith("STOPPING=1") for _, m in got), got
        _, err = await asyncio.wait_for(proc.communicate(), 40)
        assert proc.returncode == 0, err.decode()[-2000:]
    finally:
        if proc is not None and proc.returncode is None:
            proc.kill()
            await proc.wait()
        await srv.stop()
        sock.close()
        with contextlib.suppress(OSError):
            shutil.rmtree(sockdir)


async def test_without_notify_socket_nothing_changes(tmp_path):
    """Outside systemd the daemon runs as before (the notifier is a no-op)."""
    srv = await start_emulator()
    port = free_port()
    env = {"NOTIFY_SOCKET": ""}
    try:
        proc = await spawn_governor(
            write_config(tmp_path, governor_config(srv.base_url, port, tmp_path / "s.sqlite")),
            env=env,
        )
        from tests.deploy_support import wait_http

        await wait_http(f"http://127.0.0.1:{port}/readyz", proc=proc)
        proc.send_signal(signal.SIGTERM)
        _, err = await asyncio.wait_for(proc.communicate(), 30)
    finally:
        await srv.stop()
    assert proc.returncode == 0, err.decode()[-2000:]
