"""The daemon's side of the autopilot: when to tune, putting adoptions in force, reverting them.

The tuning itself, replaying an endpoint's recorded demand through the simulator over a bounded
candidate set, belongs to the backtest (`controller.backtest.autopilot.plan_endpoint`). The daemon
sits below the backtest, so the command line hands that function in as `planner`. It runs in a
worker thread, one endpoint at a time, so a replay of days never stalls a tick.

Per managed endpoint that runs `slo_target`, every `autopilot.interval_s`:
1. the planner replays the last `autopilot.history_days` of recorded minutes over the candidates
   within `autopilot.max_step` grid steps of the value in force;
2. its `Adoption` (adopt or keep, with every candidate's cost and attainment) is logged, counted
   on `/metrics` (`governor_autopilot_decisions_total{action}`), stored, and shown by
   `governor plan`. An adoption becomes the endpoint's settings override (`Governor.overrides`);
3. once `autopilot.revert_after_s` of minutes have been recorded since an adoption, the live
   attainment estimated from them (`live_attainment`) is checked against the SLO. Below it, the
   previous value is restored (a `revert`), and the endpoint is not tuned again for an interval.

Nothing runs unless `autopilot.enabled`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import structlog

from controller.daemon.replays import OneReplay, instance_of
from controller.daemon.store import DemandMinute, StateStore
from controller.platform.models import AnyEndpoint

if TYPE_CHECKING:
    from controller.daemon.loop import Governor
    from controller.settings import AutopilotSettings

__all__ = ["AutopilotRunner", "Planner", "live_attainment", "override_for"]

log = structlog.get_logger("governor.autopilot")

# (key, endpoint settings, recorded minutes, slo_target memory, *, instance, at, max_step)
# -> an Adoption-like object (key, at, action, safety_from, safety_to, reason, explain()) or None
Planner = Callable[..., Any]


def override_for(safety: float) -> dict[str, Any]:
    """The per-endpoint settings override that puts `slo_target` `safety` in force."""
    return {"policies": {"slo_target": {"safety": safety}}}


def live_attainment(
    rows: Sequence[DemandMinute], *, service_s: float, queue_delay_s: float
) -> float | None:
    """Share of the requests served in minutes whose mean latency stayed within the service time
    plus the SLO's delay: a coarse live estimate of attainment (the feed reports latency, not
    queueing delay). None without served requests."""
    total = sum(r.requests for r in rows if r.mean_latency_s is not None)
    if total <= 0:
        return None
    bad = sum(
        r.requests
        for r in rows
        if (v := r.mean_latency_s) is not None and v > service_s + queue_delay_s
    )
    return 1.0 - bad / total


@dataclass
class InForce:
    """What the autopilot has in force for one endpoint (persisted in the store)."""

    safety: float | None = None  # None: the configured value
    previous: float | None = None
    adopted_at: float | None = None
    last_run_at: float | None = None
    last: str = ""  # the last explanation, for `plan`
    history: list[str] = field(default_factory=list)


class AutopilotRunner:
    def __init__(self, settings: AutopilotSettings, *, store: StateStore, planner: Planner) -> None:
        self.settings = settings
        self.store = store
        self.planner = planner
        self.state: dict[str, InForce] = {}
        for key, data in store.load_autopilot().items():
            try:
                self.state[key] = InForce(**json.loads(data))
            except (TypeError, ValueError) as exc:
                log.warning("autopilot_row_unreadable", endpoint=key, error=str(exc))
        self._replay = OneReplay(log, "autopilot_replay_failed")

    def overrides(self) -> dict[str, dict[str, Any]]:
        return {k: override_for(s.safety) for k, s in self.state.items() if s.safety is not None}

    def _save(self, key: str) -> None:
        self.store.save_autopilot(key, json.dumps(asdict(self.state[key])))

    def _record(self, gov: Governor, key: str, action: str, message: str, now: float) -> None:
        st = self.state.setdefault(key, InForce())
        st.last = message
        st.history = [*st.history, f"{now:.0f} {message}"][-20:]
        self._save(key)
        gov.metrics.autopilot_decisions.labels(action).inc()
        log.info("autopilot", endpoint=key, action=action, why=message)

    def step(self, gov: Governor, managed: Sequence[AnyEndpoint], now: float) -> None:
        """Once per tick: take a finished replay, check the guardrail, start the next replay."""
        if not self.settings.enabled:
            return
        self._harvest(gov, now)
        for ep in managed:
            self._check_revert(gov, ep, now)
        if self._replay.idle:
            self._start_next(gov, managed, now)
        gov.overrides.update(self.overrides())
        for key, st in self.state.items():
            if st.safety is None:
                gov.overrides.pop(key, None)

    def _harvest(self, gov: Governor, now: float) -> None:
        done = self._replay.take()
        if done is None:
            return
        key, adoption = done
        if adoption is None:
            return
        st = self.state.setdefault(key, InForce())
        if adoption.action == "adopt":
            st.previous = st.safety if st.safety is not None else adoption.safety_from
            st.safety = adoption.safety_to
            st.adopted_at = now
        self._record(gov, key, adoption.action, adoption.explain(), now)

    def _check_revert(self, gov: Governor, ep: AnyEndpoint, now: float) -> None:
        st = self.state.get(ep.key)
        if st is None or st.adopted_at is None or st.safety is None:
            return
        if now - st.adopted_at < self.settings.revert_after_s:
            return
        es = gov.endpoint_settings(ep)
        mem = gov.memory.get(ep.key)
        service = mem.policy_memory.get("slo_target", {}).get("service_s") if mem else None
        if not service:
            return
        rows = self.store.demand(ep.key, since=st.adopted_at)
        live = live_attainment(rows, service_s=float(service), queue_delay_s=es.slo.queue_delay_s)
        if live is None:
            return
        if live < es.slo.attainment:
            msg = (
                f"autopilot revert: safety {st.safety:g} -> {st.previous:g}; live attainment "
                f"{100 * live:.2f}% since the adoption is below the SLO's "
                f"{100 * es.slo.attainment:g}%"
            )
            st.safety, st.previous = st.previous, None
            st.last_run_at = now  # not tuned again for an interval
            st.adopted_at = None
            self._record(gov, ep.key, "revert", msg, now)
        else:
            st.adopted_at = None  # confirmed: the guardrail has done its check
            self._save(ep.key)

    def _start_next(self, gov: Governor, managed: Sequence[AnyEndpoint], now: float) -> None:
        a = self.settings
        for ep in managed:
            st = self.state.get(ep.key)
            if (
                st is not None
                and st.last_run_at is not None
                and now - st.last_run_at < a.interval_s
            ):
                continue
            es = gov.endpoint_settings(ep)
            if "slo_target" not in es.policies:
                continue
            rows = self.store.demand(ep.key, since=now - a.history_days * 86400.0)
            if sum(1 for r in rows if r.requests > 0) < a.min_busy_minutes:
                continue
            mem = gov.memory.get(ep.key)
            pmem = dict(mem.policy_memory.get("slo_target", {})) if mem else {}
            instance = instance_of(ep)
            self.state.setdefault(ep.key, InForce()).last_run_at = now
            self._save(ep.key)
            self._replay.start(
                ep.key,
                lambda es=es, rows=rows, pmem=pmem, key=ep.key, inst=instance: self.planner(
                    key, es, rows, pmem, instance=inst, at=now, max_step=a.max_step
                ),
            )
            return

    async def wait(self) -> None:
        """Wait for a replay in flight (tests, shutdown)."""
        await self._replay.wait()
