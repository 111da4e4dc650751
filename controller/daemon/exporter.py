"""Governor's own observability: Prometheus metrics, `/healthz`, `/readyz`.

Metrics live in an injected `CollectorRegistry` (tests build a fresh one). Label values come from
fixed sets (actions, results, reasons, feed error reasons) so cardinality stays bounded.
Per-endpoint gauges are produced by a collector from the latest tick's snapshot, so an
endpoint that stops being managed leaves no stale series behind.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from controller import __version__
from controller.clock import Clock
from controller.serving import LoopServer

if TYPE_CHECKING:
    from controller.cost.ledger import CostReport

__all__ = [
    "RIGHTSIZE_ACTIONS",
    "CostCollector",
    "EndpointGauges",
    "Health",
    "Metrics",
    "MetricsServer",
    "create_app",
]

# The `action` values of `governor_rightsize_actions_total` (controller.daemon.rightsize).
RIGHTSIZE_ACTIONS = (
    "recommend",
    "keep",
    "apply",
    "dry_run",
    "running",
    "confirmed",
    "rollback",
    "rolled_back",
    "skipped",
    "error",
)


@dataclass(slots=True)
class EndpointGauges:
    namespace: str
    name: str
    current: int | None = None
    ready: int | None = None
    desired: int | None = None
    metrics_age_s: float | None = None
    stale: bool = False
    # The signals the decision read (`EndpointWindow.readings`), the source of each derived one
    # (signal -> source), and the feed preset; empty/None when the tick had no usable sample.
    signals: dict[str, float] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)
    preset: str | None = None


@dataclass(slots=True)
class Health:
    """Loop liveness and readiness as seen by the probes, in the loop clock's time base.

    Alive: ticks are being attempted (a tick that fails because the API is down still proves the
    loop runs; restarting the process would not fix the API). Ready: the last tick saw the account,
    or fewer than `unready_after` ticks in a row failed, and the token was not rejected. The probes
    only read these fields, so they never wait on a tick.
    """

    tick_interval_s: float
    unready_after: int = 3
    started_at: float | None = None
    last_tick_at: float | None = None
    last_attempt_at: float | None = None
    ticks: int = 0
    failed_in_a_row: int = 0
    last_error: str | None = None
    token_rejected: bool = False
    stopping: bool = False

    def alive(self, now: float) -> tuple[bool, str]:
        grace = 3 * self.tick_interval_s + 60
        ref = self.last_attempt_at or self.last_tick_at or self.started_at
        if ref is None:
            return False, "loop not started"
        if now - ref > grace:
            return False, f"no tick completed for {now - ref:.0f}s (limit {grace:.0f}s)"
        return True, "ok"

    def succeeded(self, now: float) -> None:
        self.last_tick_at = now
        self.ticks += 1
        self.failed_in_a_row = 0
        self.last_error = None
        self.token_rejected = False

    def failed(self, why: str, *, auth: bool = False) -> None:
        self.failed_in_a_row += 1
        self.last_error = why
        self.token_rejected = auth

    def ready(self) -> tuple[bool, str]:
        if self.stopping:
            return False, "stopping"
        if self.token_rejected:
            return False, f"token rejected: {self.last_error}"
        if self.failed_in_a_row >= self.unready_after:
            return False, f"{self.failed_in_a_row} ticks in a row failed: {self.last_error}"
        if self.ticks == 0:
            if self.last_error is None:
                return False, "no tick yet"
            return False, f"no successful tick yet: {self.last_error}"
        return True, "ok" if not self.failed_in_a_row else f"last tick failed: {self.last_error}"


class _EndpointCollector(Collector):
    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def collect(self) -> Iterator[GaugeMetricFamily]:
        reps = GaugeMetricFamily(
            "governor_endpoint_replicas",
            "Replicas per managed endpoint: current (platform target), ready, desired (Governor).",
            labels=["namespace", "endpoint", "kind"],
        )
        age = GaugeMetricFamily(
            "governor_endpoint_metrics_age_seconds",
            "Age of the newest usable metrics sample per managed endpoint.",
            labels=["namespace", "endpoint"],
        )
        stale = GaugeMetricFamily(
            "governor_endpoint_stale",
            "1 when the endpoint's metrics were unusable at the last tick (no action taken).",
            labels=["namespace", "endpoint"],
        )
        signal = GaugeMetricFamily(
            "governor_endpoint_signal",
            "Each managed endpoint's load signals as Governor read them at the last tick "
            "(utilisation in percent, rates per second, latency in seconds).",
            labels=["namespace", "endpoint", "signal"],
        )
        source = GaugeMetricFamily(
            "governor_endpoint_signal_source",
            "1 for the source each signal was read from (e.g. in_flight: pending or littles_law).",
            labels=["namespace", "endpoint", "signal", "source"],
        )
        preset = GaugeMetricFamily(
            "governor_endpoint_preset_info",
            "1 for the feed preset Governor read the endpoint's latest feed with.",
            labels=["namespace", "endpoint", "preset"],
        )
        for g in self.metrics.endpoints.values():
            lbl = [g.namespace, g.name]
            for kind, val in (("current", g.current), ("ready", g.ready), ("desired", g.desired)):
                if val is not None:
                    reps.add_metric([*lbl, kind], val)
            if g.metrics_age_s is not None:
                age.add_metric(lbl, g.metrics_age_s)
            stale.add_metric(lbl, 1.0 if g.stale else 0.0)
            for name, val in g.signals.items():
                signal.add_metric([*lbl, name], val)
            for name, src in g.sources.items():
                source.add_metric([*lbl, name, src], 1.0)
            preset.add_metric([*lbl, g.preset or "none"], 1.0)
        yield reps
        yield age
        yield stale
        yield signal
        yield source
        yield preset


class CostCollector(Collector):
    """Cost, budget and quota gauges from the cost tracker's latest report (see docs/cost.md).

    Label sets are fixed per metric; a figure that is unknown (an instance without a price) is
    left out rather than exported as zero. Register with `registry.register(CostCollector(f))`
    where `f()` returns the latest `CostReport` or None before the first tick.
    """

    def __init__(self, source: Callable[[], CostReport | None]) -> None:
        self.source = source

    def collect(self) -> Iterator[GaugeMetricFamily]:
        ep_lbl = ["namespace", "endpoint"]
        fams = {
            "rate": GaugeMetricFamily(
                "governor_cost_rate_usd_per_hour",
                "Billed replicas x hourly rate, now.",
                labels=ep_lbl,
            ),
            "today": GaugeMetricFamily(
                "governor_spend_today_usd", "Recorded spend today (ledger).", labels=ep_lbl
            ),
            "month": GaugeMetricFamily(
                "governor_spend_month_usd", "Recorded spend this month (ledger).", labels=ep_lbl
            ),
            "fday": GaugeMetricFamily(
                "governor_forecast_day_usd", "Forecast spend at the end of today.", labels=ep_lbl
            ),
            "fmonth": GaugeMetricFamily(
                "governor_forecast_month_usd",
                "Forecast spend at the end of this month.",
                labels=ep_lbl,
            ),
            "est": GaugeMetricFamily(
                "governor_ledger_estimated_seconds",
                "Seconds of this month's ledger that are estimates (Governor was not observing).",
                labels=ep_lbl,
            ),
        }
        b_lbl = ["scope", "period"]
        budget = GaugeMetricFamily("governor_budget_usd", "Budget cap.", labels=b_lbl)
        b_spend = GaugeMetricFamily(
            "governor_budget_spend_usd", "Recorded spend in the budget's period.", labels=b_lbl
        )
        ratio = GaugeMetricFamily(
            "governor_budget_use_ratio", "Forecast / cap for the period.", labels=b_lbl
        )
        level = GaugeMetricFamily(
            "governor_budget_level",
            "Budget ladder step: 0 ok, 1 alert, 2 degrade, 3 hard cap.",
            labels=b_lbl,
        )
        q_lbl = ["namespace", "vendor", "accelerator"]
        q_used = GaugeMetricFamily(
            "governor_quota_used_accelerators", "Accelerators held (platform rules).", labels=q_lbl
        )
        q_lim = GaugeMetricFamily(
            "governor_quota_limit_accelerators", "Configured quota limit.", labels=q_lbl
        )
        unknown = GaugeMetricFamily(
            "governor_cost_unknown_instances", "Instances seen that have no known price."
        )
        pricing = GaugeMetricFamily(
            "governor_pricing_table_info",
            "Version of the pricing table in use.",
            labels=["version"],
        )
        rep = self.source()
        if rep is not None:
            for e in rep.endpoints:
                lbl = [e.namespace, e.name]
                for k, v in (
                    ("rate", e.rate_usd_per_hour),
                    ("today", e.today_usd),
                    ("month", e.month_usd),
                    ("fday", e.forecast_day_usd),
                    ("fmonth", e.forecast_month_usd),
                    ("est", e.estimated_s),
                ):
                    if v is not None:
                        fams[k].add_metric(lbl, v)
            for b in rep.budgets:
                lbl = [b.scope, b.period]
                budget.add_metric(lbl, b.cap_usd)
                level.add_metric(lbl, int(b.level))
                if b.spend_usd is not None:
                    b_spend.add_metric(lbl, b.spend_usd)
                if b.use_ratio is not None:
                    ratio.add_metric(lbl, b.use_ratio)
            for q in rep.quota:
                lbl = [q.namespace, q.vendor, q.accelerator]
                q_used.add_metric(lbl, q.used)
                if q.limit is not None:
                    q_lim.add_metric(lbl, q.limit)
            unknown.add_metric([], rep.unknown_instances)
            pricing.add_metric([rep.pricing_version], 1)
        yield from fams.values()
        yield from (budget, b_spend, ratio, level, q_used, q_lim, unknown, pricing)


@dataclass
class Metrics:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)
    endpoints: dict[str, EndpointGauges] = field(default_factory=dict)

    def __post_init__(self) -> None:
        r = self.registry
        self._leading: bool | None = None
        self.ticks = Counter("governor_ticks", "Reconcile ticks by result.", ["result"], registry=r)
        self.tick_duration = Histogram(
            "governor_tick_duration_seconds",
            "Wall time of one tick (discover, scrape, decide, act).",
            buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 15, 30, 60),
            registry=r,
        )
        self.tick_errors = Counter(
            "governor_tick_errors",
            "Failed ticks by reason: auth (the token was rejected for every namespace), discovery "
            "(no namespace could be listed), internal.",
            ["reason"],
            registry=r,
        )
        self.tick_skipped = Counter(
            "governor_tick_skipped",
            "Work left undone because a tick ran out of its budget (loop.tick_budget_s), by phase.",
            ["phase"],
            registry=r,
        )
        self.last_tick = Gauge(
            "governor_last_tick_timestamp_seconds", "When the last tick completed.", registry=r
        )
        self.scrape_errors = Counter(
            "governor_scrape_errors", "Unusable metrics feeds by reason.", ["reason"], registry=r
        )
        self.decisions = Counter(
            "governor_decisions",
            "Decisions by winning policy, action and reason.",
            ["policy", "action", "reason"],
            registry=r,
        )
        self.autopilot_decisions = Counter(
            "governor_autopilot_decisions",
            "Autopilot decisions by action: adopt (a candidate met the SLO on the replayed "
            "history for less), keep, revert (live attainment fell below the SLO).",
            ["action"],
            registry=r,
        )
        self.rightsize_actions = Counter(
            "governor_rightsize_actions",
            "Right-sizing steps by action: recommend, keep, apply, dry_run, running, confirmed, "
            "rollback, rolled_back, skipped, error.",
            ["action"],
            registry=r,
        )
        # every action from the start at 0, so that the first rollback is a rise that
        # increase() sees (alert GovernorRightsizeRolledBack), not a new series
        for action in RIGHTSIZE_ACTIONS:
            self.rightsize_actions.labels(action)
        self.rightsize_saving = Gauge(
            "governor_rightsize_saving_dollars_per_month",
            "Monthly saving of the recommended instance over the current one, from replaying the "
            "endpoint's recorded traffic (0 when the current one is kept or not evaluated yet).",
            ["namespace", "endpoint"],
            registry=r,
        )
        self.actions = Counter(
            "governor_actions",
            "Actions attempted by action, result and error class.",
            ["action", "result", "error"],
            registry=r,
        )
        self.api_calls = Counter(
            "governor_api_calls",
            "Management API HTTP attempts by route and outcome.",
            ["route", "outcome"],
            registry=r,
        )
        # (route, outcome) -> its child: one per feed GET, so not `labels()`'s lookup each time.
        self._api_call_children: dict[tuple[str, str], Any] = {}
        self.discovery_errors = Counter(
            "governor_discovery_errors",
            "Failed endpoint listings by error class.",
            ["error"],
            registry=r,
        )
        self.managed = Gauge(
            "governor_managed_endpoints", "Endpoints Governor manages now.", registry=r
        )
        self.dry_run = Gauge("governor_dry_run", "1 when Governor only logs decisions.", registry=r)
        self.leader = Gauge(
            "governor_leader",
            "1 when this replica leads (may write to the API and the ledger), 0 on a standby.",
            ["identity"],
            registry=r,
        )
        self.lease_holder = Gauge(
            "governor_lease_holder_info",
            "The replica holding the election Lease as this replica last read it (value 1).",
            ["holder"],
            registry=r,
        )
        self.leadership_changes = Counter(
            "governor_leadership_changes",
            "Times this replica gained or lost the leadership.",
            ["change"],
            registry=r,
        )
        for change in ("gained", "lost"):
            self.leadership_changes.labels(change)
        self.config_reloads = Counter(
            "governor_config_reloads",
            "Config reloads (SIGHUP or a changed file) by result: success, failure (the new file "
            "was invalid or changed a restart-only setting; the running config was kept).",
            ["result"],
            registry=r,
        )
        for result in ("success", "failure"):
            self.config_reloads.labels(result)
        self.config_last_ok = Gauge(
            "governor_config_last_reload_successful",
            "1 when the last config load (start or reload) was applied, 0 when it was rejected.",
            registry=r,
        )
        self.config_last_ok_at = Gauge(
            "governor_config_last_reload_success_timestamp_seconds",
            "When the running config was loaded (start-up or the last successful reload).",
            registry=r,
        )
        self.config_info = Gauge(
            "governor_config_info",
            "SHA-256 of the running config file's bytes (value 1; compare with sha256sum).",
            ["sha256"],
            registry=r,
        )
        Info("governor_build", "Governor version.", registry=r).info({"version": __version__})
        r.register(_EndpointCollector(self))
        self.dry_run.set(0)
        for reason in ("unavailable", "timeout", "too_large", "parse_error", "stale"):
            self.scrape_errors.labels(reason)
        for result in ("ok", "error"):
            self.ticks.labels(result)
        for reason in ("auth", "discovery", "internal"):
            self.tick_errors.labels(reason)
        for phase in ("discover", "scrape", "act"):
            self.tick_skipped.labels(phase)

    def set_leader(self, identity: str, leading: bool, holder: str | None) -> None:
        """Leadership as the election last saw it (a single daemon without election leads)."""
        prev = self._leading
        self.leader.clear()
        self.leader.labels(identity).set(1 if leading else 0)
        self.lease_holder.clear()
        if holder:
            self.lease_holder.labels(holder).set(1)
        if prev is not None and prev != leading:
            self.leadership_changes.labels("gained" if leading else "lost").inc()
        self._leading = leading

    def config_loaded(self, digest: str | None, at: float) -> None:
        """The running config, loaded at start-up (`digest` None: no file, or unreadable)."""
        self.config_last_ok.set(1)
        self.config_last_ok_at.set(at)
        self.config_info.clear()
        if digest is not None:
            self.config_info.labels(digest).set(1)

    def config_reloaded(self, ok: bool, digest: str | None, at: float) -> None:
        """A reload's outcome; a rejected one leaves the running config's hash in place."""
        self.config_reloads.labels("success" if ok else "failure").inc()
        if ok:
            self.config_loaded(digest, at)
        else:
            self.config_last_ok.set(0)

    def record_call(self, rec: Any) -> None:
        """Hook for `EndpointsClient(on_call=...)`: counts API attempts by route and outcome."""
        key = (rec.route, rec.outcome)  # both from closed sets (Route, Outcome): bounded
        child = self._api_call_children.get(key)
        if child is None:
            child = self._api_call_children[key] = self.api_calls.labels(*key)
        child.inc()


def create_app(metrics: Metrics, health: Health, clock: Clock) -> Starlette:
    async def healthz(_: Request) -> JSONResponse:
        ok, why = health.alive(clock.now())
        return JSONResponse(
            {"status": "ok" if ok else "unhealthy", "detail": why}, status_code=200 if ok else 503
        )

    async def readyz(_: Request) -> JSONResponse:
        ready, detail = health.ready()
        return JSONResponse(
            {"status": "ready" if ready else "not_ready", "detail": detail},
            status_code=200 if ready else 503,
        )

    async def metrics_ep(request: Request) -> Response:
        # The library's encoders; OpenMetrics when the scraper asks for it (Accept header).
        encoder, content_type = choose_encoder(request.headers.get("accept", ""))
        return Response(encoder(metrics.registry), headers={"Content-Type": content_type})

    return Starlette(
        routes=[
            Route("/healthz", healthz),
            Route("/readyz", readyz),
            Route("/metrics", metrics_ep),
        ]
    )


class MetricsServer(LoopServer):
    """uvicorn serving `create_app` inside the current event loop (signals stay the daemon's)."""

    def __init__(self, app: Starlette, *, host: str, port: int) -> None:
        super().__init__(app, host=host, port=port, what="metrics server", access_log=False)
