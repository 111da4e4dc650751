"""`governor cost`: the ledger plus one live listing, as a table per endpoint and per group."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, TextIO

from controller.cli.common import require_token
from controller.clock import WallClock
from controller.cost.ledger import CostReport, CostTracker
from controller.platform.client import make_client
from controller.settings import Settings

__all__ = ["cost_command", "render_cost", "run_cost"]


def _usd(v: float | None) -> str:
    return "unknown" if v is None else f"{v:,.2f}"


def _table(rows: list[tuple[str, ...]], out: TextIO) -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        pairs = enumerate(zip(r, widths, strict=True))
        cells = [c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in pairs]
        out.write("  ".join(cells).rstrip() + "\n")


def render_cost(report: CostReport, *, out: TextIO) -> None:
    at = datetime.fromtimestamp(report.at, UTC).strftime("%Y-%m-%d %H:%M UTC")
    out.write(f"cost at {at} (pricing table {report.pricing_version}; USD)\n\n")
    budgets: dict[str, Any] = {b.scope: b for b in report.budgets}
    head = ("ENDPOINT", "STATE", "RATE/H", "TODAY", "MONTH", "FORECAST", "BUDGET", "HEADROOM")
    rows: list[tuple[str, ...]] = [head]
    for e in report.endpoints:
        b = budgets.get(f"endpoint:{e.key}")
        mark = "*" if e.estimated_s > 0 else ""
        rows.append(
            (
                e.key,
                e.state,
                _usd(e.rate_usd_per_hour),
                _usd(e.today_usd),
                _usd(e.month_usd) + mark,
                _usd(e.forecast_month_usd),
                _usd(b.cap_usd) if b else "-",
                _usd(b.headroom_usd) if b else "-",
            )
        )
    _table(rows, out)
    if report.groups:
        out.write("\n")
        rows = [
            ("GROUP", "ENDPOINTS", "RATE/H", "TODAY", "MONTH", "FORECAST", "BUDGET", "HEADROOM")
        ]
        for g in report.groups:
            b = budgets.get(f"{g.kind}:{g.name}")
            rows.append(
                (
                    f"{g.kind}:{g.name}",
                    str(g.endpoints),
                    _usd(g.rate_usd_per_hour),
                    _usd(g.today_usd),
                    _usd(g.month_usd),
                    _usd(g.forecast_month_usd),
                    _usd(b.cap_usd) if b else "-",
                    _usd(b.headroom_usd) if b else "-",
                )
            )
        _table(rows, out)
    if report.budgets:
        out.write("\n")
        rows = [("BUDGET", "PERIOD", "CAP", "SPEND", "FORECAST", "USE", "LEVEL")]
        for b in report.budgets:
            use = "unknown" if b.use_ratio is None else f"{100 * b.use_ratio:.0f}%"
            rows.append(
                (
                    b.scope,
                    b.period,
                    _usd(b.cap_usd),
                    _usd(b.spend_usd),
                    _usd(b.forecast_usd),
                    use,
                    b.level.name.lower(),
                )
            )
        _table(rows, out)
    if report.quota:
        out.write("\n")
        rows = [("QUOTA", "USED", "LIMIT")]
        for q in report.quota:
            lim = "-" if q.limit is None else str(q.limit)
            rows.append((f"{q.namespace} {q.vendor}/{q.accelerator}", str(q.used), lim))
        _table(rows, out)
    for e in report.endpoints:
        if e.estimated_s > 0:
            out.write(
                f"* {e.key}: {e.estimated_s:.0f} s of this month estimated (Governor was not "
                f"observing); {_usd(e.estimated_usd)} USD of the month is an estimate\n"
            )
        if e.usd_per_hour is None:
            out.write(f"! {e.key}: no price for {e.instance}; add it to pricing.overrides\n")
    if not report.endpoints:
        out.write("no endpoints listed and nothing recorded this month\n")


async def run_cost(settings: Settings, *, out: TextIO, client: Any, now: float) -> int:
    """Read the ledger (read-only) and one live listing; print the tables."""
    tracker = CostTracker.open(settings, readonly=True)
    try:
        endpoints = []
        failed = 0
        for ns in settings.namespaces:
            try:
                endpoints.extend(await client.list_endpoints(ns))
            except Exception as exc:
                failed += 1
                out.write(f"namespace {ns}: listing failed: {exc}\n")
        report = tracker.report(endpoints, now=now)
    finally:
        tracker.close()
    render_cost(report, out=out)
    if settings.namespaces and failed == len(settings.namespaces):
        out.write("error: could not list any namespace; the live figures above are missing\n")
        return 1
    return 0


async def cost_command(settings: Settings, *, out: TextIO) -> int:
    require_token(settings)
    async with make_client(settings) as client:
        return await run_cost(settings, out=out, client=client, now=WallClock().now())
