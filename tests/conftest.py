"""Shared fixtures: an emulated platform served over loopback HTTP, on a virtual clock.

`World` wires the real parts together: the emulator's ASGI app under uvicorn on 127.0.0.1, an
`EndpointsClient` talking HTTP to it, and a `Governor` whose ticks the test drives by advancing the
virtual clock. Only the client's retry sleep is replaced (it records the delays and returns at
once), so a retry test does not have to advance virtual time from inside a tick.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from controller.clock import VirtualClock
from controller.cost.ledger import CostTracker
from controller.daemon.exporter import Health, Metrics, MetricsServer, create_app
from controller.daemon.loop import Governor, TickReport
from controller.daemon.store import StateStore
from controller.emulator.load import Constant, LoadPattern
from controller.emulator.platform import Platform, SimParams
from controller.emulator.server import EmulatorServer
from controller.platform.client import EndpointsClient, make_client
from controller.platform.models import UserRef
from controller.settings import Settings, load_settings

NS = "acme"
TOKEN = "hf_test_governor_token_0123456789"
HUMAN_TOKEN = "hf_test_human_token_9876543210"
BOT = UserRef(id="u-bot", name="governor-bot")
HUMAN = UserRef(id="u-alice", name="alice")
T0 = 1_800_000_000.0


def endpoint_body(
    name: str,
    *,
    min_replica: int = 1,
    max_replica: int = 4,
    tags: list[str] | None = None,
    instance: tuple[str, str, str] = ("gpu", "nvidia-l4", "x1"),
    repository: str = "gpt2",
) -> dict[str, Any]:
    acc, itype, isize = instance
    return {
        "name": name,
        "type": "protected",
        "accountId": None,
        "healthRoute": "/health",
        "tags": tags or [],
        "provider": {"vendor": "aws", "region": "us-east-1"},
        "compute": {
            "accelerator": acc,
            "instanceType": itype,
            "instanceSize": isize,
            "scaling": {
                "minReplica": min_replica,
                "maxReplica": max_replica,
                "scaleToZeroTimeout": None,
                "measure": {"pendingRequests": 1.5},
            },
        },
        "model": {
            "repository": repository,
            "framework": "pytorch",
            "task": "text-generation",
            "image": {"huggingface": {}},
        },
    }


@dataclass
class World:
    platform: Platform
    clock: VirtualClock
    server: EmulatorServer
    tmp: Path
    sleeps: list[float] = field(default_factory=list)
    reports: list[TickReport] = field(default_factory=list)

    def add(self, name: str, *, load: LoadPattern | None = None, **kw: Any) -> None:
        self.platform.create(
            NS,
            endpoint_body(name, **kw),
            by=HUMAN,
            load=load,
            ready=True,
            sim=SimParams(cold_start_s=60.0, concurrency=4, service_time_s=2.0),
        )

    def settings(self, **overrides: Any) -> Settings:
        base: dict[str, Any] = {
            "api": {"base_url": self.server.base_url, "backoff_initial_s": 0.5},
            "namespaces": [NS],
            "manage": {"tags": ["managed"]},
            "loop": {"tick_interval_s": 15},
            "scrape": {"max_age_s": 60},
            "state": {"path": str(self.tmp / "state.sqlite")},
            "defaults": {
                "floor": 1,
                "ceiling": 6,
                "scale_down_stabilization_s": 300,
                "policies": {"pending_requests": {"target_per_replica": 3.0}},
            },
        }
        for k, v in overrides.items():
            base[k] = {**base[k], **v} if isinstance(base.get(k), dict) else v
        return load_settings(None, overrides=base, env={"HF_TOKEN": TOKEN})

    def client(self, settings: Settings, metrics: Metrics | None = None) -> EndpointsClient:
        async def sleep(s: float) -> None:
            self.sleeps.append(s)

        return make_client(settings, on_call=metrics.record_call if metrics else None, sleep=sleep)

    def governor(
        self,
        settings: Settings,
        client: EndpointsClient,
        *,
        metrics: Metrics,
        store: StateStore | None = None,
        cost: CostTracker | None = None,
    ) -> Governor:
        return Governor(
            settings,
            clock=self.clock,
            client=client,
            metrics=metrics,
            store=store,
            on_tick=self.reports.append,
            cost=cost,
        )

    async def admin(self, method: str, path: str, **kw: Any) -> Any:
        async with httpx.AsyncClient(base_url=self.server.admin_url) as c:
            r = await c.request(method, path, **kw)
            r.raise_for_status()
            return r.json() if r.content else None

    async def writes(self, name: str | None = None) -> list[dict[str, Any]]:
        """Mutating API calls Governor made (optionally for one endpoint)."""
        calls = await self.admin("GET", "/calls")
        return [
            c
            for c in calls
            if c["method"] in ("PUT", "POST", "DELETE")
            and c.get("user") == BOT.name
            and (name is None or str(c.get("endpoint", "")).endswith(f"/{name}"))
        ]

    def scaling(self, name: str) -> tuple[int, int]:
        s = self.platform.snapshot()["endpoints"][f"{NS}/{name}"]
        return s["min_replica"], s["max_replica"]

    async def run_ticks(self, gov: Governor, n: int, *, step: float = 15.0) -> None:
        for _ in range(n):
            self.clock.advance(step)
            await gov.tick()

    def jump(self, t: float) -> None:
        """Move virtual time to `t` and step the emulated world there at once (no tick)."""
        self.clock.set(t)
        self.platform.advance_to(t)

    async def tick_at(self, gov: Governor, t: float) -> TickReport:
        """Jump to `t` and run one Governor tick there; returns its report."""
        self.jump(t)
        return await gov.tick()

    async def human(self, method: str, path: str, **kw: Any) -> httpx.Response:
        """A person's call to the management API (HUMAN_TOKEN), e.g. pausing an endpoint."""
        async with httpx.AsyncClient(
            base_url=self.server.base_url, headers={"Authorization": f"Bearer {HUMAN_TOKEN}"}
        ) as c:
            r = await c.request(method, path, **kw)
            r.raise_for_status()
            return r

    def entries(self, name: str) -> list[Any]:
        """Every `TickEntry` recorded for endpoint `name`, oldest first."""
        key = f"{NS}/{name}"
        return [e for r in self.reports for e in r.entries if e.decision.key == key]

    async def scrape_metrics(self, gov: Governor) -> dict[tuple[str, frozenset[Any]], float]:
        """Governor's `/metrics` as served over loopback HTTP, as {(name, labels): value}."""
        return await scrape_metrics(gov.metrics, gov.health, self.clock)


async def scrape_metrics(
    metrics: Metrics, health: Health, clock: Any
) -> dict[tuple[str, frozenset[Any]], float]:
    """Serve `metrics` on a loopback port, GET /metrics and parse it with prometheus-client."""
    from prometheus_client.parser import text_string_to_metric_families

    srv = MetricsServer(create_app(metrics, health, clock), host="127.0.0.1", port=0)
    await srv.start()
    try:
        async with httpx.AsyncClient() as c:
            r = await c.get(f"http://127.0.0.1:{srv.port}/metrics")
            r.raise_for_status()
    finally:
        await srv.stop()
    out: dict[tuple[str, frozenset[Any]], float] = {}
    for fam in text_string_to_metric_families(r.text):
        for smp in fam.samples:
            out[(smp.name, frozenset(smp.labels.items()))] = smp.value
    return out


def metric(
    scraped: dict[tuple[str, frozenset[Any]], float], name: str, **labels: str
) -> float | None:
    """One sample of a scraped exposition (None if absent)."""
    return scraped.get((name, frozenset(labels.items())))


@contextlib.asynccontextmanager
async def make_world(tmp_path: Path, start: float = T0) -> AsyncIterator[World]:
    """A `World` whose virtual clock and platform start at `start` (epoch seconds)."""
    clock = VirtualClock(start)
    platform = Platform(start=start, seed=3)
    platform.add_namespace(NS)  # the tokens' organisation, before any endpoint exists in it
    async with EmulatorServer(
        platform, clock=clock, tokens={TOKEN: BOT, HUMAN_TOKEN: HUMAN}, tick_s=0.05
    ) as srv:
        yield World(platform=platform, clock=clock, server=srv, tmp=tmp_path)


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    async with make_world(tmp_path) as w:
        yield w


__all__ = [
    "HUMAN_TOKEN",
    "NS",
    "TOKEN",
    "Constant",
    "World",
    "endpoint_body",
    "make_world",
    "metric",
    "scrape_metrics",
]
