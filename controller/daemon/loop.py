"""The reconcile loop: every tick discover, scrape, decide, act — and survive any one failure.

`Governor.tick()` is one full pass and is what `governor plan` runs once. `Governor.run(stop)`
repeats it every `loop.tick_interval_s` of the injected clock until `stop` is set; the current tick
always finishes first. One endpoint's or one namespace's failure is logged, counted and skipped.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import gc
import math
import sqlite3
import time
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Protocol

import structlog

from controller.clock import Clock
from controller.core import Action, Decision, EndpointMemory, decide, defer
from controller.core.params import EndpointSettings, apply_override
from controller.cost.ledger import CostTracker
from controller.cost.pricing import PriceBook
from controller.daemon.actuator import ActionResult, Actuator, Outcome, describe
from controller.daemon.context import EndpointContext, build_contexts
from controller.daemon.exporter import EndpointGauges, Health, Metrics
from controller.daemon.sdnotify import Notifier
from controller.daemon.store import DemandMinute, DemandRecorder, StateStore, demand_history
from controller.daemon.trust import implausible
from controller.errors import ApiError, AuthError, FeedError
from controller.platform.client import EndpointsClient
from controller.platform.models import AnyEndpoint, EndpointState
from controller.platform.presets import AUTO
from controller.platform.scrape import FeedChoice, Scraper
from controller.platform.signals import FeedSample
from controller.platform.windows import WindowStore
from controller.settings import LoopSettings, Settings
from policies.base import DemandHistory, Policy
from policies.registry import build_policy

if TYPE_CHECKING:
    from controller.daemon.autopilot import AutopilotRunner
    from controller.daemon.election import LedgerHandoff
    from controller.daemon.rightsize import RightsizeRunner

__all__ = ["Governor", "TickEntry", "TickObserver", "TickReport", "tune_gc"]

_SCRAPED = frozenset({EndpointState.RUNNING, EndpointState.INITIALIZING, EndpointState.UPDATING})

log = structlog.get_logger("governor.loop")


class TickObserver(Protocol):
    """Something that learns from every tick's listing (the cost ledger, quota accounting).

    Called once per tick, after discovery and before decisions, with every endpoint listed in the
    configured namespaces (managed or not: cost is reported for all). It must not raise for bad
    data; an exception is logged and the tick goes on.
    """

    def observe(self, endpoints: Sequence[AnyEndpoint], *, now: float) -> None: ...


@dataclass(frozen=True, slots=True)
class TickEntry:
    endpoint: AnyEndpoint
    decision: Decision
    outcome: Outcome | None


@dataclass(slots=True)
class TickReport:
    at: float
    entries: list[TickEntry] = field(default_factory=list)
    unmanaged: list[str] = field(default_factory=list)
    namespace_errors: dict[str, str] = field(default_factory=dict)
    feed_errors: dict[str, str] = field(default_factory=dict)
    # Why the tick failed (None: it succeeded): "auth" or "discovery" when no namespace could be
    # listed, so Governor saw nothing of the account.
    failed: str | None = None
    # Work left undone because the tick ran out of its budget, by phase.
    skipped: dict[str, int] = field(default_factory=dict)
    # Whether this replica was the leader (acted and billed) during the tick.
    leading: bool = True

    @property
    def blind(self) -> bool:
        """True when the tick could not see the account at all (every listing failed)."""
        return self.failed is not None


class Governor:
    def __init__(
        self,
        settings: Settings,
        *,
        clock: Clock,
        client: EndpointsClient,
        metrics: Metrics | None = None,
        store: StateStore | None = None,
        on_tick: Callable[[TickReport], None] | None = None,
        observers: Sequence[TickObserver] = (),
        cost: CostTracker | None = None,
        leading: Callable[[], bool] | None = None,
    ) -> None:
        self.settings = settings
        # Whether this replica may write (leader election); without election it always may.
        self._leading = leading or (lambda: True)
        self.clock = clock
        self.client = client
        self.metrics = metrics or Metrics()
        self.store = store
        self.on_tick = on_tick
        self.observers = list(observers)
        # The cost tracker records the ledger (as an observer) and feeds budgets and quota.
        self.cost = cost
        if cost is not None and cost not in self.observers:
            self.observers.append(cost)
        self._book = PriceBook(settings.pricing.overrides)
        # How each endpoint's feed is read (its feed_preset / feed_recipes), set per scrape.
        self._feed_choices: dict[str, FeedChoice] = {}
        sc = settings.scrape
        self.scraper = Scraper(
            client,
            sc.custom_mapping,
            concurrency=sc.concurrency,
            clock=clock,
            choice=self._feed_choices.get,
            parse_deadline_s=sc.parse_deadline_s,
            parse_inline_bytes=sc.parse_inline_bytes,
        )
        self.windows = WindowStore(retention_s=settings.scrape.retention_s)
        self.actuator = Actuator(client, dry_run=settings.loop.dry_run)
        self.memory: dict[str, EndpointMemory] = store.load_memory() if store else {}
        # Per-minute demand for the autopilot, `governor tune` and `export-trace` (with a store).
        retention_days = settings.state.demand_retention_days
        self.demand = DemandRecorder() if store is not None and retention_days > 0 else None
        self._demand_pruned_at: float | None = None
        self._memory_saved_at: float | None = None  # state.memory_every_s
        # Demand rows drained from the recorder, not yet written (state.demand_every_s).
        self._held_demand: list[DemandMinute] = []
        self._demand_saved_at: float | None = None
        # Each endpoint's recorded demand at earlier periods' phase (the pre-warm's input),
        # re-read every state.forecast.refresh_s: key -> (refresh slot it was read in, history).
        self._history: dict[str, tuple[int, DemandHistory | None]] = {}
        # Per-endpoint settings overrides (`ns/name` -> a partial EndpointSettings dict), merged
        # over the config's: how the autopilot's adoptions reach the decisions.
        self.overrides: dict[str, dict[str, Any]] = {}
        # Set by the command line when `autopilot.enabled` (it needs the backtest's replay).
        self.autopilot: AutopilotRunner | None = None
        # Set by the command line (it needs the backtest's replay): right-sizing's evaluations
        # and its opt-in apply path (`controller.daemon.rightsize`).
        self.rightsize: RightsizeRunner | None = None
        self.health = Health(
            tick_interval_s=settings.loop.tick_interval_s,
            unready_after=settings.loop.unready_after_failed_ticks,
        )
        self.last: dict[str, Decision] = {}
        self._policy_cache: dict[str, list[Policy]] = {}
        # The policies of each (shared, cached) EndpointSettings object, by identity; the object
        # is kept in the value so its id cannot be reused while the entry lives.
        self._policies_of: dict[int, tuple[EndpointSettings, list[Policy]]] = {}
        # key -> (config's settings, the override merged, the result): the autopilot's override
        # merged once, not per call; valid while both inputs are the same.
        self._overridden: dict[str, tuple[EndpointSettings, dict[str, Any], EndpointSettings]] = {}
        # Who Governor acts as, learnt from its own writes' `updatedBy` and kept in the state
        # file, so a restart (or a kill -9 right after a write) does not take its writes for a
        # person's.
        self.identity: str | None = store.load_identity() if store else None
        per_min = settings.loop.max_actions_per_min
        self._bucket = float(per_min)
        self._bucket_at: float | None = None
        self.metrics.dry_run.set(1 if settings.loop.dry_run else 0)
        # Leader election's share of the identity: learn it from the Lease as a standby, publish
        # it as the leader (see daemon/election.py).
        self.learn_identity: Callable[[], str | None] | None = None
        # The last believed targetReplica per endpoint (a lowered maxReplica lags behind it).
        self._believed_target: dict[str, int] = {}
        self.on_identity: Callable[[str], None] | None = None
        # Leader election's share of the ledger: the watermark published after each leading
        # tick, the take-over from it (daemon/election.py).
        self.handoff: LedgerHandoff | None = None

    def reconfigure(self, settings: Settings) -> None:
        """Put a reloaded config in force between ticks (daemon/reload.py has already refused
        one that changes a restart-only setting). Memory, windows and identity carry over."""
        old = self.settings
        scraper = self.scraper
        if (old.scrape.mapping, old.scrape.concurrency) != (
            settings.scrape.mapping,
            settings.scrape.concurrency,
        ):
            scraper = Scraper(
                self.client,
                settings.scrape.mapping,
                concurrency=settings.scrape.concurrency,
                clock=self.clock,
            )
        self.settings = settings
        self.scraper = scraper
        self.windows.set_retention(settings.scrape.retention_s)
        self.actuator.dry_run = settings.loop.dry_run
        self.metrics.dry_run.set(1 if settings.loop.dry_run else 0)
        self.health.tick_interval_s = settings.loop.tick_interval_s
        self.health.unready_after = settings.loop.unready_after_failed_ticks
        self._bucket = min(self._bucket, float(settings.loop.max_actions_per_min))
        if self.cost is not None:
            # Budgets and per-endpoint floors are read from these settings; the gap threshold
            # follows the tick interval.
            self.cost.settings = settings
            self.cost.ledger.tick_interval_s = settings.loop.tick_interval_s
            self.cost.ledger.gap_s = settings.ledger.gap_ticks * settings.loop.tick_interval_s

    def _policies(self, es: EndpointSettings) -> list[Policy]:
        hit = self._policies_of.get(id(es))
        if hit is not None and hit[0] is es:
            return hit[1]
        sig = repr(sorted(es.policies.items()))
        pols = self._policy_cache.get(sig)
        if pols is None:
            pols = [build_policy(n, p, where=f"policies.{n}") for n, p in es.policies.items()]
            self._policy_cache[sig] = pols
        self._policies_of[id(es)] = (es, pols)
        return pols

    async def _discover(self, report: TickReport, deadline: float) -> list[AnyEndpoint]:
        found: list[AnyEndpoint] = []
        auth_failures = 0
        for i, ns in enumerate(self.settings.namespaces):
            if time.monotonic() >= deadline:
                left = len(self.settings.namespaces) - i
                self._skip(report, "discover", left)
                for rest in self.settings.namespaces[i:]:
                    report.namespace_errors[rest] = "skipped: the tick ran out of its budget"
                break
            try:
                found.extend(await self.client.list_endpoints(ns))
                for bad in self.client.invalid_items:
                    report.namespace_errors[f"{ns} (item skipped)"] = str(bad)
                    self.metrics.discovery_errors.labels("bad_item").inc()
            except ApiError as exc:
                kind = "auth" if isinstance(exc, AuthError) else type(exc).__name__
                auth_failures += kind == "auth"
                report.namespace_errors[ns] = str(exc)
                self.metrics.discovery_errors.labels(kind).inc()
                log.error("discovery_failed", namespace=ns, error=str(exc), error_class=kind)
        found = self._believable(found, report)
        listed = {k for k in report.namespace_errors if not k.endswith("(item skipped)")}
        if self.settings.namespaces and listed >= set(self.settings.namespaces):
            # Not one namespace could be listed: Governor sees nothing, which is not "all quiet".
            every_auth = auth_failures == len(self.settings.namespaces)
            report.failed = "auth" if every_auth else "discovery"
        return found

    def _believable(self, found: list[AnyEndpoint], report: TickReport) -> list[AnyEndpoint]:
        """Drop items whose numbers or times cannot be true (daemon/trust.py); count them."""
        api = self.settings.api
        now = self.clock.now()
        kept: list[AnyEndpoint] = []
        for ep in found:
            why = implausible(
                ep,
                now=now,
                max_skew_s=api.max_clock_skew_s,
                max_replicas=api.max_replicas,
                last_target=self._believed_target.get(ep.key),
            )
            if why is None:
                self._believed_target[ep.key] = ep.status.target_replica
                kept.append(ep)
                continue
            report.namespace_errors[f"{ep.key} (item skipped)"] = why
            self.metrics.discovery_errors.labels("implausible").inc()
            log.warning("endpoint_implausible", endpoint=ep.key, error=why)
        return kept

    async def _observe(
        self, endpoints: list[AnyEndpoint], report: TickReport, now: float, asked_at: float
    ) -> None:
        """Hand the listing to the observers at `now`, when it was answered (it was asked for
        at `asked_at`, the tick's start; the ledger dates changes between the two). Only the
        leader bills: a standby's ledger keeps the listing, and the leader's first tick resumes
        from its predecessor's watermark with them; the leader publishes its own after every
        tick (daemon/election.py)."""
        handoff = self.handoff
        for obs in self.observers:
            billing = obs is self.cost and handoff is not None
            try:
                if report.leading:
                    if billing:
                        handoff.before_billing()  # type: ignore[union-attr]
                    if isinstance(obs, CostTracker):
                        obs.observe(endpoints, now=now, asked_at=asked_at)
                    else:
                        obs.observe(endpoints, now=now)
                elif isinstance(obs, CostTracker):
                    obs.observe(endpoints, now=now, record=False, asked_at=asked_at)
                    if billing:
                        handoff.as_standby()  # type: ignore[union-attr]
            except Exception:
                log.exception("observer_failed", observer=type(obs).__name__)
        if report.leading and handoff is not None and self.cost is not None:
            try:
                await handoff.after_billing(now)
            except Exception:
                log.exception("ledger_watermark_failed")

    def _skip(self, report: TickReport, phase: str, n: int) -> None:
        if n > 0:
            report.skipped[phase] = report.skipped.get(phase, 0) + n
            self.metrics.tick_skipped.labels(phase).inc(n)

    async def tick(self) -> TickReport:
        started = time.perf_counter()
        t0 = time.monotonic()
        budget = self.settings.loop.budget_s
        deadline = t0 + budget
        now = self.clock.now()
        report = TickReport(at=now, leading=self._leading())
        self.health.last_attempt_at = now
        s = self.settings
        try:
            endpoints = await self._discover(report, deadline)
            if report.failed is not None:
                return self._failed_tick(report, started)
            # The listing is billed as of its answer: a slow listing (a trickled body, a loaded
            # machine) shows changes made after the tick began.
            await self._observe(endpoints, report, self.clock.now(), asked_at=now)
            managed: list[AnyEndpoint] = []
            for ep in endpoints:
                if s.is_managed(ep.namespace or "", ep.name, ep.tags):
                    managed.append(ep)
                else:
                    report.unmanaged.append(ep.key)
            # Paused and scaled-to-zero endpoints have no replicas to report: do not scrape them.
            live = [ep for ep in managed if ep.state in _SCRAPED]
            # The feeds get half the budget, so one trickling feed cannot starve every decision.
            await self._scrape(live, report, t0 + budget / 2)
            del live
            self.windows.forget_except({ep.key for ep in managed})
            for gone in set(self._history) - {ep.key for ep in managed}:
                del self._history[gone]
            # Decision time is read once, after collection, so this tick's samples count.
            decided_at = self.clock.now()
            report.entries = await self._decide_and_act(
                managed, endpoints, report, decided_at, deadline
            )
            if self.store is not None:
                if self._memory_due(now):
                    self.store.save_memory(self.memory, now=now)
                self._record_demand(now)
            if self.autopilot is not None or self.rightsize is not None:
                self.flush_demand(now)  # they read the recorded demand
            if self.autopilot is not None:
                try:
                    self.autopilot.step(self, managed, decided_at)
                except Exception:
                    log.exception("autopilot_failed")
            if self.rightsize is not None:
                try:
                    await self.rightsize.step(self, managed, decided_at)
                except Exception:
                    log.exception("rightsize_failed")
        except Exception:
            self.metrics.ticks.labels("error").inc()
            self.metrics.tick_errors.labels("internal").inc()
            self.health.failed("internal error (see the tick_failed log)")
            log.exception("tick_failed")
            raise
        finally:
            self.metrics.tick_duration.observe(time.perf_counter() - started)
        self.metrics.ticks.labels("ok").inc()
        self.metrics.last_tick.set(now)
        self.metrics.managed.set(len(managed))
        self.health.succeeded(self.clock.now())
        if self.on_tick is not None:
            self.on_tick(report)
        return report

    def _failed_tick(self, report: TickReport, started: float) -> TickReport:
        """Every listing failed: count a failed tick, keep the last gauges, tell the probes."""
        reason = report.failed or "discovery"
        self.metrics.ticks.labels("error").inc()
        self.metrics.tick_errors.labels(reason).inc()
        detail = "; ".join(f"{ns}: {err}" for ns, err in report.namespace_errors.items())
        why = (
            "the API rejected the token for every namespace"
            if reason == "auth"
            else "no namespace could be listed"
        )
        self.health.failed(f"{why} ({detail})", auth=reason == "auth")
        log.error("tick_failed", reason=reason, detail=detail)
        if self.on_tick is not None:
            self.on_tick(report)
        return report

    async def _scrape(
        self, live: Sequence[AnyEndpoint], report: TickReport, deadline: float
    ) -> None:
        """Fetch the live endpoints' feeds, but only for what is left of the tick's budget."""
        done: set[str] = set()
        ready = {ep.key: ep.status.ready_replica for ep in live}

        def collect(key: str, res: FeedSample | FeedError) -> None:
            done.add(key)
            if isinstance(res, FeedSample):
                self.windows.add(key, res)
                if self.demand is not None:
                    self.demand.add(key, res, ready=ready.get(key, 0))
            else:
                report.feed_errors[key] = f"{res.reason}: {res}"
                self.metrics.scrape_errors.labels(res.reason).inc()

        self._feed_choices.clear()
        for ep in live:
            try:
                es = self.endpoint_settings(ep)
            except ValueError:  # reported once by _decide_and_act; read with the defaults here
                continue
            engine = es.feed_source == "engine"
            if es.feed_preset != AUTO or es.feed_recipes or engine:
                url = ep.status.url
                self._feed_choices[ep.key] = FeedChoice(
                    es.feed_preset,
                    es.feed_recipes,
                    source=es.feed_source,
                    engine_url=url.rstrip("/") + es.engine_metrics_path if url else None,
                    ready=ep.status.ready_replica,
                )
        keys = [(ep.namespace or "", ep.name) for ep in live]
        try:
            async with asyncio.timeout(max(0.0, deadline - time.monotonic())):
                await self.scraper.scrape_into(keys, collect)
        except TimeoutError:
            left = [ep.key for ep in live if ep.key not in done]
            for key in left:
                # No sample this tick: the decision sees stale data and holds.
                report.feed_errors[key] = "skipped: the tick ran out of its budget"
            self._skip(report, "scrape", len(left))
            log.warning("tick_budget_exhausted", phase="scrape", skipped=len(left))

    async def _decide_and_act(
        self,
        managed: Sequence[AnyEndpoint],
        listed: Sequence[AnyEndpoint],
        report: TickReport,
        now: float,
        deadline: float = float("inf"),
    ) -> list[TickEntry]:
        s = self.settings
        entries: list[TickEntry] = []
        gauges: dict[str, EndpointGauges] = {}
        ess: dict[str, EndpointSettings] = {}
        for ep in list(managed):
            try:
                ess[ep.key] = self.endpoint_settings(ep)
            except ValueError as exc:  # check-config rules this out; never let it stop a tick
                log.error("endpoint_settings_invalid", endpoint=ep.key, error=str(exc))
        managed = [ep for ep in managed if ep.key in ess]
        in_use = {id(es) for es in ess.values()}
        for gone in [i for i in self._policies_of if i not in in_use]:
            del self._policies_of[gone]  # a replaced config's or override's settings
        book = self.cost.ledger.prices if self.cost is not None else self._book
        contexts = build_contexts(
            managed,
            listed,
            settings=s,
            endpoint_settings=ess,
            book=book,
            memory=self.memory,
            last=self.last,
            report=self.cost.latest if self.cost is not None else None,
        )
        if self.identity is None and self.learn_identity is not None:
            self.identity = self.learn_identity()
        for ep in managed:
            key = ep.key
            es = ess[key]
            self._adopt_unacked_write(ep, now)
            ctx = contexts.get(key, EndpointContext())
            window = self.windows.get(key)
            decision, mem = decide(
                ep,
                self._policies(es),
                self.memory.get(key),
                now=now,
                settings=es,
                window=window,
                feed_error=report.feed_errors.get(key),
                max_age_s=s.scrape.max_age_s,
                mode=s.loop.actuation,
                identity=self.identity,
                quota=ctx.quota,
                fleet=ctx.fleet,
                spend=ctx.spend,
                history=self._history_of(key, es, now),
            )
            outcome: Outcome | None = None
            if decision.acts and time.monotonic() >= deadline:
                # Out of budget: deciding is cheap, acting is API calls. Next tick re-decides
                # from a fresh listing.
                decision = defer(decision, "the tick ran out of its budget (loop.tick_budget_s)")
                self._skip(report, "act", 1)
            if decision.acts and not self._take_token(now):
                decision = defer(
                    decision, f"global limit of {s.loop.max_actions_per_min} actions/min reached"
                )
            if decision.acts:
                outcome = await self._act(decision, ep, mem, now)
                self.metrics.actions.labels(
                    decision.action.value, outcome.result.value, outcome.error
                ).inc()
                mem = self._after_action(self.memory.get(key, mem), decision, outcome, now)
            self.memory[key] = mem
            self.metrics.decisions.labels(
                decision.policy or "none", decision.action.value, decision.reason.value
            ).inc()
            self._log_decision(decision, outcome)
            latest = window.latest
            stale = decision.reason.value in ("stale_metrics", "no_data")
            signals, sources = window.readings(span_s=s.loop.tick_interval_s, now=now)
            gauges[key] = EndpointGauges(
                namespace=ep.namespace or "",
                name=ep.name,
                current=decision.current,
                ready=ep.status.ready_replica,
                desired=decision.desired if decision.desired is not None else None,
                metrics_age_s=(now - latest.at) if latest is not None else None,
                stale=stale,
                signals={} if stale else signals,
                sources={} if stale else sources,
                preset=latest.preset if latest is not None else None,
            )
            entries.append(TickEntry(ep, decision, outcome))
        self.metrics.endpoints = gauges
        for gone in set(self._overridden) - set(self.overrides):
            del self._overridden[gone]
        for gone in set(self.memory) - {ep.key for ep in managed}:
            # Keep memory of endpoints that vanished for one listing glitch; drop after a day.
            if now - self.memory[gone].first_seen > 86400 and gone not in gauges:
                self.memory.pop(gone, None)
        return entries

    async def _act(
        self, decision: Decision, ep: AnyEndpoint, mem: EndpointMemory, now: float
    ) -> Outcome:
        """Apply one decision; each write is recorded as Governor's own before anything can read
        it back (a kill -9 after the write, or a lost response, must not look like a person)."""
        key = decision.key
        if not self._leading():
            return Outcome(ActionResult.DRY_RUN, "standby (not the leader): " + describe(decision))
        if decision.action is Action.PAUSE and not self.actuator.dry_run:
            # Say it is Governor's pause before sending it: if the response is lost, the next
            # tick sees a paused endpoint it may resume, not a person's pause.
            why = decision.pause_reason or decision.policy or "governor"
            mem = replace(mem, paused_by_governor=why)
        if self.identity is None and not self.actuator.dry_run:
            mem = replace(mem, unacked_write=_asked(decision, now))
        self.memory[key] = mem
        self._persist(key, mem, now)

        def written(fresh: AnyEndpoint) -> None:
            cur = self.memory.get(key, mem)
            self.memory[key] = replace(
                cur, last_known_update=fresh.status.updated_at.timestamp(), unacked_write=None
            )
            by = fresh.status.updated_by
            if by is not None and by.name != self.identity:
                self._learn_identity(by.name)
            self._persist(key, self.memory[key], now)

        return await self.actuator.apply(decision, ep, on_write=written)

    def _learn_identity(self, name: str) -> None:
        self.identity = name
        if self.store is not None:
            self.store.save_identity(name)
        if self.on_identity is not None:
            self.on_identity(name)

    def _adopt_unacked_write(self, ep: AnyEndpoint, now: float) -> None:
        """A write sent before the identity was known, whose answer never came (lost, or a kill
        -9 before it arrived): if the listing shows exactly that change, made after it was sent,
        the change is Governor's own and its author is Governor's identity."""
        mem = self.memory.get(ep.key)
        if mem is None or mem.unacked_write is None:
            return
        asked = mem.unacked_write
        st = ep.status
        updated = st.updated_at.timestamp()
        after = updated >= float(asked.get("at", now)) - self.settings.api.max_clock_skew_s
        if self.identity is None and st.updated_by is not None and after and _shows(ep, asked):
            log.info("identity_learnt_from_unacknowledged_write", endpoint=ep.key)
            self._learn_identity(st.updated_by.name)
            mem = replace(mem, last_known_update=updated)
        # Either it was the write (adopted above), or something else happened since: from here
        # the usual rules (a change by another name is a person's) apply.
        self.memory[ep.key] = replace(mem, unacked_write=None)
        self._persist(ep.key, self.memory[ep.key], now)

    def _persist(self, key: str, mem: EndpointMemory, now: float) -> None:
        if self.store is not None and not self.actuator.dry_run:
            self.store.save_one(key, mem, now=now)

    def _history_of(self, key: str, es: EndpointSettings, now: float) -> DemandHistory | None:
        """The recorded demand at earlier periods' phase, for policies that forecast from it;
        read from the store every `state.forecast.refresh_s` per endpoint (staggered by key, so
        10,000 endpoints do not all query in one tick; the policy reads a held history at its
        own `now`). None without a store or recorded demand."""
        if self.store is None or self.demand is None:
            return None
        if not any(
            getattr(getattr(p, "params", None), "prewarm", False) for p in self._policies(es)
        ):
            return None
        fc = self.settings.state.forecast
        every = fc.refresh_s
        slot = math.floor((now + zlib.crc32(key.encode()) % int(every)) / every)
        cached = self._history.get(key)
        if cached is not None and cached[0] == slot:
            return cached[1]
        self.flush_demand(now)
        try:
            hist = demand_history(self.store, key, now=now, lags=fc.lags(), horizon_s=fc.horizon_s)
        except sqlite3.Error as exc:
            log.warning("demand_history_failed", endpoint=key, error=str(exc))
            hist = None
        self._history[key] = (slot, hist)
        return hist

    def _memory_due(self, now: float) -> bool:
        """Whether this tick writes the decision memory (`state.memory_every_s`; writes that
        record an action are committed on their own, whatever the cadence)."""
        every = self.settings.state.memory_every_s
        last = self._memory_saved_at
        if every > 0 and last is not None and now - last < every:
            return False
        self._memory_saved_at = now
        return True

    def _record_demand(self, now: float) -> None:
        """This tick's demand minutes to the store (held and written at most every
        `state.demand_every_s`); prune past the retention once an hour, after writing."""
        if self.demand is None or self.store is None:
            return
        self._held_demand.extend(self.demand.drain())
        prune = self._demand_pruned_at is None or now - self._demand_pruned_at >= 3600
        every = self.settings.state.demand_every_s
        last = self._demand_saved_at
        if not prune and every > 0 and last is not None and now - last < every:
            return
        self.flush_demand(now)
        if prune:
            try:
                keep_s = self.settings.state.demand_retention_days * 86400
                self.store.prune_demand(before=now - keep_s)
                self._demand_pruned_at = now
            except sqlite3.Error as exc:
                log.warning("demand_record_failed", error=str(exc))

    def flush_demand(self, now: float) -> None:
        """Write the held demand rows (`state.demand_every_s`), in the order they were drained:
        the store then holds what writing every tick would have left. Anything that reads the
        recorded demand calls it first (the forecast, autopilot, right-sizing, a replay's end)."""
        if self.store is None:
            return
        rows, self._held_demand = self._held_demand, []
        self._demand_saved_at = now
        if not rows:
            return
        try:
            self.store.record_demand(rows)
        except sqlite3.Error as exc:
            log.warning("demand_record_failed", error=str(exc))

    def endpoint_settings(self, ep: AnyEndpoint) -> EndpointSettings:
        """The config's settings for `ep`, with the autopilot's override for it merged over."""
        es = self.settings.endpoint_settings(ep.namespace or "", ep.name, ep.tags)
        over = self.overrides.get(ep.key)
        if not over:
            return es
        hit = self._overridden.get(ep.key)
        if hit is not None and hit[0] is es and hit[1] == over:
            return hit[2]
        merged = apply_override(es, over)
        self._overridden[ep.key] = (es, copy.deepcopy(over), merged)
        return merged

    def _take_token(self, now: float) -> bool:
        """Global token bucket: `max_actions_per_min` actions, refilled continuously."""
        cap = float(self.settings.loop.max_actions_per_min)
        if self._bucket_at is not None:
            self._bucket = min(cap, self._bucket + (now - self._bucket_at) * cap / 60.0)
        self._bucket_at = now
        if self._bucket < 1.0:
            return False
        self._bucket -= 1.0
        return True

    def _after_action(
        self, mem: EndpointMemory, d: Decision, outcome: Outcome, now: float
    ) -> EndpointMemory:
        if outcome.endpoint is not None:
            # Governor's own write: its updatedAt is not a person's change.
            st = outcome.endpoint.status
            mem = replace(mem, last_known_update=st.updated_at.timestamp())
            if st.updated_by is not None:
                self.identity = st.updated_by.name
        if (
            outcome.result is ActionResult.FAILED
            and outcome.error == "spec"
            and d.action is Action.PAUSE
        ):
            # Refused outright: the endpoint is not paused, by Governor or anyone.
            mem = replace(mem, paused_by_governor=None)
        if outcome.result is ActionResult.APPLIED:
            mem = replace(mem, last_action_at=now)
            if d.action is Action.PAUSE:
                mem = replace(mem, paused_by_governor=d.pause_reason or d.policy or "governor")
            elif d.action is Action.RESUME:
                mem = replace(mem, paused_by_governor=None)
        return mem

    def _log_decision(self, d: Decision, outcome: Outcome | None) -> None:
        prev = self.last.get(d.key)
        self.last[d.key] = d
        changed = prev is None or prev.signature() != d.signature()
        fields = {
            "endpoint": d.key,
            "action": d.action.value,
            "reason": d.reason.value,
            "policy": d.policy,
            "current": d.current,
            "desired": d.desired,
            "why": d.message,
        }
        if outcome is not None:
            fields["result"] = outcome.result.value
            fields["detail"] = outcome.detail
            if outcome.result is ActionResult.FAILED:
                log.warning("action_failed", **fields)
                return
        if changed or (outcome is not None and outcome.result is ActionResult.APPLIED):
            log.info("decision", **fields)
        else:
            log.debug("decision", **fields)

    async def run(
        self,
        stop: asyncio.Event,
        notifier: Notifier | None = None,
        reload: Callable[[], object] | None = None,
    ) -> None:
        """Tick until `stop` is set. A failing tick is logged and the loop goes on.

        `reload` (the `ConfigReloader.poll` of daemon/reload.py) runs before every tick, so a
        reloaded config takes effect between ticks, never in the middle of one.

        With a systemd `notifier`: READY=1 after the first tick, WATCHDOG=1 after every tick that
        returned (and while sleeping between ticks, which only a live event loop can do), so a
        tick that hangs starves the watchdog; STOPPING=1 on the way out.
        """
        self.health.started_at = self.clock.now()
        self.health.last_attempt_at = None
        keepalive = notifier.watchdog_s / 3 if notifier and notifier.watchdog_s else None
        ready_sent = False
        first = True
        while not stop.is_set():
            if reload is not None:
                try:
                    reload()
                except Exception:  # a bug in reloading must not stop the loop
                    log.exception("config_reload_crashed")
            interval = self.settings.loop.tick_interval_s
            t0 = self.clock.now()
            with contextlib.suppress(Exception):
                await self.tick()
            tune_gc(self.settings.loop, freeze=first)
            first = False
            if notifier is not None:
                status = f"ticks ok: {self.health.ticks}"
                if not ready_sent:
                    notifier.ready(status)
                    ready_sent = True
                notifier.watchdog(status)
            delay = max(0.0, interval - (self.clock.now() - t0))
            sleeper = asyncio.ensure_future(self.clock.sleep(delay))
            stopper = asyncio.ensure_future(stop.wait())
            try:
                while not (sleeper.done() or stopper.done()):
                    await asyncio.wait(
                        {sleeper, stopper}, timeout=keepalive, return_when=asyncio.FIRST_COMPLETED
                    )
                    if (
                        notifier is not None
                        and keepalive
                        and not (sleeper.done() or stopper.done())
                    ):
                        notifier.watchdog()
            finally:
                for t in (sleeper, stopper):
                    t.cancel()
        self.health.stopping = True
        self.flush_demand(self.clock.now())
        if notifier is not None:
            notifier.stopping()


def tune_gc(loop: LoopSettings, *, freeze: bool) -> None:
    """The collector for a long-running loop: `gc_young_threshold` between young collections
    and, once (`freeze`, after the first tick), the start-up heap frozen out of the scans. A tick
    allocates ~500,000 container objects at 10,000 endpoints that live until it ends; at
    CPython's 700 they were scanned in 4-8 full collections per tick."""
    _, g1, g2 = gc.get_threshold()
    gc.set_threshold(loop.gc_young_threshold, g1, g2)
    if freeze and loop.gc_freeze and gc.get_freeze_count() == 0:
        gc.collect()
        gc.freeze()


def _asked(decision: Decision, now: float) -> dict[str, Any]:
    """What a write asks for, to recognise it in a later listing."""
    if decision.action is Action.PAUSE:
        return {"at": now, "state": EndpointState.PAUSED.value}
    if decision.action is Action.RESUME:
        return {"at": now, "state": "resumed"}
    if decision.action is Action.SCALE_TO_ZERO:
        return {"at": now, "state": EndpointState.SCALED_TO_ZERO.value}
    lo, hi = decision.bounds if decision.bounds is not None else (None, None)
    return {"at": now, "min": lo, "max": hi}


def _shows(ep: AnyEndpoint, asked: Mapping[str, Any]) -> bool:
    state = asked.get("state")
    if state == "resumed":
        return ep.state is not EndpointState.PAUSED
    if state is not None:
        return ep.state.value == state
    sc = ep.compute.scaling
    return (sc.min_replica, sc.max_replica) == (asked.get("min"), asked.get("max"))
