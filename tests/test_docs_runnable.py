"""Every shell block marked runnable in README.md and docs/*.md runs, so a drifting doc fails.

The marker is the fence's info string (docs/architecture.md, "Runnable docs"):

- ```` ```bash runnable ````: a script, run with `bash -euo pipefail`; it must exit 0.
- ```` ```bash runnable background ````: a server (`governor emulator --port N ...`), started for
  the blocks after it in the same file and stopped after the last; the next block waits until
  its port listens.
- ```` ```console runnable ````: `$ command` lines, each followed by the output it must print
  (stdout and stderr, exactly, trailing spaces aside).
- `requires=TOOL`: skipped when TOOL is not installed (promtool).

The blocks of one file run in order in one scratch directory holding links to `examples/` and
`deploy/`, with no `HF_*`/`GOVERNOR_*` variables from the environment and a scratch `HOME`, like a
fresh clone; the docs' port 8081 becomes a free loopback port.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^(?P<indent>\s*)```(?P<lang>\S*)(?P<rest>.*)$")
OPTIONS = {"background"}
TIMEOUT_S = 180


@dataclass
class Block:
    path: Path
    line: int
    lang: str
    text: str
    background: bool = False
    requires: list[str] = field(default_factory=list)

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"


def runnable_blocks(path: Path) -> list[Block]:
    """The fenced blocks of `path` whose info string says `runnable` (indented ones included)."""
    lines = path.read_text(encoding="utf-8").splitlines()
    out: list[Block] = []
    i = 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        indent = m.group("indent")
        end = i + 1
        while end < len(lines) and not lines[end].strip().startswith("```"):
            end += 1
        words = m.group("rest").split()
        if "runnable" in words:
            body = [ln[len(indent) :] if ln.startswith(indent) else ln for ln in lines[i + 1 : end]]
            block = Block(path, i + 1, m.group("lang"), "\n".join(body) + "\n")
            for w in words:
                if w == "runnable":
                    continue
                if w.startswith("requires="):
                    block.requires.extend(w.removeprefix("requires=").split(","))
                elif w in OPTIONS:
                    block.background = True
                else:
                    raise AssertionError(f"{block.where}: unknown runnable option {w!r}")
            if block.lang not in ("bash", "console"):
                raise AssertionError(f"{block.where}: runnable needs bash or console")
            out.append(block)
        i = end + 1
    return out


FILES = {p: runnable_blocks(p) for p in DOCS}


def test_the_try_it_path_and_the_tool_checks_are_marked():
    """The README's try-it path, its check-config sample, promtool and a simulate run stay
    marked: a marker lost in an edit would silently stop testing them."""
    count = {p.relative_to(ROOT).as_posix(): len(b) for p, b in FILES.items() if b}
    assert count.get("README.md", 0) >= 3, count
    assert count.get("docs/operations.md", 0) >= 1, count
    assert count.get("docs/simulate.md", 0) >= 1, count


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_listening(port: int, proc: subprocess.Popen[bytes], where: str) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"{where}: the background command exited ({proc.returncode})")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise AssertionError(f"{where}: nothing listened on {port} within 60 s")


def _console(block: Block, text: str) -> list[tuple[str, list[str]]]:
    steps: list[tuple[str, list[str]]] = []
    for ln in text.splitlines():
        if ln.startswith("$ "):
            steps.append((ln[2:], []))
        elif steps:
            steps[-1][1].append(ln.rstrip())
        elif ln.strip():
            raise AssertionError(f"{block.where}: output before the first `$ ` command")
    return steps


@pytest.mark.parametrize(
    "path", [p for p, b in FILES.items() if b], ids=lambda p: p.relative_to(ROOT).as_posix()
)
def test_runnable_blocks_run(path, tmp_path):
    blocks = FILES[path]
    missing = sorted({t for b in blocks for t in b.requires if shutil.which(t) is None})
    work = tmp_path / "work"
    work.mkdir()
    for name in ("examples", "deploy"):
        (work / name).symlink_to(ROOT / name)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GOVERNOR_", "HF_"))}
    env.update(
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
        HOME=str(tmp_path / "home"),
        XDG_CACHE_HOME=str(tmp_path / "cache"),
        PYTHONUNBUFFERED="1",
    )
    port = str(_free_port())
    servers: list[tuple[subprocess.Popen[bytes], Block]] = []  # stopped in `finally`
    ran = 0
    try:
        for block in blocks:
            if any(t in missing for t in block.requires):
                continue
            text = block.text.replace("8081", port)
            if block.background:
                log = (tmp_path / f"background-{block.line}.log").open("wb")
                proc = subprocess.Popen(
                    ["bash", "-c", f"exec {text.strip()}"],
                    cwd=work,
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
                log.close()
                servers.append((proc, block))
                _wait_listening(int(port), proc, block.where)
            elif block.lang == "bash":
                r = subprocess.run(
                    ["bash", "-euo", "pipefail", "-c", text],
                    cwd=work,
                    env=env,
                    capture_output=True,
                    text=True,
                    timeout=TIMEOUT_S,
                    check=False,
                )
                tail = (r.stdout + r.stderr)[-3000:]
                assert r.returncode == 0, f"{block.where}: exit {r.returncode}\n{tail}"
            else:
                for cmd, expected in _console(block, text):
                    r = subprocess.run(
                        ["bash", "-c", cmd],
                        cwd=work,
                        env=env,
                        stdout=subprocess.PIPE,
                        stderr=subprocess.STDOUT,
                        text=True,
                        timeout=TIMEOUT_S,
                        check=False,
                    )
                    got = [ln.rstrip() for ln in r.stdout.splitlines()]
                    assert got == expected, f"{block.where}: `{cmd}` printed\n{r.stdout}"
            ran += 1
    finally:
        for proc, _ in servers:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
    if missing and ran < len(blocks):
        pytest.skip(f"ran {ran} of {len(blocks)} blocks; not installed: {', '.join(missing)}")
