"""The daemon's side of right-sizing: when to evaluate, and the opt-in apply path with rollback.

The evaluation, replaying the endpoint's recorded traffic once per candidate instance, belongs to
the backtest (`controller.backtest.rightsize.evaluate_endpoint`); the command line hands it in as
`evaluator` and it runs in a worker thread, one endpoint at a time, so a replay never stalls a
tick. Before it starts, the model's size is read from the Hub's model API (`hub`, a
`controller.platform.hub.HubClient`, unless `model_memory_gb` is configured) on the loop, and
handed in: the evaluation stays I/O-free and falls back to the feed when the Hub cannot tell.
Its `Recommendation` is logged, stored (for `governor plan`) and exported as
`governor_rightsize_saving_dollars_per_month{namespace,endpoint}`.

With the policy's `apply: true`, a `change` recommendation is applied, one step per tick, every
step logged and counted (`governor_rightsize_actions_total{action}`):

1. **start**, only inside a maintenance window, with the endpoint `running` on the instance the
   recommendation was made for, and `min_change_interval_s` after the last change or rollback.
   Quota for the new instance is read first (`GET /provider/{namespace}`); unknown or short, no
   update. Then `PUT compute.instanceType/instanceSize`; under `loop.dry_run` it is only logged.
2. **updating**: watched until the endpoint runs on the new instance. `updateFailed` / `failed`,
   or not running within `update_timeout_s`: roll back.
3. **probation** for `probation_s` once it runs: the live attainment estimated from the recorded
   minutes since (`live_attainment`) below the SLO rolls back; otherwise the change is confirmed.
4. **rollback**: `PUT` the old instance back, watched until it runs again.

The phase is persisted in the state file after every step, so a restart resumes it rather than
issuing the update twice; a step whose PUT failed is retried on a later tick. The endpoint's
`capacity_per_replica`, when configured, is put in force scaled to the new instance (the
capacity the replay assumed) as a settings override while it runs on it. Probation judges the
new instance against the service time measured on the old one, scaled as the replay scaled it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import TYPE_CHECKING, Any

import structlog

from controller.daemon.autopilot import live_attainment
from controller.daemon.replays import OneReplay, instance_of
from controller.daemon.store import StateStore
from controller.errors import GovernorError
from controller.platform.hub import HubClient, HubSize
from controller.platform.models import AnyEndpoint, EndpointState
from policies.right_sizing import RightSizingParams, in_maintenance, params_from

if TYPE_CHECKING:
    from controller.daemon.loop import Governor

__all__ = ["Evaluator", "RightsizeRunner", "SizingState", "instance_of", "quota_allows"]

log = structlog.get_logger("governor.rightsize")
S = EndpointState

# (key, endpoint settings, recorded minutes, slo_target memory, right_sizing memory, *, instance,
# at, hub) -> a Recommendation (policies.right_sizing) or None; `hub` is the model's size read
# from the Hub before the replay starts (`controller.platform.hub`), or None
Evaluator = Callable[..., Any]


@dataclass
class SizingState:
    """Right-sizing's record for one endpoint (persisted in the store)."""

    last_run_at: float | None = None
    last: str = ""  # the last recommendation's explanation
    action: str = ""  # its action: change | keep
    best: str | None = None
    made_for: str | None = None  # the instance the recommendation was made for
    saving_month_usd: float = 0.0
    capacity: dict[str, int] = field(default_factory=dict)  # instance -> replayed capacity
    service: dict[str, float] = field(default_factory=dict)  # instance -> replayed service time
    base_instance: str | None = None  # the instance of the first evaluation
    expected_service_s: float | None = None  # a request's mean time on the new instance
    phase: str = "idle"  # idle | updating | probation | rolling_back
    from_instance: str | None = None
    to_instance: str | None = None
    started_at: float | None = None
    running_at: float | None = None
    last_change_at: float | None = None
    history: list[str] = field(default_factory=list)


def quota_allows(
    provider: dict[str, Any], ep: AnyEndpoint, target: str, *, replicas: int
) -> tuple[bool, str]:
    """Whether the namespace's quota for `target` holds `replicas` of it, from a
    `GET /provider/{namespace}` answer; unknown quota is not enough."""
    vendor, itype, isize = target.split("/")
    region = ep.provider.region
    for v in provider.get("vendors") or []:
        if v.get("name") != vendor:
            continue
        for r in v.get("regions") or []:
            if region and r.get("name") not in (None, region):
                continue
            for c in r.get("computes") or []:
                if c.get("instanceType") != itype or c.get("instanceSize") != isize:
                    continue
                q = c.get("quota")
                try:
                    per = int(c["numAccelerators"])
                    free = int(q["maxAccelerators"]) - int(q["usedAccelerators"])
                except (KeyError, TypeError, ValueError):
                    return False, f"quota for {target} is not stated by the provider route"
                if ep.compute.instance_type == itype:
                    # one group: the endpoint's own accelerators are freed by the move
                    free += ep.status.target_replica * _accelerators(provider, ep)
                need = replicas * per
                if need > free:
                    return False, f"quota for {target}: {need} accelerators needed, {free} free"
                return True, f"quota for {target}: {need} needed, {free} free"
    return False, f"{target} is not offered in {vendor}/{region}"


def _accelerators(provider: dict[str, Any], ep: AnyEndpoint) -> int:
    for v in provider.get("vendors") or []:
        for r in v.get("regions") or []:
            for c in r.get("computes") or []:
                if (
                    c.get("instanceType") == ep.compute.instance_type
                    and c.get("instanceSize") == ep.compute.instance_size
                ):
                    try:
                        return int(c["numAccelerators"])
                    except (KeyError, TypeError, ValueError):
                        return 0
    return 0


class RightsizeRunner:
    def __init__(
        self, *, store: StateStore | None, evaluator: Evaluator, hub: HubClient | None = None
    ) -> None:
        self.store = store
        self.evaluator = evaluator
        self.hub = hub
        self.state: dict[str, SizingState] = {}
        if store is not None:
            for key, data in store.load_rightsize().items():
                try:
                    self.state[key] = SizingState(**json.loads(data))
                except (TypeError, ValueError) as exc:
                    log.warning("rightsize_row_unreadable", endpoint=key, error=str(exc))
        self._replay = OneReplay(log, "rightsize_replay_failed")

    # -- records ------------------------------------------------------------------------------

    def _save(self, key: str) -> None:
        if self.store is not None:
            self.store.save_rightsize(key, json.dumps(asdict(self.state[key])))

    def _note(self, gov: Governor, key: str, action: str, message: str, now: float) -> None:
        st = self.state.setdefault(key, SizingState())
        st.history = [*st.history, f"{now:.0f} {action}: {message}"][-20:]
        self._save(key)
        gov.metrics.rightsize_actions.labels(action).inc()
        log.info("rightsize", endpoint=key, action=action, why=message)

    def _capacity_override(self, gov: Governor, ep: AnyEndpoint) -> None:
        """A configured `capacity_per_replica` was stated for the instance the endpoint ran on
        when first evaluated; on another instance the replay's capacity for it is put in force
        (a settings override), and taken out again when the endpoint is back."""
        st = self.state.get(ep.key)
        raw = gov.settings.endpoint_settings(ep.namespace or "", ep.name, ep.tags)
        inst = instance_of(ep)
        want = None
        if st is not None and raw.capacity_per_replica is not None and inst != st.base_instance:
            want = st.capacity.get(inst)
        over = dict(gov.overrides.get(ep.key) or {})
        if want is None:
            over.pop("capacity_per_replica", None)
        else:
            over["capacity_per_replica"] = want
        if over:
            gov.overrides[ep.key] = over
        else:
            gov.overrides.pop(ep.key, None)

    # -- the tick -----------------------------------------------------------------------------

    async def step(self, gov: Governor, managed: Sequence[AnyEndpoint], now: float) -> None:
        """Once per tick: take a finished evaluation, advance each apply, start the next one."""
        self._harvest(gov, now)
        running: list[str] = []
        for ep in managed:
            params = params_from(gov.endpoint_settings(ep).policies)
            if params is None:
                continue
            running.append(ep.key)
            try:
                await self._advance(gov, ep, params, now)
            except GovernorError as exc:  # one endpoint's failed call never stops the others
                self._note(gov, ep.key, "error", f"{type(exc).__name__}: {exc}", now)
        if self._replay.idle:
            await self._start_next(gov, managed, now)
        for ep in managed:
            self._capacity_override(gov, ep)
        self._export(gov, running)

    def _export(self, gov: Governor, running: Sequence[str]) -> None:
        """The saving per evaluated endpoint, and 0 for one running the policy but not evaluated
        yet (so a dashboard shows every endpoint right-sizing looks at)."""
        g = gov.metrics.rightsize_saving
        for key in {*self.state, *running}:
            st = self.state.get(key)
            ns, _, name = key.partition("/")
            saving = st.saving_month_usd if st is not None and st.action == "change" else 0.0
            g.labels(ns, name).set(saving)

    def _harvest(self, gov: Governor, now: float) -> None:
        done = self._replay.take()
        if done is None:
            return
        key, rec = done
        if rec is None:
            return
        st = self.state.setdefault(key, SizingState())
        st.last, st.action, st.best = rec.explain(), rec.action, rec.best
        st.made_for, st.saving_month_usd = rec.current, rec.saving_month_usd
        st.capacity = {e.instance: e.concurrency for e in rec.evaluations}
        st.service = {e.instance: e.service_s for e in rec.evaluations if e.service_s > 0}
        if st.base_instance is None:
            st.base_instance = rec.current
        self._note(gov, key, "recommend" if rec.action == "change" else "keep", rec.explain(), now)

    async def _model_size(self, ep: AnyEndpoint, params: RightSizingParams) -> HubSize | None:
        """The model's size from the Hub, unless configured or there is no Hub client; a
        failure is a size of None with its reason (logged once per evaluation), never raised."""
        if self.hub is None or params.model_memory_gb is not None:
            return None
        got = await self.hub.model_size(ep.model.repository, ep.model.revision)
        if got.weights_gb is None:
            log.info("rightsize_model_size_unknown", endpoint=ep.key, why=got.reason)
        return got

    async def _start_next(self, gov: Governor, managed: Sequence[AnyEndpoint], now: float) -> None:
        if self.store is None:
            return
        for ep in managed:
            es = gov.endpoint_settings(ep)
            params = params_from(es.policies)
            if params is None:
                continue
            st = self.state.get(ep.key)
            if st is not None and st.phase != "idle":
                continue
            if (
                st is not None
                and st.last_run_at is not None
                and now - st.last_run_at < params.interval_s
            ):
                continue
            rows = self.store.demand(ep.key, since=now - params.history_days * 86400.0)
            if sum(1 for r in rows if r.requests > 0) < params.min_busy_minutes:
                continue
            mem = gov.memory.get(ep.key)
            pm = mem.policy_memory if mem else {}
            slo_mem, rs_mem = dict(pm.get("slo_target", {})), dict(pm.get("right_sizing", {}))
            self.state.setdefault(ep.key, SizingState()).last_run_at = now
            self._save(ep.key)
            inst = instance_of(ep)
            size = await self._model_size(ep, params)
            self._replay.start(
                ep.key,
                lambda es=es, rows=rows, k=ep.key, a=slo_mem, b=rs_mem, i=inst, h=size: (
                    self.evaluator(k, es, rows, a, b, instance=i, at=now, hub=h)
                ),
            )
            return

    async def wait(self) -> None:
        """Wait for an evaluation in flight (tests, shutdown)."""
        await self._replay.wait()

    # -- the apply path -----------------------------------------------------------------------

    async def _advance(
        self, gov: Governor, ep: AnyEndpoint, params: RightSizingParams, now: float
    ) -> None:
        st = self.state.get(ep.key)
        if st is None:
            return
        if st.phase == "idle":
            await self._maybe_start(gov, ep, st, params, now)
        elif st.phase == "updating":
            await self._watch_update(gov, ep, st, params, now)
        elif st.phase == "probation":
            await self._probation(gov, ep, st, params, now)
        elif st.phase == "rolling_back":
            await self._watch_rollback(gov, ep, st, now)

    async def _maybe_start(
        self, gov: Governor, ep: AnyEndpoint, st: SizingState, p: RightSizingParams, now: float
    ) -> None:
        if not p.apply or st.action != "change" or st.best is None:
            return
        cur = instance_of(ep)
        why: str | None = None
        if st.made_for != cur:
            why = f"the recommendation was made for {st.made_for}, the endpoint runs {cur}"
        elif ep.state is not S.RUNNING:
            why = f"the endpoint is {ep.state.value}, not running"
        elif st.last_change_at is not None and now - st.last_change_at < p.min_change_interval_s:
            why = "min_change_interval_s since the last change has not passed"
        elif not in_maintenance(p, now):
            return  # the usual case: wait for the window, quietly
        if why is not None:
            if st.history and st.history[-1].endswith(why):
                return
            self._note(gov, ep.key, "skipped", why, now)
            return
        provider = await gov.client.get_provider(ep.namespace or "")
        ok, qmsg = quota_allows(provider, ep, st.best, replicas=max(1, ep.status.target_replica))
        if not ok:
            self._note(gov, ep.key, "skipped", qmsg, now)
            st.last_change_at = now  # not retried before the interval: quota rarely frees itself
            self._save(ep.key)
            return
        if gov.actuator.dry_run:
            self._note(gov, ep.key, "dry_run", f"would update {cur} -> {st.best} ({qmsg})", now)
            st.last_change_at = now
            self._save(ep.key)
            return
        st.phase, st.from_instance, st.to_instance = "updating", cur, st.best
        st.expected_service_s = self._expected_service(gov, ep.key, st, cur, st.best, now)
        st.started_at, st.running_at = now, None
        self._save(ep.key)  # before the call: a restart finds the step and re-checks it
        await self._put(gov, ep, st.best)
        self._note(gov, ep.key, "apply", f"update {cur} -> {st.best} ({qmsg})", now)

    def _expected_service(
        self, gov: Governor, key: str, st: SizingState, cur: str, new: str, now: float
    ) -> float | None:
        """The service time measured on the current instance (slo_target's learnt mean, else the
        median of the last hour's per-minute mean latency), scaled as the replay scaled it for
        the new one; the replay's own figure without a measurement."""
        mem = gov.memory.get(key)
        measured = mem.policy_memory.get("slo_target", {}).get("service_s") if mem else None
        if not measured and self.store is not None:
            lat = sorted(
                v
                for r in self.store.demand(key, since=now - 3600.0)
                if (v := r.mean_latency_s) is not None and r.requests >= 1
            )
            measured = lat[len(lat) // 2] if lat else None
        s_cur, s_new = st.service.get(cur), st.service.get(new)
        if measured and s_cur and s_new:
            return float(measured) * s_new / s_cur
        return s_new

    async def _put(self, gov: Governor, ep: AnyEndpoint, instance: str) -> None:
        _, itype, isize = instance.split("/")
        got = await gov.client.update_instance(
            ep.namespace or "", ep.name, instance_type=itype, instance_size=isize
        )
        mem = gov.memory.get(ep.key)
        if mem is not None:  # Governor's own write: not a person's change
            gov.memory[ep.key] = replace(mem, last_known_update=got.status.updated_at.timestamp())

    async def _watch_update(
        self, gov: Governor, ep: AnyEndpoint, st: SizingState, p: RightSizingParams, now: float
    ) -> None:
        assert st.to_instance is not None
        assert st.started_at is not None
        cur = instance_of(ep)
        if cur != st.to_instance and ep.state is not S.UPDATING:
            # the PUT never landed (a failed call, a restart before it): issue it again
            await self._put(gov, ep, st.to_instance)
            self._note(gov, ep.key, "apply", f"update {cur} -> {st.to_instance} (again)", now)
            return
        if ep.state in (S.UPDATE_FAILED, S.FAILED):
            await self._rollback(
                gov, ep, st, f"the new instance failed to start ({ep.state.value})", now
            )
        elif ep.state is S.RUNNING and cur == st.to_instance:
            st.phase, st.running_at = "probation", now
            self._note(
                gov, ep.key, "running", f"running on {cur}; probation {p.probation_s:g}s", now
            )
        elif now - st.started_at > p.update_timeout_s:
            await self._rollback(
                gov, ep, st, f"not running on {st.to_instance} within {p.update_timeout_s:g}s", now
            )

    async def _probation(
        self, gov: Governor, ep: AnyEndpoint, st: SizingState, p: RightSizingParams, now: float
    ) -> None:
        assert st.running_at is not None
        if ep.state in (S.UPDATE_FAILED, S.FAILED):
            await self._rollback(gov, ep, st, f"the new instance is {ep.state.value}", now)
            return
        if now - st.running_at < p.probation_s:
            return
        es = gov.endpoint_settings(ep)
        # what a request should take on the new instance, as the replay assumed it
        service = st.expected_service_s
        if not service:
            mem = gov.memory.get(ep.key)
            service = mem.policy_memory.get("slo_target", {}).get("service_s") if mem else None
        rows = self.store.demand(ep.key, since=st.running_at) if self.store is not None else []
        live = (
            live_attainment(rows, service_s=float(service), queue_delay_s=es.slo.queue_delay_s)
            if service
            else None
        )
        if live is not None and live < es.slo.attainment:
            await self._rollback(
                gov,
                ep,
                st,
                f"live attainment {100 * live:.2f}% over the probation is below the SLO's "
                f"{100 * es.slo.attainment:g}%",
                now,
            )
            return
        said = (
            "no served request to judge by"
            if live is None
            else f"live attainment {100 * live:.2f}%"
        )
        st.phase, st.last_change_at = "idle", now
        st.action, st.best, st.saving_month_usd = "keep", None, 0.0
        self._note(gov, ep.key, "confirmed", f"{st.to_instance} kept after probation ({said})", now)

    async def _rollback(
        self, gov: Governor, ep: AnyEndpoint, st: SizingState, why: str, now: float
    ) -> None:
        assert st.from_instance is not None
        st.phase, st.last_change_at = "rolling_back", now
        st.action, st.best, st.saving_month_usd = "keep", None, 0.0
        self._save(ep.key)
        await self._put(gov, ep, st.from_instance)
        self._note(gov, ep.key, "rollback", f"{why}; back to {st.from_instance}", now)

    async def _watch_rollback(
        self, gov: Governor, ep: AnyEndpoint, st: SizingState, now: float
    ) -> None:
        assert st.from_instance is not None
        cur = instance_of(ep)
        if cur != st.from_instance and ep.state is not S.UPDATING:
            await self._put(gov, ep, st.from_instance)
            self._note(gov, ep.key, "rollback", f"back to {st.from_instance} (again)", now)
        elif cur == st.from_instance and ep.state is S.RUNNING:
            st.phase = "idle"
            st.last_change_at = now
            self._note(gov, ep.key, "rolled_back", f"running on {cur} again", now)
