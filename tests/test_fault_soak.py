"""The committed soak script (benchmarks/fault_soak.py) run for a few seconds, so it cannot rot:
real daemons, a kill -9 of the lone daemon and of the leader, faults injected, and every figure
but the first 0 (the script exits 1 otherwise)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_a_short_soak_runs_and_every_figure_but_faults_is_zero(tmp_path):
    out = tmp_path / "soak"
    cmd = [sys.executable, str(ROOT / "benchmarks" / "fault_soak.py"), "--minutes", "0.45"]
    cmd += ["--seed", "3", "--out", str(out), "--workdir", str(tmp_path / "work")]
    cmd += ["--first-kill-s", "4"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=240, cwd=ROOT)
    res = json.loads(out.with_suffix(".json").read_text())
    f = res["figures"]
    assert f["faults_injected"] > 0
    assert f["kill_9"] >= 2
    assert f["kill_9_of_the_leader"] == 1
    assert f["writes"] > 0
    # The ledger is held exact in both parts: the lone daemon's (kill -9 and restarts) and the
    # two replicas' (a kill -9 of the leader: the successor resumes from the Lease's watermark).
    assert all(v == 0 for v in res["must_be_zero"].values()), res["must_be_zero"]
    assert proc.returncode in (0, 1), proc.stderr[-3000:]
    assert f["ledger_solo_part_lost_minutes"] == 0
    assert f["ledger_solo_part_double_counted_minutes"] == 0
    md = out.with_suffix(".md").read_text()
    assert "| token leaks | 0 |" in md
    assert "python benchmarks/fault_soak.py" in md
