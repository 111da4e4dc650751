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
    run_system_sync,
    simulate,
)
from controller.backtest.traces import RequestTrace, load_trace
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
    kinds = ["platform"] * 3 + ["static", "governor", "governor", "autopilot"]
    kinds += ["oracle", "oracle", "bound"]
    assert [r["kind"] for r in runs] == kinds
    assert data["traces"][0]["unavailable"] == []
    oracle, overall, bound = runs[-3:]
    assert oracle["meets_slo"]
    assert overall["meets_slo"]
    assert bound["cost_usd"] <= overall["cost_usd"] <= oracle["cost_usd"]
    assert all(r["cost_usd"] > 0 and 0 <= r["slo_attainment"] <= 1 for r in runs)
    # every system starts cold, 600 s before the first request: each run's first sample has
    # no ready replica
    assert all(r["timeline"]["ready"][0] == 0 for r in runs[:-1])
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


def _zero_platform(hold_s):
    p = Platform(start=T0, config=PlatformConfig(concurrency=1, cold_start_s=100))
    p.create(
        "ns",
        endpoint_body("e", min_replica=0, max_replica=1),
        load=Trace((5.0, 6.0, 400.0), service_s=(1.0, 1.0, 1.0)),
        ready=True,
        sim=SimParams(concurrency=1, cold_start_s=100, hold_s=hold_s),
    )
    return p, p.record_requests("ns", "e")


def test_cold_start_from_zero_answers_503_or_waits_with_scale_up_timeout():
    # scaled to zero: the first arrival wakes it; without a hold both early requests are 503s
    p, log = _zero_platform(None)
    p.advance_to(T0 + 500)
    assert [math.isnan(w) for w in log.wait] == [True, True, False]
    # X-Scale-Up-Timeout 300 s: both wait for the replica woken at 5 s (ready at 105 s)
    p, log = _zero_platform(300.0)
    p.advance_to(T0 + 500)
    assert list(log.wait) == pytest.approx([100.0, 100.0, 0.0])
    # a hold shorter than the cold start runs out: 503 at its deadline
    p, log = _zero_platform(30.0)
    p.advance_to(T0 + 500)
    assert [math.isnan(w) for w in log.wait] == [True, True, False]
    assert p.snapshot()["endpoints"]["ns/e"]["ready_replicas"] == 1


async def test_floor_zero_scales_to_zero_and_lead_in_is_idle():
    # sparse load: two requests 40 min apart; a floor-0 platform endpoint (15 min timeout)
    # sleeps between them and pays a cold start (503s) for each, a floor-1 one stays warm
    trace = RequestTrace("sparse", (0.0, 2400.0))
    cfg = SimConfig(
        lead_in_s=300,
        policies=[
            PolicySpec("p1", "platform"),
            PolicySpec("p0", "platform", floor=0),
            PolicySpec("o", "oracle"),
        ],
    )
    [rep] = await simulate([trace], cfg, progress=None)
    p1, p0, o = rep.runs
    assert p1.rejected_503 == 0
    assert p1.slo_attainment == 1.0
    assert p0.rejected_503 == 2
    assert p0.cost_usd < p1.cost_usd
    assert "scale to zero after 15 idle min" in p0.detail
    assert o.meets_slo
    assert o.cost_usd < p1.cost_usd
    assert rep.load_per_min[:5] == [0] * 5
    assert rep.lead_in_s == 300


DAEMON_YAML = """\
api: {base_url: "https://api.endpoints.huggingface.cloud/v2"}
namespaces: [acme]
manage: {names: [chat, other]}
loop: {tick_interval_s: 30, dry_run: true}
server: {listen: "0.0.0.0:9108"}
defaults:
  floor: 1
  ceiling: 10
  policies: {pending_requests: {target_per_replica: 6}}
endpoints:
  - match: {names: [chat]}
    floor: 2
    ceiling: 3
  - match: {tags: [bursty]}
    policies: {pending_requests: {target_per_replica: 4}}
budgets:
  - {scope: namespace, match: acme, period: month, usd: 100}
"""


def test_cli_replays_the_users_daemon_file(tmp_path, capsys):
    conf = tmp_path / "governor.yaml"
    conf.write_text(DAEMON_YAML)
    out = tmp_path / "r"
    argv = ["simulate", "--trace", "azure-conv", "--duration-s", "300", "--lead-in-s", "240"]
    rc = main([*argv, "-c", str(conf), "--endpoint", "chat", "--tags", "bursty", "--out", str(out)])
    assert rc == 0, capsys.readouterr().err
    runs = {
        r["policy"]: r for r in json.loads((out / "report.json").read_text())["traces"][0]["runs"]
    }
    gov = runs["governor (acme/chat)"]
    # the rule's floor and ceiling, the tag rule's policy parameter, the file's tick interval
    assert gov["detail"].startswith("min 2, max 3")
    assert "pending_requests(target_per_replica=4)" in gov["detail"]
    assert max(gov["timeline"]["target"]) <= 3
    assert min(gov["timeline"]["target"][20:]) >= 2
    assert gov["timeline"]["t_s"][1] == 30.0
    # every other system keeps the file's real ceiling
    assert runs["platform-default"]["detail"].startswith("min 2, max 3")
    assert all(max(r["timeline"]["target"]) <= 3 for r in runs.values() if r["timeline"])
    # several managed names and no --endpoint: a one-line error naming them
    assert main([*argv, "-c", str(conf), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "--endpoint" in err
    assert "chat, other" in err
    assert main([*argv, "-c", str(conf), "--endpoint", "nobody", "--no-progress"]) == 2
    assert "not managed by this config" in capsys.readouterr().err
    assert main([*argv, "--endpoint", "chat", "--no-progress"]) == 2
    assert "need a daemon config" in capsys.readouterr().err


def test_run_system_with_scale_up_timeout_holds_instead_of_503():
    # one system over one load through the public entry point; clients that send
    # X-Scale-Up-Timeout wait out the cold start of a sleeping endpoint instead of a 503
    trace = RequestTrace("two", (0.0, 2400.0))
    spec = PolicySpec("p0", "platform", floor=0)
    cold = run_system_sync(SimConfig(lead_in_s=300), trace, spec)
    held = run_system_sync(SimConfig(lead_in_s=300, scale_up_timeout_s=600), trace, spec)
    assert cold.rejected_503 == 2
    assert held.rejected_503 == 0
    assert held.requests == 2
    assert held.slo_attainment == 0.0  # both waited a cold start: served, but late
    assert held.wait_p50_ms >= 180_000
    # the autopilot hook exists: the rolling protocol runs (day 1 on the untuned default)
    auto = run_system_sync(SimConfig(), trace, PolicySpec("a", "autopilot"))
    assert auto is not None
    assert auto.kind == "autopilot"
    assert auto.requests == 2
