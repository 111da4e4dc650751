"""What the benchmark scripts share: machine facts, core pinning and the emulator fleet process.

Standard library only, so importing it costs the measured process nothing.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterable
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def cpu_model() -> str:
    """The CPU's `model name` from /proc/cpuinfo ("unknown" elsewhere)."""
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return "unknown"


def versions(names: Iterable[str]) -> dict[str, str]:
    """Installed versions of `names`, leaving out the ones not installed."""
    out = {}
    for name in names:
        with contextlib.suppress(metadata.PackageNotFoundError):
            out[name] = metadata.version(name)
    return out


def cores() -> tuple[int | None, int | None]:
    """(the measured process's core, the emulator's core), or Nones with fewer than two."""
    if not hasattr(os, "sched_getaffinity"):
        return None, None
    cpus = sorted(os.sched_getaffinity(0))
    return (cpus[0], cpus[1]) if len(cpus) >= 2 else (None, None)


def start_fleet(n: int, core: int | None, extra: list[str]) -> tuple[subprocess.Popen, str]:
    """Start `fleet.py` serving `n` endpoints (pinned to `core`); returns it and its base URL."""
    cmd = [sys.executable, str(ROOT / "benchmarks" / "fleet.py"), "--endpoints", str(n), *extra]
    if core is not None:
        cmd += ["--cpu", str(core)]
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line.startswith("READY "):
        proc.kill()
        raise RuntimeError(f"emulator did not start: {line!r}")
    return proc, line.split()[1]


def stop_fleet(proc: subprocess.Popen) -> None:
    with contextlib.suppress(Exception):
        assert proc.stdin is not None
        proc.stdin.close()  # the fleet exits when its stdin closes
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.terminate()
        proc.wait(timeout=10)
