"""deploy/prometheus and deploy/grafana with the real tools: `promtool check rules/config`,
`promtool test rules` (a unit test for every alert), and a real Prometheus server on loopback that
scrapes only a running `governor run` (driving the emulator; nothing scrapes the endpoints'
feeds), through which every dashboard query and every alert expression is executed."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import signal
import subprocess
from pathlib import Path

import httpx
import pytest
import yaml

from tests.conftest import NS
from tests.deploy_support import (
    DEPLOY,
    ROOT,
    free_port,
    governor_config,
    need,
    spawn_governor,
    start_emulator,
    wait_http,
    write_config,
)

PROM = DEPLOY / "prometheus"
ALERTS = yaml.safe_load((PROM / "alerts.yml").read_text())
RULES = [r for g in ALERTS["groups"] for r in g["rules"]]
DASHBOARD = json.loads((DEPLOY / "grafana" / "dashboard.json").read_text())
REQUIRED_ALERTS = {
    "GovernorDown",
    "GovernorNotTicking",
    "GovernorScrapesFailing",
    "GovernorEndpointStale",
    "GovernorActionsFailing",
    "GovernorBudgetForecastOverThreshold",
    "GovernorBudgetExhausted",
    "GovernorQuotaNearlyFull",
    "GovernorEndpointPinnedAtCeiling",
    "GovernorAuthFailing",
    "GovernorDiscoveryFailing",
    "GovernorLoopStalled",
    "GovernorLeaderCount",
    "GovernorConfigReloadFailed",
    "GovernorRightsizeRolledBack",
}
# Alerts whose condition is false in a healthy run: their expression must evaluate without error
# and return nothing; the query beside each shows the metrics they are built on do exist.
EXPECTED_EMPTY = {
    "GovernorDown": ('up{job="governor"} == 1', "Governor is up and scraped"),
    "GovernorNotTicking": (
        "time() - governor_last_tick_timestamp_seconds < 300",
        "the loop ticks every second",
    ),
    "GovernorScrapesFailing": (
        'governor_scrape_errors_total and on() governor_api_calls_total{route="open_metrics"}',
        "feeds are read without errors",
    ),
    "GovernorEndpointStale": ("governor_endpoint_stale == 0", "every feed is fresh"),
    "GovernorActionsFailing": ("governor_actions_total", "no action fails against the emulator"),
    "GovernorBudgetForecastOverThreshold": (
        "governor_budget_level == 0 and on(scope, period) governor_budget_use_ratio < 0.8",
        "the budgets are far above the spend",
    ),
    "GovernorBudgetExhausted": ("governor_budget_level < 3", "the budgets are far above the spend"),
    "GovernorAuthFailing": (
        'governor_tick_errors_total{reason="auth"} == 0',
        "the token is accepted",
    ),
    "GovernorDiscoveryFailing": (
        'governor_tick_errors_total{reason="discovery"} == 0',
        "every listing succeeds",
    ),
    "GovernorLoopStalled": (
        'governor_ticks_total{result="ok"} > 0',
        "the loop ticks every second",
    ),
    "GovernorLeaderCount": ("sum(governor_leader) == 1", "one daemon, no election: it leads"),
    "GovernorConfigReloadFailed": (
        "governor_config_last_reload_successful == 1",
        "the config loaded at start is in force",
    ),
    "GovernorRightsizeRolledBack": (
        'governor_rightsize_actions_total{action="rollback"} == 0',
        "the actions are exported at 0 from the start; nothing was rolled back",
    ),
    "GovernorQuotaNearlyFull": (
        "governor_quota_used_accelerators / governor_quota_limit_accelerators <= 0.9",
        "4 of 8 accelerators in use",
    ),
}
# acme/chat has 20 req/s against a ceiling of 2 replicas: the pinned-at-ceiling condition holds.
EXPECTED_DATA = {"GovernorEndpointPinnedAtCeiling"}
NON_PROM_VARS = {"$__rate_interval": "30s", "$namespace": ".*", "$endpoint": ".*"}


def run(*args: str, cwd: Path = PROM) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        list(args), capture_output=True, text=True, cwd=cwd, timeout=120, check=False
    )


def test_promtool_check_rules():
    promtool = need("promtool")
    out = run(promtool, "check", "rules", "alerts.yml")
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"SUCCESS: {len(RULES)} rules found" in out.stdout


def test_promtool_unit_tests_cover_every_alert():
    promtool = need("promtool")
    tests = yaml.safe_load((PROM / "alerts.test.yml").read_text())
    fired = {
        t["alertname"]
        for case in tests["tests"]
        for t in case.get("alert_rule_test", [])
        if t.get("exp_alerts")
    }
    assert {r["alert"] for r in RULES} <= fired, "an alert has no firing unit test"
    out = run(promtool, "test", "rules", "alerts.test.yml")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "SUCCESS" in out.stdout


def test_promtool_check_example_config(tmp_path):
    promtool = need("promtool")
    cfg = yaml.safe_load((PROM / "prometheus.yml").read_text())
    assert not [j["job_name"] for j in cfg["scrape_configs"] if "authorization" in j], (
        "no job needs the HF token: Governor re-exports the feeds' signals"
    )
    cfg["rule_files"] = [str(PROM / "alerts.yml")]
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(cfg))
    out = run(promtool, "check", "config", str(tmp_path / "prometheus.yml"))
    assert out.returncode == 0, out.stdout + out.stderr


def test_every_alert_is_documented():
    assert {r["alert"] for r in RULES} == REQUIRED_ALERTS
    runbook = (ROOT / "docs" / "runbook.md").read_text()
    anchors = {
        re.sub(r"[^a-z0-9 -]", "", h.strip().lower()).replace(" ", "-")
        for h in re.findall(r"^#{1,6} (.+)$", runbook, re.M)
    }
    for r in RULES:
        ann = r["annotations"]
        assert ann.get("summary"), r["alert"]
        assert ann.get("description"), r["alert"]
        assert r["labels"]["severity"] in {"warning", "critical"}
        url = ann["runbook_url"]
        path, _, anchor = url.partition("#")
        assert path == "docs/runbook.md", f"{r['alert']}: {url}"
        assert anchor in anchors, f"{r['alert']}: {url}"


def dashboard_queries() -> list[tuple[str, str]]:
    out = []
    for p in DASHBOARD["panels"]:
        for t in p.get("targets", []):
            out.append((f"{p['title']} [{t['refId']}]", t["expr"]))
    return out


def metric_names(expr: str) -> set[str]:
    """The series names a PromQL expression selects (label matchers, groupings, strings,
    durations, numbers and function names left out)."""
    expr = re.sub(r'"[^"]*"', "", expr)
    expr = re.sub(r"\{[^}]*\}|\[[^\]]*\]", " ", expr)
    expr = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", expr)
    names = set(re.findall(r"(?<![\w.$])([a-zA-Z_:][\w:]*)\b(?!\s*\()", expr))
    return names - {"and", "or", "unless", "bool", "offset", "__rate_interval"}


def test_dashboard_and_alerts_read_governors_own_metrics_only():
    """Every dashboard query and alert selects Governor's own series (`up` of its job aside), so
    a Prometheus that scrapes only Governor serves them all."""
    exprs = [e for _, e in dashboard_queries()] + [r["expr"] for r in RULES]
    foreign = {(n, e) for e in exprs for n in metric_names(e) if not n.startswith("governor_")}
    assert foreign == {("up", r["expr"]) for r in RULES if r["alert"] == "GovernorDown"}
    assert metric_names('sum by (a) (rate(x_total{b="c"}[5m])) / on(a) y > 4') == {
        "x_total",
        "y",
    }


def test_dashboard_is_wellformed():
    ds = [v for v in DASHBOARD["templating"]["list"] if v["type"] == "datasource"]
    assert ds
    assert ds[0]["query"] == "prometheus"
    ids = [p["id"] for p in DASHBOARD["panels"]]
    assert len(ids) == len(set(ids))
    for p in DASHBOARD["panels"]:
        if p["type"] == "row":
            continue
        assert p["datasource"]["uid"] == "${datasource}", p["title"]
        assert p["targets"], p["title"]
    titles = " ".join(p["title"].lower() for p in DASHBOARD["panels"])
    for word in (
        "replicas",
        "pending",
        "utilisation",
        "decisions",
        "cost rate",
        "forecast",
        "quota",
        "right-sizing",
    ):
        assert word in titles, word
    prov = yaml.safe_load(
        (DEPLOY / "grafana" / "provisioning" / "dashboards" / "governor.yaml").read_text()
    )
    assert prov["providers"][0]["type"] == "file"
    dsp = yaml.safe_load(
        (DEPLOY / "grafana" / "provisioning" / "datasources" / "governor.yaml").read_text()
    )
    assert dsp["datasources"][0]["type"] == "prometheus"


def substitute(expr: str) -> str:
    for k, v in NON_PROM_VARS.items():
        expr = expr.replace(k, v)
    assert "$" not in expr.replace("$1", "").replace("$2", ""), expr
    return expr


def prometheus_config(tmp: Path, gov_port: int) -> Path:
    """deploy/prometheus/prometheus.yml, pointed at Governor on loopback with a 1 s interval."""
    cfg = yaml.safe_load((PROM / "prometheus.yml").read_text())
    cfg["global"] = {"scrape_interval": "1s", "evaluation_interval": "1s"}
    cfg["rule_files"] = [str(PROM / "alerts.yml")]
    jobs = {j["job_name"]: j for j in cfg["scrape_configs"]}
    assert set(jobs) == {"governor"}, "the shipped config scrapes Governor only"
    jobs["governor"]["static_configs"] = [{"targets": [f"127.0.0.1:{gov_port}"]}]
    path = tmp / "prometheus.yml"
    path.write_text(yaml.safe_dump(cfg))
    return path


async def query(c: httpx.AsyncClient, expr: str) -> list[dict]:
    r = await c.get("/api/v1/query", params={"query": expr})
    body = r.json()
    assert r.status_code == 200, f"{expr}: {body}"
    assert body["status"] == "success", f"{expr}: {body}"
    return body["data"]["result"]


async def test_real_prometheus_runs_every_dashboard_query_and_alert(tmp_path):
    prometheus = need("prometheus")
    srv = await start_emulator()
    gov_port, prom_port = free_port(), free_port()
    gov = prom = None
    try:
        gov = await spawn_governor(
            write_config(
                tmp_path,
                governor_config(
                    srv.base_url,
                    gov_port,
                    tmp_path / "state.sqlite",
                    # the idle endpoint runs right-sizing: its saving panel has a series
                    endpoints=[
                        {
                            "match": {"names": ["batch"]},
                            "policies": {"slo_target": {}, "right_sizing": {}},
                        }
                    ],
                ),
            )
        )
        await wait_http(f"http://127.0.0.1:{gov_port}/readyz", proc=gov)
        prom = await asyncio.create_subprocess_exec(
            prometheus,
            f"--config.file={prometheus_config(tmp_path, gov_port)}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{prom_port}",
            "--log.level=warn",
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        base = f"http://127.0.0.1:{prom_port}"
        await wait_http(f"{base}/-/ready", timeout_s=60, proc=prom)
        async with httpx.AsyncClient(base_url=base, timeout=10) as c:
            # both jobs up, and enough samples for rate() and the range functions
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 60
            while loop.time() < deadline:
                up = await query(c, "up == 1")
                samples = await query(c, "count_over_time(governor_ticks_total[1m])")
                jobs = {s["metric"]["job"] for s in up}
                if jobs == {"governor"} and samples and (float(samples[0]["value"][1]) >= 8):
                    break
                await asyncio.sleep(0.5)
            targets = (await c.get("/api/v1/targets")).json()["data"]["activeTargets"]
            assert all(t["health"] == "up" for t in targets), targets

            empty = []
            for where, expr in dashboard_queries():
                if not await query(c, substitute(expr)):
                    empty.append(f"{where}: {expr}")
            assert not empty, "dashboard queries without data:\n" + "\n".join(empty)

            for var in DASHBOARD["templating"]["list"]:
                if var["type"] != "query":
                    continue
                m = re.fullmatch(r"label_values\((.+), (\w+)\)", var["definition"])
                assert m, var["definition"]
                r = await c.get(
                    f"/api/v1/label/{m.group(2)}/values",
                    params={"match[]": substitute(m.group(1))},
                )
                assert r.json()["data"], var["name"]

            for rule in RULES:
                name = rule["alert"]
                result = await query(c, rule["expr"])
                if name in EXPECTED_DATA:
                    assert result, f"{name} returned nothing"
                    assert {
                        (s["metric"]["namespace"], s["metric"]["endpoint"]) for s in result
                    } == {(NS, "chat")}, result
                else:
                    base_q, why = EXPECTED_EMPTY[name]
                    assert result == [], f"{name} is true in a healthy run: {result}"
                    assert await query(c, base_q), f"{name}: {base_q} empty ({why})"

            # Prometheus itself loaded and evaluated every rule without error
            deadline = loop.time() + 10
            while True:
                groups = (await c.get("/api/v1/rules")).json()["data"]["groups"]
                rules = [r for g in groups for r in g["rules"]]
                if all(r.get("lastEvaluation", "").startswith("2") for r in rules):
                    break
                assert loop.time() < deadline, rules
                await asyncio.sleep(0.5)
            assert {r["name"] for r in rules} == REQUIRED_ALERTS
            bad = [(r["name"], r.get("lastError")) for r in rules if r["health"] != "ok"]
            assert not bad, bad
            pending = {r["name"] for r in rules if r["state"] != "inactive"}
            assert pending <= EXPECTED_DATA, pending
    finally:
        for p in (prom, gov):
            if p is not None and p.returncode is None:
                p.send_signal(signal.SIGTERM)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(p.wait(), 20)
                if p.returncode is None:
                    p.kill()
                    await p.wait()
        await srv.stop()
    assert gov.returncode == 0


@pytest.mark.parametrize("alert", sorted(REQUIRED_ALERTS))
def test_alert_has_a_runbook_section(alert):
    text = (ROOT / "docs" / "runbook.md").read_text()
    assert f"## {alert}" in text
