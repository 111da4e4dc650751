"""`governor emulator` as a user runs it: a real process on a loopback port. It accepts only the
tokens it is given, and its behaviour knobs and limits are settable from flags and from the
scenario file's `settings:` (validated, one line naming the setting when wrong)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from controller.cli.main import main
from controller.emulator.scenario import emulator_configs, knob_names, load_scenario
from controller.errors import ConfigError

SCENARIO = """\
namespace: team
settings:
  quota_error_status: 429
  default_max_accelerators: 2
  max_body_bytes: 4096
endpoints:
  - name: chat
    instance_type: nvidia-l4
    min_replica: 1
    max_replica: 2
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def emulator(tmp_path: Path) -> Iterator[str]:
    """`governor emulator` with two tokens, a scenario file and flags; yields the API base."""
    scenario = tmp_path / "scenario.yaml"
    scenario.write_text(SCENARIO)
    port = free_port()
    cmd = [
        sys.executable,
        "-m",
        "controller.cli",
        "emulator",
        "--port",
        str(port),
        "--scenario",
        str(scenario),
        "--token",
        "tok-bot",
        "--token",
        "tok-alice:alice",
        "--create-status",
        "201",
        "--metrics-content-type",
        "application/openmetrics-text; version=1.0.0",
        "--scaling-update-redeploys",
        "--set",
        "pending_s=0",
    ]
    log = (tmp_path / "emulator.log").open("w")
    proc = subprocess.Popen(cmd, stdout=log, stderr=log, env={**os.environ})
    base = f"http://127.0.0.1:{port}/v2"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(f"{base}/provider", timeout=1).raise_for_status()
                break
            except httpx.HTTPError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    text = (tmp_path / "emulator.log").read_text()
                    raise AssertionError(f"emulator did not start: {text}") from None
                time.sleep(0.1)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def create_body(name: str, max_replica: int = 1) -> dict:
    return {
        "name": name,
        "type": "protected",
        "provider": {"vendor": "aws", "region": "us-east-1"},
        "compute": {
            "accelerator": "gpu",
            "instanceType": "nvidia-l4",
            "instanceSize": "x1",
            "scaling": {"minReplica": 1, "maxReplica": max_replica},
        },
        "model": {"repository": "gpt2", "image": {"huggingface": {}}},
    }


def test_emulator_accepts_only_its_tokens_and_applies_flags_and_file_settings(emulator):
    bot = {"Authorization": "Bearer tok-bot"}
    alice = {"Authorization": "Bearer tok-alice"}
    with httpx.Client(base_url=emulator, timeout=10) as c:
        for token in ("demo-human-token", "demo-token", "emulator-token", "tok-bot:alice"):
            r = c.get("/endpoint/team", headers={"Authorization": f"Bearer {token}"})
            assert r.status_code == 401, token
        assert [e["name"] for e in c.get("/endpoint/team", headers=bot).json()["items"]] == ["chat"]
        r = c.put("/endpoint/team/chat", headers=alice, json={"tags": ["by-hand"]})
        assert r.json()["status"]["updatedBy"]["name"] == "alice"
        # flags: create status, feed content type, scaling-only updates redeploy
        r = c.post("/endpoint/team", headers=bot, json=create_body("second"))
        assert r.status_code == 201, r.text
        r = c.get("/endpoint/team/chat/open-metrics", headers=bot)
        assert r.headers["content-type"] == "application/openmetrics-text; version=1.0.0"
        r = c.put(
            "/endpoint/team/chat", headers=bot, json={"compute": {"scaling": {"maxReplica": 1}}}
        )
        assert r.status_code == 200, r.text
        assert r.json()["status"]["state"] == "updating"
        # the file's settings: quota refusal status and limit, body size cap
        r = c.post("/endpoint/team", headers=bot, json=create_body("third"))
        assert r.status_code == 429, r.text
        assert "quota" in r.json()["error"]
        big = create_body("big")
        big["model"]["env"] = {"X": "y" * 5000}
        r = c.post("/endpoint/team", headers=bot, json=big)
        assert r.status_code == 413
        assert "max_body_bytes" in r.json()["error"]


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["--set", "nope=1"], "settings.nope: unknown emulator setting"),
        (["--set", "create_status=500"], "settings.create_status"),
        (["--set", "max_body_bytes=big"], "settings.max_body_bytes: Input should be a valid"),
        (["--quota-error-status", "200"], "settings.quota_error_status"),
        (["--set", "novalue"], "expected NAME=VALUE"),
    ],
)
def test_bad_emulator_settings_are_one_line_errors(argv, needle, capsys):
    """Refused before anything listens (port 1 would fail to bind)."""
    assert main(["emulator", "--port", "1", *argv]) == 2
    err = capsys.readouterr().err
    assert needle in err
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_scenario_file_settings_are_validated(tmp_path):
    f = tmp_path / "s.yaml"
    f.write_text("settings: {env_update: sometimes}\nendpoints: [{name: x}]\n")
    with pytest.raises(ConfigError, match=r"settings\.env_update: Input should be 'replace'"):
        load_scenario(f)
    f.write_text("endpoints: [{name: x, load: {kind: constant, rps: .inf}}]\n")
    with pytest.raises(ConfigError, match=r"endpoints\[0\]\.load: .*finite number"):
        load_scenario(f)
    f.write_text("settings: {max_replicas_per_endpoint: 5}\nendpoints: [{name: x}]\n")
    assert load_scenario(f).settings == {"max_replicas_per_endpoint": 5}


def test_every_setting_has_a_default_that_validates():
    """The defaults are within the documented bounds, and the docs list every setting."""
    platform, http = emulator_configs({})
    assert platform.max_replicas_per_endpoint == 1000
    assert http.max_body_bytes == 1_048_576
    docs = (Path(__file__).resolve().parents[1] / "docs" / "emulator.md").read_text()
    missing = [name for name in knob_names() if f"`{name}`" not in docs]
    assert missing == []


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["emulator", "--port", "99999"], "argument --port: 99999 is not in 0..65535"),
        (["emulator", "--port", "-5"], "argument --port: -5 is not in 0..65535"),
        (["emulator", "--port", "http"], "argument --port: not a port number: 'http'"),
        (["emulator", "--host", "no-such-host.invalid"], "cannot listen on host"),
        (["emulator", "--speed", "0"], "argument --speed: 0 is not in (0, 1000000]"),
        (["emulator", "--speed", "nan"], "argument --speed: nan is not in"),
        (["demo", "--speed", "-1"], "argument --speed: -1 is not in"),
        (["demo", "--minutes", "inf"], "argument --minutes: inf is not in"),
        (["run", "--no-such-flag"], "unrecognized arguments: --no-such-flag"),
    ],
)
def test_bad_flags_are_one_line_with_exit_2(argv, needle, capsys):
    """Before issue 18: a traceback and exit 1 (bind() overflow, ScaledClock's ValueError, NaN
    in a timestamp), or argparse's multi-line usage."""
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert needle in err
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
