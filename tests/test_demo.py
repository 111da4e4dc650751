"""`governor demo` as a user sees it: Governor's bill beside the same load under the platform's own
autoscaler, lines that fit in 100 columns, changes said as what moved, the summary after Ctrl-C,
and the live status block on a terminal (a real pty) but plain lines on a pipe."""

from __future__ import annotations

import io
import os
import re
import signal
import subprocess
import sys
import time

from controller.backtest.simulate import advance_alone
from controller.cli.demo import DEMO_START, WIDTH, run_demo
from controller.emulator.scenario import build_platform, default_scenario

NOOP = re.compile(r"(?<![\d.])(\d+) -> \1(?![\d.])")  # "1 -> 1": a change that changes nothing


def _tables(text: str) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """The summary's first table and the Governor-versus-alone table, rows keyed by endpoint."""
    summary = re.split(r"[Ss]ummary after", text, maxsplit=1)[1]
    first, versus = summary.split("The same load without Governor", 1)
    rows1 = {ln.split()[0]: ln.split() for ln in first.splitlines()[2:] if ln.startswith("  ")}
    rows2 = {ln.split()[0]: ln.split() for ln in versus.splitlines()[3:] if ln.startswith("  ")}
    return rows1, rows2


def _check_lines(text: str) -> None:
    assert [ln for ln in text.splitlines() if len(ln) > WIDTH] == []
    assert [ln for ln in text.splitlines() if NOOP.search(ln)] == []


async def test_the_summary_has_both_bills_at_speed_over_loopback():
    """Sped up over loopback (20 virtual minutes in about 2 s): both bills per endpoint, read at
    one virtual time, so the endpoint Governor leaves alone costs the same in both worlds."""
    out = io.StringIO()
    assert await run_demo(speed=600, minutes=20, out=out) == 0
    text = out.getvalue()
    assert "\x1b[" not in text  # not a terminal: plain lines
    _check_lines(text)
    rows, versus = _tables(text)
    for e in default_scenario().endpoints:
        assert float(versus[e.name][1]) == float(rows[e.name][5])  # the first table's billed $
    assert versus["unmanaged-experiment"][1] == versus["unmanaged-experiment"][2]
    assert float(versus["total"][2]) > 0
    assert "the platform scales each endpoint itself" in text


async def test_alone_is_the_platform_left_to_itself():
    """The 'alone' column is what the same world bills with nobody calling its API, replayed here
    on its own (virtual time: exact to the cent), and 'saved' is the difference; every change
    printed says what moved."""
    minutes = 30
    out = io.StringIO()
    assert await run_demo(minutes=minutes, out=out, fast=True) == 0
    text = out.getvalue()
    _check_lines(text)
    _, versus = _tables(text)
    spec = default_scenario()
    alone = build_platform(spec, start=DEMO_START, seed=7)
    advance_alone(alone, origin=DEMO_START, until_s=minutes * 60, step=15.0)
    snap = alone.snapshot()["endpoints"]
    for e in spec.endpoints:
        gov_usd, alone_usd, saved = (float(x) for x in versus[e.name][1:4])
        assert alone_usd == round(snap[f"{spec.namespace}/{e.name}"]["billed_usd"], 2)
        assert abs(saved - (alone_usd - gov_usd)) < 0.011
    gov_total, alone_total = (float(x) for x in versus["total"][1:3])
    assert alone_total > gov_total  # on this scenario Governor's bill is lower
    # Changes are said as what moved: a bounds write reads "max 6 -> 1", never "set_bounds
    # 1 -> 1"; a pinned scale-up reads "replicas 1 -> 2" without the min and max that follow it.
    lines = text.splitlines()
    bounds = [ln for ln in lines if " set_bounds " in ln]
    assert bounds
    assert all(re.search(r"(min|max|scale-to-zero) \S+ -> \d+", ln) for ln in bounds), bounds
    ups = [ln for ln in lines if " scale_up " in ln]
    assert ups
    assert all(re.search(r"scale_up\s+replicas \d+ -> \d+ \(", ln) for ln in ups), ups


async def test_the_saving_is_not_paid_for_in_refused_requests():
    """The whole demo (90 virtual minutes): Governor's bill is lower and no endpoint serves fewer
    requests or refuses more than the platform alone. Before, batch-summarizer was idle-reclaim
    paused 25 minutes into the gap between its 40-minute bursts and lost the next burst whole
    (1138 503s against 759 alone)."""
    out = io.StringIO()
    assert await run_demo(out=out, fast=True) == 0
    _, versus = _tables(out.getvalue())
    for e in default_scenario().endpoints:
        served = [int(x) for x in versus[e.name][4].split("/")]
        refused = [int(x) for x in versus[e.name][5].split("/")]
        assert served[0] >= served[1], (e.name, served)
        assert refused[0] <= refused[1], (e.name, refused)
    assert float(versus["total"][2]) > float(versus["total"][1])


def _demo(*args: str, **kw) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "controller.cli", "demo", *args],
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        **kw,
    )


def test_ctrl_c_still_prints_the_summary():
    """SIGINT mid-run: the run stops, the summary (both bills) for the time run so far is
    printed, no traceback, exit 130."""
    proc = _demo("--speed", "120", "--minutes", "60", stdout=subprocess.PIPE)
    assert proc.stdout is not None
    seen = ""
    deadline = time.monotonic() + 60
    while "scale_up" not in seen and time.monotonic() < deadline:
        line = proc.stdout.readline().decode()
        assert line, "the demo ended before it scaled anything"
        seen += line
    proc.send_signal(signal.SIGINT)
    rest, err = proc.communicate(timeout=60)
    text = seen + rest.decode()
    assert proc.returncode == 130, err.decode()[-2000:]
    assert "Traceback" not in err.decode()
    assert re.search(r"Interrupted: summary after [\d.]+ of 60 virtual minutes:", text), text
    _, versus = _tables(text)
    assert set(versus) >= {"chat-llm", "unmanaged-experiment", "total"}
    assert float(versus["total"][1]) > 0


def _screen(raw: str) -> list[str]:
    """What a VT100 shows after `raw`: CR, LF, CSI n F (up n lines, column 0), CSI J (erase
    to the end of the screen), the sequences the live view uses; any other CSI is refused."""
    lines: list[str] = [""]
    row = col = 0
    i = 0
    while i < len(raw):
        ch = raw[i]
        if ch == "\x1b":
            m = re.match(r"\x1b\[(\d*)([A-Za-z])", raw[i:])
            assert m, f"unknown escape at {raw[i : i + 10]!r}"
            n, op = int(m.group(1) or 1), m.group(2)
            if op == "F":
                row, col = max(0, row - n), 0
            elif op == "J":
                lines[row] = lines[row][:col]
                del lines[row + 1 :]
            else:
                raise AssertionError(f"unexpected CSI {m.group(0)!r}")
            i += len(m.group(0))
            continue
        if ch == "\r":
            col = 0
        elif ch == "\n":
            row += 1
            col = 0
            if row == len(lines):
                lines.append("")
        else:
            cur = lines[row].ljust(col)
            lines[row] = cur[:col] + ch + cur[col + 1 :]
            col += 1
        i += 1
    return lines


def test_live_view_on_a_terminal_redraws_one_line_per_endpoint():
    """Under a pty the status block is redrawn in place: the raw output draws it at every tick,
    the screen ends with one block (a header and one line per endpoint), and the decisions stay
    above it; nothing wider than 100 columns."""
    import fcntl
    import pty
    import struct
    import termios

    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, 120, 0, 0))
    proc = _demo("--fast", "--minutes", "15", stdout=slave)
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:  # EIO: the child closed its end
            break
        if not data:
            break
        chunks.append(data)
    os.close(master)
    assert proc.wait(timeout=60) == 0, proc.stderr.read().decode()[-2000:] if proc.stderr else ""
    raw = b"".join(chunks).decode()
    assert raw.count("\x1b[5F\x1b[J") > 30  # 15 virtual minutes of 15 s ticks, each redrawn
    screen = [ln.rstrip() for ln in _screen(raw)]
    assert max(len(ln) for ln in screen) <= WIDTH
    headers = [i for i, ln in enumerate(screen) if re.match(r"\[\d+:\d\d\] endpoint\s+state", ln)]
    assert len(headers) == 1, "\n".join(screen)
    block = screen[headers[0] + 1 : headers[0] + 5]
    names = [ln.split()[0] for ln in block]
    assert names == [e.name for e in default_scenario().endpoints]
    assert screen[headers[0]].startswith("[0:15]")  # the last redraw, at the end of the run
    before = screen[: headers[0]]
    assert any(" scale_up " in ln for ln in before)  # decisions scrolled above the block
    assert "The same load without Governor" in "\n".join(screen[headers[0] :])
