"""Governor's own HTTP surface: probes and the metrics exposition, through the ASGI app."""

from __future__ import annotations

import httpx

from controller.clock import VirtualClock
from controller.daemon.exporter import EndpointGauges, Health, Metrics, create_app


async def get(app, path: str, **kw) -> httpx.Response:
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://governor"
    ) as c:
        return await c.get(path, **kw)


async def test_probes_follow_the_loop():
    """/readyz waits for the first tick; /healthz fails when ticks stop completing."""
    clock = VirtualClock(1000)
    health = Health(tick_interval_s=15)
    app = create_app(Metrics(), health, clock)
    assert (await get(app, "/healthz")).status_code == 503  # not started
    health.started_at = clock.now()
    assert (await get(app, "/healthz")).status_code == 200
    assert (await get(app, "/readyz")).status_code == 503
    health.ticks, health.last_tick_at = 1, clock.now()
    assert (await get(app, "/readyz")).status_code == 200
    clock.advance(3 * 15 + 61)
    r = await get(app, "/healthz")
    assert r.status_code == 503
    assert "no tick completed" in r.json()["detail"]
    health.stopping = True
    assert (await get(app, "/readyz")).status_code == 503


async def test_metrics_exposition_and_vanishing_endpoints():
    """Per-endpoint series exist only for currently managed endpoints; OpenMetrics on request."""
    m = Metrics()
    m.endpoints = {
        "a/x": EndpointGauges("a", "x", current=2, ready=1, desired=3, metrics_age_s=4.0)
    }
    app = create_app(m, Health(tick_interval_s=15), VirtualClock())
    text = (await get(app, "/metrics")).text
    assert 'governor_endpoint_replicas{endpoint="x",kind="desired",namespace="a"} 3.0' in text
    assert 'governor_scrape_errors_total{reason="parse_error"} 0.0' in text
    m.endpoints = {}
    text = (await get(app, "/metrics")).text
    assert 'endpoint="x"' not in text
    om = await get(app, "/metrics", headers={"Accept": "application/openmetrics-text"})
    assert om.headers["content-type"].startswith("application/openmetrics-text")
    assert om.text.rstrip().endswith("# EOF")
