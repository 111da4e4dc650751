"""`governor cost`: the ledger plus one live listing, as a table per endpoint and per group."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, TextIO

from controller.cli.common import (
    BudgetCoverage,
    budget_coverage,
    coverage_warnings,
    iso,
    json_dump,
    require_token,
)
from controller.clock import WallClock
from controller.cost.ledger import CostReport, CostTracker
from controller.platform.client import make_client
from controller.settings import Settings

__all__ = ["cost_command", "cost_json", "render_cost", "run_cost"]


def _usd(v: float | None) -> str:
    return "unknown" if v is None else f"{v:,.2f}"


def _table(rows: list[tuple[str, ...]], out: TextIO) -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        pairs = enumerate(zip(r, widths, strict=True))
        cells = [c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in pairs]
        out.write("  ".join(cells).rstrip() + "\n")


def render_cost(
    report: CostReport, *, out: TextIO, coverage: Sequence[BudgetCoverage] = ()
) -> None:
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
        rows = [
            ("BUDGET", "PERIOD", "CAP", "SPEND", "FORECAST", "USE", "LEVEL", "COVERS", "ENFORCED")
        ]
        covered = {(c.label, c.period): c for c in coverage}
        for b in report.budgets:
            use = "unknown" if b.use_ratio is None else f"{100 * b.use_ratio:.0f}%"
            c = covered.get((b.scope, b.period))
            rows.append(
                (
                    b.scope,
                    b.period,
                    _usd(b.cap_usd),
                    _usd(b.spend_usd),
                    _usd(b.forecast_usd),
                    use,
                    b.level.name.lower(),
                    "-" if c is None else str(len(c.covers)),
                    "-" if c is None else str(len(c.enforced)),
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
    if coverage and report.budgets:
        out.write(
            "COVERS: listed endpoints a budget counts; ENFORCED: the managed ones it caps "
            "(an unmanaged endpoint is counted, never changed)\n"
        )


def cost_json(
    report: CostReport,
    *,
    coverage: Sequence[BudgetCoverage],
    namespace_errors: dict[str, str],
    warnings: list[str],
) -> dict[str, Any]:
    """The `-o json` document of `governor cost` (docs/output.md, governor.cost v1). Money is
    in USD; null where a figure is unknown (an instance without a price)."""
    covered = {(c.label, c.period): c for c in coverage}

    def budget(b: Any) -> dict[str, Any]:
        c = covered.get((b.scope, b.period))
        return {
            "budget": b.scope,
            "period": b.period,
            "cap_usd": b.cap_usd,
            "spend_usd": b.spend_usd,
            "forecast_usd": b.forecast_usd,
            "use_ratio": b.use_ratio,
            "headroom_usd": b.headroom_usd,
            "level": b.level.name.lower(),
            "covers": list(c.covers) if c else [],
            "enforced": list(c.enforced) if c else [],
        }

    return {
        "kind": "governor.cost",
        "version": 1,
        "at": iso(report.at),
        "currency": "USD",
        "pricing_version": report.pricing_version,
        "endpoints": [
            {
                "endpoint": e.key,
                "state": e.state,
                "instance": e.instance,
                "replicas": e.replicas,
                "usd_per_hour": e.usd_per_hour,
                "rate_usd_per_hour": e.rate_usd_per_hour,
                "today_usd": e.today_usd,
                "month_usd": e.month_usd,
                "forecast_day_usd": e.forecast_day_usd,
                "forecast_month_usd": e.forecast_month_usd,
                "estimated_s": e.estimated_s,
                "estimated_usd": e.estimated_usd,
            }
            for e in report.endpoints
        ],
        "groups": [
            {
                "group": f"{g.kind}:{g.name}",
                "endpoints": g.endpoints,
                "rate_usd_per_hour": g.rate_usd_per_hour,
                "today_usd": g.today_usd,
                "month_usd": g.month_usd,
                "forecast_day_usd": g.forecast_day_usd,
                "forecast_month_usd": g.forecast_month_usd,
            }
            for g in report.groups
        ],
        "budgets": [budget(b) for b in report.budgets],
        "quota": [
            {
                "namespace": q.namespace,
                "vendor": q.vendor,
                "accelerator": q.accelerator,
                "used": q.used,
                "limit": q.limit,
            }
            for q in report.quota
        ],
        "namespace_errors": namespace_errors,
        "warnings": warnings,
    }


async def run_cost(
    settings: Settings, *, out: TextIO, client: Any, now: float, output: str = "table"
) -> int:
    """Read the ledger (read-only) and one live listing; print the tables (or the JSON)."""
    tracker = CostTracker.open(settings, readonly=True)
    errors: dict[str, str] = {}
    try:
        endpoints = []
        for ns in settings.namespaces:
            try:
                endpoints.extend(await client.list_endpoints(ns))
            except Exception as exc:
                errors[ns] = str(exc)
        report = tracker.report(endpoints, now=now)
    finally:
        tracker.close()
    blind = bool(settings.namespaces) and len(errors) == len(settings.namespaces)
    coverage = [] if blind else budget_coverage(settings, endpoints)
    warnings = coverage_warnings(settings, coverage)
    if output == "json":
        json_dump(
            cost_json(report, coverage=coverage, namespace_errors=errors, warnings=warnings), out
        )
        return 1 if blind else 0
    for ns, err in errors.items():
        out.write(f"namespace {ns}: listing failed: {err}\n")
    render_cost(report, out=out, coverage=coverage)
    for w in warnings:
        out.write(f"warning: {w}\n")
    if blind:
        out.write("error: could not list any namespace; the live figures above are missing\n")
        return 1
    return 0


async def cost_command(settings: Settings, *, out: TextIO, output: str = "table") -> int:
    require_token(settings)
    async with make_client(settings) as client:
        return await run_cost(
            settings, out=out, client=client, now=WallClock().now(), output=output
        )
