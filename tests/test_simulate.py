"""`governor simulate`: determinism, the request log, the CLI end to end, errors, plots."""

from __future__ import annotations

import json
import math
import sys
from dataclasses import asdict

import pytest

from controller.backtest.report import write_report
from controller.backtest.simulate import (
    PolicySpec,
    ServiceModel,
    SimConfig,
    load_sim_config,
    simulate,
)
from controller.backtest.traces import load_trace
from controller.cli import main
from controller.emulator.load import Trace, pattern_from_json, pattern_to_json
from controller.emulator.platform import Platform, PlatformConfig, SimParams
from tests.conftest import endpoint_body

T0 = 1_800_000_000.0


def test_request_log_records_waits_and_503s():
    p = Platform(start=T0, config=PlatformConfig(concurrency=1))
    trace = Trace((0.5, 0.6, 5.0), service_s=(2.0, 1.0, 1.0))
    p.create(
        "ns",
        endpoint_body("e", max_replica=1),
        load=trace,
        ready=True,
        sim=SimParams(concurrency=1),
    )
    log = p.record_requests("ns", "e")
    p.advance_to(T0 + 10)
    assert list(log.arrival) == [T0 + 0.5, T0 + 0.6, T0 + 5.0]
    assert list(log.wait) == pytest.approx([0.0, 1.9, 0.0])
    p.pause("ns", "e")
    p.set_load("ns", "e", Trace((0.5,)))
    p.advance_to(T0 + 11)
    assert math.isnan(log.wait[-1])
    assert pattern_from_json(pattern_to_json(trace)) == trace
    assert "service_s" not in pattern_to_json(Trace((1.0,)))


def _strip(reports):
    out = []
    for rep in reports:
        d = rep.to_json()
        for r in d["runs"]:
            r.pop("runtime_s")
        out.append(d)
    return out


async def test_same_seed_same_result():
    trace = load_trace("azure-conv").window(600, 300)
    cfg = load_sim_config(None, seed=5)
    cfg.policies = [
        PolicySpec("platform", "platform"),
        PolicySpec(
            "gov", "governor", governor={"defaults": {"policies": {"pending_requests": {}}}}
        ),
        PolicySpec("oracle", "oracle"),
    ]
    a = await simulate([trace], cfg, progress=None)
    b = await simulate([trace], cfg, progress=None)
    assert _strip(a) == _strip(b)
    assert {r.policy for r in a[0].runs} == {"platform", "gov", "oracle"}
    assert a[0].runs[1].api_actions >= 0


def test_cli_end_to_end_ten_minute_slice(tmp_path, capsys):
    out = tmp_path / "report"
    rc = main(
        [
            "simulate",
            "--trace",
            "azure-code",
            "--duration-s",
            "600",
            "--out",
            str(out),
            "--no-progress",
        ]
    )
    assert rc == 0
    text = capsys.readouterr().out
    for name in (
        "platform-default",
        "static-peak",
        "hpa-utilisation",
        "governor-default",
        "oracle",
    ):
        assert name in text
    data = json.loads((out / "report.json").read_text())
    runs = data["traces"][0]["runs"]
    assert [r["kind"] for r in runs] == ["platform", "static", "governor", "governor", "oracle"]
    oracle = runs[-1]
    assert oracle["meets_slo"]
    assert all(r["cost_usd"] > 0 and 0 <= r["slo_attainment"] <= 1 for r in runs)
    md = (out / "report.md").read_text()
    assert "| policy |" in md
    assert "CC-BY 4.0" in md
    assert "Splitwise" in md
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return
    assert (out / "timeline-azure-code.png").stat().st_size > 1000
    assert (out / "cost_vs_slo-azure-code.png").stat().st_size > 1000


def test_plots_skip_without_matplotlib(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    cfg = SimConfig(service=ServiceModel())
    files = write_report([], cfg, tmp_path, log=sys.stderr)
    assert {f.name for f in files} == {"report.json", "report.md"}
    assert "matplotlib is not installed" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--trace", "nope.csv"], "no such trace file"),
        (["--trace", "BAD"], "bad.csv:3: TIMESTAMP"),
        (["--trace", "azure-code", "--config", "CFG"], "policies[0].kind"),
        (["--trace", "azure-code", "--instance", "aws/nope/x1"], "not in the pricing table"),
        (["--trace", "azure-code", "--duration-s", "0"], "no requests"),
    ],
)
def test_cli_errors_exit_2(tmp_path, capsys, monkeypatch, argv, message):
    bad = tmp_path / "bad.csv"
    bad.write_text("TIMESTAMP,ContextTokens\n2023-11-16 18:17:03,1\nnot-a-time,2\n")
    cfg = tmp_path / "sim.yaml"
    cfg.write_text("policies:\n  - {name: x, kind: magic}\n")
    monkeypatch.chdir(tmp_path)
    argv = [a.replace("BAD", "bad.csv").replace("CFG", str(cfg)) for a in argv]
    assert main(["simulate", *argv, "--no-progress"]) == 2
    assert message in capsys.readouterr().err


def test_config_file_policies_and_service(tmp_path):
    f = tmp_path / "sim.yaml"
    f.write_text(
        "slo_ms: 500\nservice: {concurrency: 4, decode_tps: 40}\n"
        "policies:\n  - {name: s3, kind: static, replicas: 3}\n  - {name: o, kind: oracle}\n"
    )
    cfg = load_sim_config(f, seed=2)
    assert cfg.slo_ms == 500
    assert cfg.seed == 2
    assert cfg.service.concurrency == 4
    assert cfg.service.decode_tps == 40
    assert [p.name for p in cfg.policies] == ["s3", "o"]
    assert asdict(cfg)["service"]["prefill_tps"] == 2000.0
