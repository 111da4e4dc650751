"""What a new user meets first: where the config comes from, safe defaults, dry-run flags, and
everyday errors as one line with exit 2 (issue 15, items 3 and 5)."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import httpx
import pytest
import structlog
import yaml

from controller.cli import main
from tests.conftest import TOKEN
from tests.test_daemon import start_emulator, write_config


@pytest.fixture(autouse=True)
def _structlog_restored():
    """`main` configures structlog onto this test's captured stderr, which pytest closes after
    it; later tests in the worker must not log into a closed file."""
    yield
    structlog.reset_defaults()


@pytest.fixture
def clean_env(monkeypatch, tmp_path):
    """No config from the environment, a working directory without governor.yaml, no token."""
    for var in ("GOVERNOR_CONFIG", "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_TOKEN_PATH"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    return work


def _err_lines(capsys) -> list[str]:
    return [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]


@pytest.mark.parametrize("cmd", [["run"], ["run", "--once"], ["plan"], ["cost"], ["check-config"]])
def test_without_any_config_every_command_refuses_and_writes_nothing(cmd, clean_env, capsys):
    assert main(cmd) == 2
    (line,) = _err_lines(capsys)
    assert "no config file: pass -c FILE, set GOVERNOR_CONFIG, or create ./governor.yaml" in line
    assert list(clean_env.iterdir()) == []  # no governor-state.sqlite in the working directory


def test_governor_config_then_the_working_directory_file(clean_env, monkeypatch, capsys, tmp_path):
    (clean_env / "governor.yaml").write_text("namespaces: [here]\nmanage: {tags: [g]}\n")
    other = tmp_path / "other.yaml"
    other.write_text("namespaces: [a, b]\nmanage: {tags: [g]}\n")
    assert main(["check-config"]) == 0
    assert capsys.readouterr().out.startswith("governor.yaml: OK (1 namespace(s)")
    monkeypatch.setenv("GOVERNOR_CONFIG", str(other))
    assert main(["check-config"]) == 0
    assert capsys.readouterr().out.startswith(f"{other}: OK (2 namespace(s)")
    assert main(["check-config", "-c", "governor.yaml"]) == 0  # -c beats GOVERNOR_CONFIG
    assert capsys.readouterr().out.startswith("governor.yaml: OK (1 namespace(s)")


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("", "the file has no settings"),
        ("# only a comment\n", "the file has no settings"),
        ("manage: {tags: [g]}\n", "namespaces: empty"),
    ],
)
@pytest.mark.parametrize("cmd", [["check-config"], ["plan"], ["run", "--once"]])
def test_an_empty_config_is_an_error(text, needle, cmd, clean_env, capsys):
    (clean_env / "g.yaml").write_text(text)
    assert main([*cmd, "-c", "g.yaml"]) == 2
    (line,) = _err_lines(capsys)
    assert needle in line


def test_a_config_that_manages_nothing_is_a_loud_warning(clean_env, capsys):
    (clean_env / "g.yaml").write_text("namespaces: [a]\n")
    assert main(["check-config", "-c", "g.yaml"]) == 0
    err = capsys.readouterr().err
    assert "warning: manage selects no endpoint" in err


def test_check_config_positional_still_works_and_says_it_is_deprecated(clean_env, capsys):
    (clean_env / "g.yaml").write_text("namespaces: [a]\nmanage: {tags: [g]}\n")
    assert main(["check-config", "g.yaml"]) == 0
    captured = capsys.readouterr()
    assert "g.yaml: OK" in captured.out
    assert "deprecated; use `check-config -c FILE`" in captured.err


def test_environment_errors_name_the_variable_not_the_file(clean_env, monkeypatch, capsys):
    (clean_env / "g.yaml").write_text("namespaces: [a]\nmanage: {tags: [g]}\n")
    monkeypatch.setenv("GOVERNOR_LOOP__DRYRUN", "true")  # the typo of the issue
    assert main(["check-config", "-c", "g.yaml"]) == 2
    (line,) = _err_lines(capsys)
    assert "GOVERNOR_LOOP__DRYRUN (environment, loop.dryrun): unknown key" in line
    assert "g.yaml" not in line
    monkeypatch.delenv("GOVERNOR_LOOP__DRYRUN")
    monkeypatch.setenv("GOVERNOR_LOOP", "{not json")
    assert main(["check-config", "-c", "g.yaml"]) == 2
    (line,) = _err_lines(capsys)
    assert line.startswith("governor: configuration error: GOVERNOR_LOOP (environment): not valid")
    monkeypatch.delenv("GOVERNOR_LOOP")
    monkeypatch.setenv("GOVERNOR_NAMESPACES", "a, b,c")  # a comma list, as docs say
    assert main(["check-config", "-c", "g.yaml"]) == 0
    assert "OK (3 namespace(s)" in capsys.readouterr().out


def _cfg(tmp_path, base_url: str, *, dry_run: bool) -> str:
    path = write_config(tmp_path, base_url, 0)
    cfg = yaml.safe_load(Path(path).read_text())
    cfg["loop"]["dry_run"] = dry_run
    cfg["log"]["level"] = "warning"
    Path(path).write_text(yaml.safe_dump(cfg))
    return path


async def _writes(srv) -> int:
    async with httpx.AsyncClient(base_url=srv.admin_url) as c:
        calls = (await c.get("/calls")).json()
    return sum(1 for c in calls if c["method"] in ("PUT", "POST"))


@pytest.mark.parametrize(
    ("config_dry_run", "flag", "acts"),
    [(True, "--no-dry-run", True), (False, "--dry-run", False), (True, None, False)],
)
async def test_dry_run_flags_override_the_config(
    config_dry_run, flag, acts, tmp_path, monkeypatch, capsys
):
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    srv = await start_emulator(load_rps=12.0)  # demand above the one replica running
    try:
        cfg = _cfg(tmp_path, srv.base_url, dry_run=config_dry_run)
        argv = ["run", "--once", "-c", cfg, *([flag] if flag else [])]
        assert await asyncio.to_thread(main, argv) == 0
        writes = await _writes(srv)
    finally:
        await srv.stop()
    out = capsys.readouterr().out
    assert ("-> applied" in out) is acts, out
    assert (writes > 0) is acts


def _taken_port() -> socket.socket:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen()
    return s


def test_run_with_its_metrics_port_taken_is_one_line_exit_2(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    with _taken_port() as s:
        port = s.getsockname()[1]
        cfg = write_config(tmp_path, "http://127.0.0.1:9/v2", port)  # no API call is made
        assert main(["run", "-c", cfg]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    errors = [ln for ln in err.splitlines() if ln.startswith("governor:")]
    assert errors == [
        f"governor: configuration error: server.listen: metrics server could not listen on "
        f"127.0.0.1:{port}: Address already in use"
    ]
    assert not [ln for ln in err.splitlines() if "ERROR" in ln]  # uvicorn said nothing


def test_the_emulator_on_a_taken_port_is_one_line_exit_2(capsys):
    with _taken_port() as s:
        port = s.getsockname()[1]
        assert main(["emulator", "--port", str(port), "--token", "T"]) == 2
    assert _err_lines(capsys) == [
        f"governor: emulator could not listen on 127.0.0.1:{port}: Address already in use"
    ]


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["demo", "--speed", "0"], "argument --speed: 0 is not in (0, 1000000]"),
        (["demo", "--minutes", "-1"], "argument --minutes: -1 is not in (0, 1000000]"),
        (["demo", "--speed", "fast"], "argument --speed: not a number: 'fast'"),
        (["emulator", "--speed", "nan"], "argument --speed: nan is not in (0, 1000000]"),
        (["plan", "--nope"], "unrecognized arguments: --nope"),
        (["frobnicate"], "argument COMMAND: invalid choice: 'frobnicate'"),
    ],
)
def test_usage_errors_are_one_line_exit_2(argv, needle, capsys):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    (line,) = _err_lines(capsys)
    assert needle in line
    assert line.endswith("--help)")


def test_version(capsys):
    from controller import __version__

    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.strip() == f"governor {__version__}"
