"""`governor plan` (and `run --once`): one tick, a table of what Governor would do and why."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

from controller.cli.common import (
    budget_coverage,
    coverage_warnings,
    dry_run_copy,
    iso,
    json_dump,
    manage_hint,
    require_token,
)
from controller.clock import WallClock
from controller.daemon.autopilot import override_for
from controller.daemon.loop import Governor, TickReport
from controller.platform.client import make_client
from controller.platform.models import AnyEndpoint
from controller.platform.recipes import PER_REPLICA
from controller.platform.signals import FeedSample
from controller.platform.windows import SIGNALS, WindowStore
from controller.settings import Settings

__all__ = ["Listing", "describe_signals", "plan_json", "render_plan", "run_plan"]


def describe_signals(sample: FeedSample) -> str:
    """The feed as Governor read it: the preset and the value of every signal it carried."""
    parts = [f"preset {sample.preset or '-'}"]
    for signal in SIGNALS:
        v = sample.value(signal)
        if v is not None:
            unit = "%" if signal in PER_REPLICA else ""
            parts.append(f"{_LABELS.get(signal, signal)} {v:.4g}{unit}")
    parts.append(f"requests {sample.total_requests:.6g} (cumulative)")
    if sample.latency_count is not None and sample.latency_sum is not None:
        mean = sample.latency_sum / sample.latency_count if sample.latency_count > 0 else None
        parts.append(
            f"latency n={sample.latency_count:.6g}"
            + (f" mean {mean:.3g}s" if mean is not None else "")
        )
    return ", ".join(parts)


_LABELS = {"pending": "in flight"}


class Listing:
    """A tick observer keeping what discovery listed (managed or not), for the hints and the
    budget coverage that the plan shows."""

    def __init__(self) -> None:
        self.endpoints: list[AnyEndpoint] = []

    def observe(self, endpoints: Sequence[AnyEndpoint], *, now: float) -> None:
        self.endpoints = list(endpoints)


def render_plan(
    report: TickReport,
    *,
    out: TextIO,
    windows: WindowStore | None = None,
    settings: Settings | None = None,
    listed: Sequence[AnyEndpoint] | None = None,
) -> None:
    """The `governor plan` table: what Governor would do for each managed endpoint, and why;
    with `windows`, also each endpoint's feed preset and the signal values the decision read;
    with `settings` and `listed`, why nothing matched and what each budget covers."""
    header = ("ENDPOINT", "STATE", "CURRENT", "DESIRED", "ACTION", "POLICY", "REASON")
    rows = [header]
    for e in report.entries:
        d = e.decision
        rows.append(
            (
                d.key,
                e.endpoint.state.value,
                str(d.current if d.current is not None else "-"),
                str(d.desired if d.desired is not None else "-"),
                d.action.value,
                d.policy or "-",
                d.reason.value,
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    for r in rows:
        out.write("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() + "\n")
    if report.entries:
        out.write("\nwhy:\n")
        for e in report.entries:
            out.write(f"  {e.decision.key}: {e.decision.message}\n")
            if e.outcome is not None:
                out.write(f"    -> {e.outcome.result.value}: {e.outcome.detail}\n")
            key = e.decision.key
            latest = windows[key].latest if windows is not None and key in windows else None
            if latest is not None:
                out.write(f"    feed: {describe_signals(latest)}\n")
    for ns, err in report.namespace_errors.items():
        out.write(f"\nnamespace {ns}: listing failed: {err}\n")
    if report.blind:
        out.write(f"\nerror: could not see the account ({report.failed}); nothing was decided\n")
    for key, err in report.feed_errors.items():
        out.write(f"feed {key}: {err}\n")
    if report.unmanaged:
        out.write(f"\nnot managed (never touched): {', '.join(sorted(report.unmanaged))}\n")
    if not report.entries and not report.blind:
        hint = f": {manage_hint(settings, listed or [])}" if settings is not None else ""
        out.write(f"no managed endpoints matched the `manage` selection{hint}\n")
    if settings is not None and settings.budgets and not report.blind:
        coverage = budget_coverage(settings, listed or [])
        out.write("\nbudgets:\n")
        for c in coverage:
            out.write(f"  {c.describe()}\n")
        for w in coverage_warnings(settings, coverage):
            out.write(f"warning: {w}\n")


def plan_json(
    report: TickReport,
    *,
    settings: Settings,
    listed: Sequence[AnyEndpoint],
    windows: WindowStore | None = None,
    autopilot: dict[str, Any] | None = None,
    rightsize: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The `-o json` document of `plan` and `run --once` (docs/output.md, governor.plan v1)."""
    coverage = [] if report.blind else budget_coverage(settings, listed)
    warnings = [] if report.blind else coverage_warnings(settings, coverage)
    if not report.entries and not report.blind:
        hint = manage_hint(settings, listed)
        warnings.insert(0, f"no managed endpoints matched the `manage` selection: {hint}")

    def signals(key: str) -> dict[str, float] | None:
        latest = windows[key].latest if windows is not None and key in windows else None
        if latest is None:
            return None
        values = {s: latest.value(s) for s in SIGNALS}
        return {s: v for s, v in values.items() if v is not None}

    return {
        "kind": "governor.plan",
        "version": 1,
        "at": iso(report.at),
        "dry_run": settings.loop.dry_run,
        "ok": not report.blind,
        "failed": report.failed,
        "endpoints": [
            {
                "endpoint": e.decision.key,
                "state": e.endpoint.state.value,
                "current": e.decision.current,
                "desired": e.decision.desired,
                "action": e.decision.action.value,
                "policy": e.decision.policy,
                "reason": e.decision.reason.value,
                "message": e.decision.message,
                "outcome": None
                if e.outcome is None
                else {"result": e.outcome.result.value, "detail": e.outcome.detail},
                "signals": signals(e.decision.key),
                "autopilot": (autopilot or {}).get(e.decision.key),
                "rightsize": _rightsize_json((rightsize or {}).get(e.decision.key)),
            }
            for e in report.entries
        ],
        "unmanaged": sorted(report.unmanaged),
        "namespace_errors": dict(report.namespace_errors),
        "feed_errors": dict(report.feed_errors),
        "budgets": [c.as_json() for c in coverage],
        "warnings": warnings,
    }


def _state_rows(path: Path, table: str) -> dict[str, dict[str, Any]]:
    """One (key, JSON data) table of the state file, read-only; absent or older file: nothing."""
    if not path.exists():
        return {}
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            rows = db.execute(f"SELECT key, data FROM {table}").fetchall()
        finally:
            db.close()
    except sqlite3.Error:  # no such table: a state file from before that subsystem
        return {}
    out: dict[str, dict[str, Any]] = {}
    for key, data in rows:
        try:
            out[key] = json.loads(data)
        except ValueError:
            continue
    return out


def _rightsize_state(settings: Settings) -> dict[str, dict[str, Any]]:
    """Right-sizing's last recommendation and apply phase per endpoint (read-only)."""
    return _state_rows(Path(settings.state.path), "rightsize")


def _rightsize_json(st: dict[str, Any] | None) -> dict[str, Any] | None:
    if st is None:
        return None
    return {
        "action": st.get("action") or None,
        "recommended": st.get("best"),
        "saving_usd_per_month": st.get("saving_month_usd"),
        "phase": st.get("phase"),
        "message": st.get("last") or None,
    }


def _autopilot_state(settings: Settings) -> dict[str, dict[str, Any]]:
    """What the daemon's autopilot has in force and last said, per endpoint (read-only)."""
    if not settings.autopilot.enabled:
        return {}
    return _state_rows(Path(settings.state.path), "autopilot")


async def run_plan(settings: Settings, *, out: TextIO, output: str = "table") -> int:
    require_token(settings)
    plan_settings = dry_run_copy(settings)
    auto = _autopilot_state(settings)
    sizing = _rightsize_state(settings)
    listing = Listing()
    async with make_client(plan_settings) as client:
        gov = Governor(
            plan_settings, clock=WallClock(), client=client, store=None, observers=[listing]
        )
        for key, st in auto.items():
            if st.get("safety") is not None:
                gov.overrides[key] = override_for(float(st["safety"]))
        report = await gov.tick()
    shown = [
        (e.decision.key, auto[e.decision.key]) for e in report.entries if e.decision.key in auto
    ]
    if output == "json":
        doc = plan_json(
            report,
            settings=plan_settings,
            listed=listing.endpoints,
            windows=gov.windows,
            autopilot={key: st.get("last") for key, st in shown},
            rightsize=sizing,
        )
        json_dump(doc, out)
        return 1 if report.blind else 0
    render_plan(
        report, out=out, windows=gov.windows, settings=plan_settings, listed=listing.endpoints
    )
    if shown:
        out.write("\nautopilot (in force in the decisions above):\n")
        for key, st in shown:
            out.write(f"  {key}: {st.get('last') or 'no decision yet'}\n")
    sized = [
        (e.decision.key, sizing[e.decision.key]) for e in report.entries if e.decision.key in sizing
    ]
    if sized:
        out.write("\nright-sizing (best candidate on the replayed traffic):\n")
        for key, st in sized:
            phase = st.get("phase") or "idle"
            tail = "" if phase == "idle" else f" [apply: {phase}]"
            out.write(f"  {key}: {st.get('last') or 'not evaluated yet'}{tail}\n")
    # Exit 1 when the account could not be seen: a script must not read "nothing to do".
    return 1 if report.blind else 0
