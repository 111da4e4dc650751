"""The backtest report: a table on the terminal, `report.json`, `report.md` and PNG plots.

Plots need matplotlib (`pip install 'governor[report]'`); without it they are skipped with a
message and the JSON and Markdown are still written.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any, TextIO

from controller.backtest.simulate import RunResult, SimConfig, TraceReport

__all__ = ["ATTRIBUTION", "render_table", "write_report"]

ATTRIBUTION = (
    "Traces `azure-code` / `azure-conv`: Azure Public Dataset, Azure LLM inference trace 2023 "
    "(CC-BY 4.0), from *Splitwise: Efficient generative LLM inference using phase splitting*, "
    "Patel, Choukse, Zhang, Shah, Goiri, Maleki, Bianchini, ISCA 2024."
)

_COLS = (
    ("policy", "policy"),
    ("cost $", "cost"),
    ("x oracle", "ratio_oracle"),
    ("x platform", "ratio_platform"),
    ("replica-h", "replica_hours"),
    ("SLO %", "attain"),
    ("p50 ms", "p50"),
    ("p95 ms", "p95"),
    ("p99 ms", "p99"),
    ("503s", "rejected"),
    ("API actions", "actions"),
    ("react s", "react"),
)


def _n(v: float | None, fmt: str = "{:.0f}") -> str:
    return "-" if v is None else fmt.format(v)


def _rows(rep: TraceReport) -> list[dict[str, str]]:
    oracle = next((r for r in rep.runs if r.kind == "oracle"), None)
    platform = next((r for r in rep.runs if r.kind == "platform"), None)
    out = []
    for r in rep.runs:
        out.append(
            {
                "policy": r.policy + ("" if r.meets_slo else " *"),
                "cost": f"{r.cost_usd:.2f}",
                "ratio_oracle": f"{r.cost_usd / oracle.cost_usd:.2f}"
                if oracle and oracle.cost_usd
                else "-",
                "ratio_platform": f"{r.cost_usd / platform.cost_usd:.2f}"
                if platform and platform.cost_usd
                else "-",
                "replica_hours": f"{r.replica_hours:.2f}",
                "attain": f"{100 * r.slo_attainment:.2f}",
                "p50": _n(r.wait_p50_ms),
                "p95": _n(r.wait_p95_ms),
                "p99": _n(r.wait_p99_ms),
                "rejected": str(r.rejected_503),
                "actions": str(r.api_actions),
                "react": _n(r.reaction_s),
            }
        )
    return out


def _header(rep: TraceReport, cfg: SimConfig) -> str:
    notes = f" ({'; '.join(rep.notes)})" if rep.notes else ""
    return (
        f"{rep.trace}{notes}: {rep.requests:,} requests over {rep.duration_s / 60:.1f} min after "
        f"{rep.lead_in_s:g} s idle, every system from a cold start; "
        f"SLO: queueing delay <= {cfg.slo_ms:g} ms for >= {100 * cfg.slo_attainment:g}% of "
        f"requests (503s are misses); {cfg.instance}, {cfg.service.concurrency} concurrent "
        f"requests per replica, cold start {cfg.service.cold_start_s:g} s"
    )


def render_table(reports: Sequence[TraceReport], cfg: SimConfig, *, out: TextIO) -> None:
    for rep in reports:
        out.write("\n" + _header(rep, cfg) + "\n")
        rows = _rows(rep)
        heads = [h for h, _ in _COLS]
        widths = [max(len(h), *(len(r[k]) for r in rows)) for h, k in _COLS]
        out.write(
            "  ".join(
                h.rjust(w) if i else h.ljust(w)
                for i, (h, w) in enumerate(zip(heads, widths, strict=True))
            )
            + "\n"
        )
        for r in rows:
            cells = [r[k] for _, k in _COLS]
            out.write(
                "  ".join(
                    c.rjust(w) if i else c.ljust(w)
                    for i, (c, w) in enumerate(zip(cells, widths, strict=True))
                )
                + "\n"
            )
        out.write("  * misses the SLO attainment goal\n")


def _md_table(rep: TraceReport) -> list[str]:
    rows = _rows(rep)
    lines = [
        "| " + " | ".join(h for h, _ in _COLS) + " |",
        "|" + "|".join("---" if i == 0 else "---:" for i in range(len(_COLS))) + "|",
    ]
    for r in rows:
        lines.append("| " + " | ".join(r[k] for _, k in _COLS) + " |")
    return lines


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-") or "trace"


def write_report(
    reports: Sequence[TraceReport],
    cfg: SimConfig,
    out_dir: str | Path,
    *,
    command: str | None = None,
    runtime_s: float | None = None,
    log: TextIO | None = None,
) -> list[Path]:
    """Write report.json, report.md and (with matplotlib) PNG plots; returns the files."""
    d = Path(out_dir)
    d.mkdir(parents=True, exist_ok=True)
    files: list[Path] = []
    cfg_json = asdict(cfg)
    data: dict[str, Any] = {
        "command": command,
        "runtime_s": runtime_s,
        "config": cfg_json,
        "attribution": ATTRIBUTION,
        "traces": [r.to_json() for r in reports],
    }
    p = d / "report.json"
    p.write_text(json.dumps(data, indent=1, sort_keys=False) + "\n", encoding="utf-8")
    files.append(p)
    plots = _plots(reports, cfg, d, log=log)
    files.extend(plots)
    md = ["# Backtest report", ""]
    if command:
        md += ["```", command, "```", ""]
    s = cfg.service
    md += [
        f"Service model: {cfg.instance}, {s.concurrency} concurrent requests per replica, service "
        f"time = {s.overhead_s:g} s + input tokens / {s.prefill_tps:g} + output tokens / "
        f"{s.decode_tps:g} s, cold start {s.cold_start_s:g} s, Governor tick "
        f"{cfg.tick_interval_s:g} s, seed {cfg.seed}, at most {cfg.max_replicas} replicas.",
        "",
        "Columns: cost as billed per started replica-minute; `x oracle` / `x platform`: cost "
        "relative to the oracle and to the platform's own autoscaler; `SLO %`: share of requests "
        "whose queueing delay met the target; p50/p95/p99: queueing delay of served requests; "
        "`react s`: seconds from the start of the largest burst to the first scale-up (negative: "
        "ahead of it). `*`: misses the attainment goal.",
        "",
    ]
    if runtime_s is not None:
        md += [f"Runtime: {runtime_s:.1f} s on one core.", ""]
    for rep in reports:
        md += [f"## {rep.trace}", "", _header(rep, cfg) + ".", ""]
        md += _md_table(rep)
        md.append("")
        for r in rep.runs:
            md.append(f"- **{r.policy}** ({r.kind}): {r.detail}; {r.runtime_s:.1f} s")
            for t in r.tuning:
                mark = " **chosen**" if t["chosen"] else ""
                md.append(
                    f"  - {t['detail']}: ${t['cost_usd']:.2f}, SLO "
                    f"{100 * t['slo_attainment']:.2f}%{mark}"
                )
        slug = _slug(rep.trace)
        for pl in plots:
            if pl.name.endswith(f"-{slug}.png"):
                md += ["", f"![{pl.stem}]({pl.name})"]
        md.append("")
    md += ["---", "", ATTRIBUTION, ""]
    p = d / "report.md"
    p.write_text("\n".join(md), encoding="utf-8")
    files.append(p)
    return files


def _plots(
    reports: Sequence[TraceReport], cfg: SimConfig, d: Path, *, log: TextIO | None
) -> list[Path]:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        if log is not None:
            log.write(
                "governor: matplotlib is not installed: skipping the PNG plots "
                "(pip install 'governor[report]')\n"
            )
        return []
    files = []
    for rep in reports:
        slug = _slug(rep.trace)
        runs: list[RunResult] = [r for r in rep.runs if r.timeline]
        fig, axes = plt.subplots(len(runs), 1, figsize=(10, 1.9 * len(runs) + 0.6), sharex=True)
        axes = list(axes) if len(runs) > 1 else [axes]
        minutes = [i for i in range(len(rep.load_per_min))]
        for ax, r in zip(axes, runs, strict=True):
            ax.bar(minutes, rep.load_per_min, width=1.0, color="#cccccc", label="arrivals/min")
            ax.set_ylabel("req/min", fontsize=8)
            ax2 = ax.twinx()
            tl = r.timeline
            tm = [t / 60 for t in tl.get("t_s", [])]
            ax2.step(tm, tl.get("target", []), where="post", color="C0", label="replicas")
            ax2.step(tm, tl.get("ready", []), where="post", color="C1", ls="--", label="ready")
            ax2.set_ylabel("replicas", fontsize=8)
            ax2.set_ylim(bottom=0)
            ax.set_title(
                f"{r.policy}: ${r.cost_usd:.2f}, SLO {100 * r.slo_attainment:.1f}%",
                fontsize=9,
                loc="left",
            )
        axes[-1].set_xlabel("minutes")
        axes[0].legend(loc="upper left", fontsize=7)
        fig.suptitle(f"{rep.trace}: load vs replicas", fontsize=10)
        fig.tight_layout()
        p = d / f"timeline-{slug}.png"
        fig.savefig(p, dpi=90)
        plt.close(fig)
        files.append(p)
        fig, ax = plt.subplots(figsize=(6, 4))
        for r in rep.runs:
            ax.scatter(100 * r.slo_attainment, r.cost_usd, s=40)
            ax.annotate(
                r.policy,
                (100 * r.slo_attainment, r.cost_usd),
                fontsize=8,
                xytext=(4, 4),
                textcoords="offset points",
            )
        for r in rep.runs:
            if not r.timeline:  # the lower bound: a cost, not a run
                ax.axhline(r.cost_usd, color="grey", ls="--", lw=1)
        ax.axvline(100 * cfg.slo_attainment, color="grey", ls=":", lw=1)
        ax.set_xlabel(f"SLO attainment % (queueing delay <= {cfg.slo_ms:g} ms)")
        ax.set_ylabel("cost $")
        ax.set_title(f"{rep.trace}: cost vs SLO", fontsize=10)
        fig.tight_layout()
        p = d / f"cost_vs_slo-{slug}.png"
        fig.savefig(p, dpi=90)
        plt.close(fig)
        files.append(p)
    return files
