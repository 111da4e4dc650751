"""The backtest's plots as a person reads them (controller/backtest/report.py): the timeline's two
replica lines named in a legend, one replica scale shared by every panel, fonts of at least 10 pt
at the saved size; the cost-vs-SLO plot's goal line and lower bound labelled, one label per point.
Built from a real (short) `simulate` replay."""

from __future__ import annotations

import pytest

from controller.backtest.report import PLOT_DPI, cost_slo_figure, timeline_figure
from controller.backtest.simulate import PolicySpec, load_sim_config, simulate
from controller.backtest.traces import load_trace

matplotlib = pytest.importorskip("matplotlib")


@pytest.fixture(scope="module")
def report():
    import asyncio

    cfg = load_sim_config(None)
    cfg.policies = [
        PolicySpec("platform-default", "platform"),
        PolicySpec("static-2", "static", replicas=2),
        PolicySpec("oracle", "oracle"),
        PolicySpec("lower-bound", "bound"),
    ]
    trace = load_trace("azure-code").window(0, 900)
    (rep,) = asyncio.run(simulate([trace], cfg, progress=None))
    return rep, cfg


def _texts(fig):
    for t in fig.findobj(matplotlib.text.Text):
        if t.get_text().strip() and t.get_visible():
            yield t


def test_timeline_has_a_legend_a_shared_replica_axis_and_readable_fonts(report):
    rep, _ = report
    fig = timeline_figure(rep)
    assert fig.dpi == PLOT_DPI
    (legend,) = fig.legends
    labels = [t.get_text() for t in legend.get_texts()]
    assert any("target" in s for s in labels)
    assert any("ready" in s for s in labels)
    assert any("arrivals" in s for s in labels)
    runs = [r for r in rep.runs if r.timeline]
    replica_axes = [ax for ax in fig.axes if ax.get_ylabel() == "replicas"]
    assert len(replica_axes) == len(runs) >= 3
    limits = {ax.get_ylim() for ax in replica_axes}
    assert len(limits) == 1  # one replica scale for every panel
    peak = max(max(r.timeline["target"] + r.timeline["ready"]) for r in runs)
    assert limits.pop()[1] >= peak
    first = replica_axes[0]
    assert all(ax.get_shared_y_axes().joined(ax, first) for ax in replica_axes)
    small = [(t.get_text(), t.get_fontsize()) for t in _texts(fig) if t.get_fontsize() < 10]
    assert small == []


def test_cost_vs_slo_labels_the_goal_and_the_lower_bound(report):
    rep, cfg = report
    fig = cost_slo_figure(rep, cfg)
    (ax,) = fig.axes
    lines = {ln.get_label(): ln for ln in ax.get_lines()}
    goal = [k for k in lines if k.startswith("SLO goal")]
    assert goal == [f"SLO goal: {100 * cfg.slo_attainment:g} % of requests"]
    assert lines[goal[0]].get_xdata()[0] == pytest.approx(100 * cfg.slo_attainment)
    assert any(k.startswith("lower-bound: $") for k in lines)
    legend = ax.get_legend()
    assert legend is not None
    assert {t.get_text() for t in legend.get_texts()} >= set(goal)
    texts = [t.get_text() for t in _texts(fig)]
    assert f"goal {100 * cfg.slo_attainment:g} %" in texts  # on the line itself
    for r in rep.runs:
        if r.timeline:
            assert any(r.policy in t for t in texts), r.policy
    small = [(t.get_text(), t.get_fontsize()) for t in _texts(fig) if t.get_fontsize() < 10]
    assert small == []
