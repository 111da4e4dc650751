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

__all__ = [
    "ATTRIBUTION",
    "PLOT_DPI",
    "cost_slo_figure",
    "render_table",
    "timeline_figure",
    "write_report",
]

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


# Plots a person reads at a glance: fonts of at least 10 pt at the saved size (PLOT_DPI), one
# replica axis shared by every panel, a legend that names each line, the goal lines labelled.
PLOT_DPI = 100
FONT_PT = 11


def _style() -> dict[str, Any]:
    return {
        "font.size": FONT_PT,
        "axes.titlesize": FONT_PT,
        "axes.labelsize": FONT_PT,
        "xtick.labelsize": 10,
        "ytick.labelsize": 10,
        "legend.fontsize": 10,
        "figure.titlesize": 13,
    }


def timeline_figure(rep: TraceReport) -> Any:
    """One panel per run: arrivals per minute (bars) and the replicas (target and ready) on one
    replica scale for every panel, so the panels compare by eye."""
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch
    from matplotlib.ticker import MaxNLocator

    runs: list[RunResult] = [r for r in rep.runs if r.timeline]
    peak = max(
        (max([*r.timeline.get("target", []), *r.timeline.get("ready", []), 1]) for r in runs),
        default=1,
    )
    with plt.rc_context(_style()):
        fig, axes = plt.subplots(
            len(runs),
            1,
            figsize=(11, 2.2 * len(runs) + 1.4),
            dpi=PLOT_DPI,
            sharex=True,
            squeeze=False,
        )
        minutes = list(range(len(rep.load_per_min)))
        replica_axes = []
        for ax, r in zip(axes[:, 0], runs, strict=True):
            ax.bar(minutes, rep.load_per_min, width=1.0, color="#cccccc")
            ax.set_ylabel("req/min")
            ax2 = ax.twinx()
            tl = r.timeline
            tm = [t / 60 for t in tl.get("t_s", [])]
            ax2.step(tm, tl.get("target", []), where="post", color="C0", lw=1.8)
            ax2.step(tm, tl.get("ready", []), where="post", color="C1", ls="--", lw=1.6)
            ax2.set_ylabel("replicas")
            ax2.set_ylim(0, peak * 1.08)
            ax2.yaxis.set_major_locator(MaxNLocator(integer=True, nbins=5))
            replica_axes.append(ax2)
            ax.set_title(
                f"{r.policy}: ${r.cost_usd:.2f}, SLO {100 * r.slo_attainment:.1f}%", loc="left"
            )
        for ax2 in replica_axes[1:]:
            ax2.sharey(replica_axes[0])
        axes[-1, 0].set_xlabel("minutes")
        handles = [
            Patch(color="#cccccc", label="arrivals per minute (left axis)"),
            Line2D([], [], color="C0", lw=1.8, label="replicas asked for (target, right axis)"),
            Line2D([], [], color="C1", ls="--", lw=1.6, label="replicas ready (right axis)"),
        ]
        fig.suptitle(f"{rep.trace}: load vs replicas (one replica scale for every panel)")
        h = fig.get_figheight()  # inches: keep the title and the legend a fixed size above
        fig.legend(
            handles=handles,
            loc="upper center",
            ncol=3,
            bbox_to_anchor=(0.5, 0.985 - 0.3 / h),
            frameon=False,
        )
        fig.tight_layout(rect=(0, 0, 1, 1 - 0.9 / h))
    return fig


def _place_labels(points: list[tuple[float, float]], labels: list[str], ax: Any) -> list[tuple]:
    """(dx, dy, ha) in points for each label beside its point: to the right of the point, or
    to the left in the right third of the plot (so it is not cut off), moved down in steps when
    it would overlap a label already placed (greedy, top to bottom; sizes estimated at 10 pt)."""
    disp = ax.transData.transform(points)
    to_pt = 72.0 / ax.figure.dpi
    x0, x1 = (v * to_pt for v in ax.transAxes.transform([(0, 0), (1, 0)])[:, 0])
    boxes: list[tuple[float, float, float]] = []  # left, right, centre y
    out: list[tuple] = [()] * len(points)
    for i in sorted(range(len(points)), key=lambda i: -disp[i][1]):
        x, y = disp[i][0] * to_pt, disp[i][1] * to_pt
        width = 6.0 * len(labels[i])
        left_side = x > x0 + 2 * (x1 - x0) / 3
        lo, hi = (x - 6 - width, x - 6) if left_side else (x + 6, x + 6 + width)
        dy = 8.0
        while any(lo < b_hi and hi > b_lo and abs(c - (y + dy)) < 13 for b_lo, b_hi, c in boxes):
            dy -= 13
        boxes.append((lo, hi, y + dy))
        out[i] = (-6.0 if left_side else 6.0, dy, "right" if left_side else "left")
    return out


def cost_slo_figure(rep: TraceReport, cfg: SimConfig) -> Any:
    """Cost against SLO attainment per run; the attainment goal and the lower bound are labelled
    lines; runs at one point share one label."""
    import matplotlib.pyplot as plt

    with plt.rc_context(_style()):
        fig, ax = plt.subplots(figsize=(8, 6), dpi=PLOT_DPI)
        at: dict[tuple[float, float], list[str]] = {}
        for r in rep.runs:
            if r.timeline:
                at.setdefault((100 * r.slo_attainment, r.cost_usd), []).append(r.policy)
        points = list(at)
        for i, (x, y) in enumerate(points):
            ax.scatter(x, y, s=50, color=f"C{i % 10}", zorder=3)
        goal = 100 * cfg.slo_attainment
        ax.axvline(goal, color="grey", ls=":", lw=1.5, label=f"SLO goal: {goal:g} % of requests")
        for r in rep.runs:
            if not r.timeline:  # the lower bound: a cost, not a run
                ax.axhline(
                    r.cost_usd,
                    color="grey",
                    ls="--",
                    lw=1.2,
                    label=f"{r.policy}: ${r.cost_usd:.2f} (no controller can cost less)",
                )
        ax.set_xlabel(f"SLO attainment % (queueing delay <= {cfg.slo_ms:g} ms)")
        ax.set_ylabel("cost $")
        ax.set_title(f"{rep.trace}: cost vs SLO (lower right is better)")
        top = max([r.cost_usd for r in rep.runs] or [1.0])
        ax.set_ylim(0, top * 1.12 or 1.0)  # room above the dearest point for its label
        ax.margins(x=0.12)
        ax.text(
            goal,
            0.02,
            f"goal {goal:g} %",
            transform=ax.get_xaxis_transform(),
            rotation=90,
            ha="right",
            va="bottom",
            color="dimgrey",
        )
        # Below the plot: inside, it would cover the points of one load or another.
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.13), ncol=2, frameon=False)
        fig.tight_layout()
        labels = [", ".join(at[p]) for p in points]
        for (x, y), text, (dx, dy, ha) in zip(
            points, labels, _place_labels(points, labels, ax), strict=True
        ):
            ax.annotate(
                text, (x, y), xytext=(dx, dy), textcoords="offset points", ha=ha, va="center"
            )
    return fig


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
        for fig, name in (
            (timeline_figure(rep), f"timeline-{slug}.png"),
            (cost_slo_figure(rep, cfg), f"cost_vs_slo-{slug}.png"),
        ):
            p = d / name
            fig.savefig(p, dpi=PLOT_DPI)
            plt.close(fig)
            files.append(p)
    return files
