"""Pause idle endpoints so they stop holding GPU quota, and give way to higher priorities.

A paused endpoint holds no accelerators; a scaled-to-zero one still holds its `maxReplica` worth,
and a running one its replicas. This policy proposes `state: paused` (a constraint; a pause wins
over everything in the combiner) in two cases, and `state: running` only to undo its own pause.

**Idleness.** A scaled-to-zero endpoint has been idle since it entered that state
(`view.state_since`), unless its window shows requests or pending ones: it is waking, and a pause
then would turn the wake-up into lost requests. A running endpoint is idle on a tick when its
window shows no request and no pending request over the last `idle_probe_s`; the first such tick
is remembered as `idle_since` in the policy memory (it survives restarts; the loop also reads it
to fill `FleetMember.idle_since` for the other endpoints). Traffic, or a tick without data,
forgets it: missing data never counts as idle.

**(a) Idle reclaim** (`idle_reclaim: true`): idle for `idle_pause_after_s` -> pause. A paused
endpoint cannot wake on a request, so an endpoint whose traffic has come back after idle spells
of up to G is not paused before `recur_factor` x G (the longest of the last `recur_gaps` idle
spells that ended in traffic, kept in the policy memory as `gaps`): a batch job every 40 minutes
keeps waking from zero instead of losing each burst to a pause. `recur_factor: 0` turns it off.

**(b) Quota arbitration** (`arbitration: true` opts this endpoint in to being paused for others):
every endpoint evaluates the same rule over the same `view.fleet` (its whole quota group), so
they agree on who yields. Members short of accelerators are served in order of priority (highest
first, then key). For each, the reclaimable members of *lower* priority that are running or scaled
to zero, hold accelerators and have been idle for at least `arbitration_min_idle_s` are taken in
order (lowest priority first, then longest idle, then key) until what they hold covers the
shortfall; if all of them together cannot cover it, none is paused for that member (a pause that
does not unblock anyone is pure loss). The chosen ones propose a pause.

**(c) Resume.** Only Governor's own pauses by this policy are resumed, and never a person's
(`view.paused_by_governor` None). A paused endpoint has no traffic metrics, so "idle" can never be
seen to end. Hence:
- a `quota_arbitration` pause is undone once no higher-priority member of the group has been short
  of accelerators, and the quota has had room for this endpoint's minimum
  (max(minReplica, 1) x accelerators per replica), for `resume_calm_s` in a row: the endpoint gets
  back its ability to wake from zero on a request;
- an `idle_reclaim` pause is not undone by this policy: demand comes back through a schedule window
  with `state: running` (the schedule policy) or by hand.

Reason codes:
- `idle_reclaim`, `quota_arbitration`: pause proposed.
- `resume_own_pause`: running proposed for this policy's own arbitration pause.
- `not_idle`: serving (or not in a state that can be paused); no opinion.
- `idle`: idle, but not long enough / not needed by anyone; no opinion.
- `kept_paused`: paused by Governor and the resume rule does not hold (yet); no opinion.
- `human_pause`: paused by a person; never resumed; no opinion.
- `no_data`: no window, no sample, or no quota view where one is needed; no opinion.
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field

from controller.platform.models import EndpointState
from policies.base import EndpointView, FleetMember, Proposal, ProposalKind, State

__all__ = ["PauseToFreeQuotaParams", "PauseToFreeQuotaPolicy"]

_IDLE_RECLAIM = "idle_reclaim"
_SERVING = "serving"
_ARBITRATION = "quota_arbitration"
_PAUSABLE = frozenset({EndpointState.RUNNING.value, EndpointState.SCALED_TO_ZERO.value})


class PauseToFreeQuotaParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    idle_reclaim: bool = Field(True, description="Pause this endpoint after a long idle spell.")
    idle_pause_after_s: float = Field(
        3600.0, ge=60, le=30 * 86_400, description="Idle time before an idle-reclaim pause, s."
    )
    recur_factor: float = Field(
        1.5,
        ge=0,
        le=100,
        description="Do not idle-reclaim before this many times the longest recent idle spell "
        "that ended in traffic (0: off).",
    )
    recur_gaps: int = Field(
        8, ge=1, le=1000, description="How many recent idle spells that ended in traffic count."
    )
    idle_probe_s: float = Field(
        60.0,
        gt=0,
        le=3600,
        description="Span with no request and no pending request that makes a tick idle, s.",
    )
    arbitration: bool = Field(
        True, description="Let this endpoint be paused for higher-priority ones short of quota."
    )
    arbitration_min_idle_s: float = Field(
        300.0, ge=0, le=86_400, description="Idle time before it may be paused for another, s."
    )
    resume_calm_s: float = Field(
        600.0,
        ge=0,
        le=86_400,
        description="Time without quota pressure (and with room) before an arbitration pause is "
        "undone, s.",
    )


def _tag(reason: str) -> str:
    return f"pause_to_free_quota:{reason}"


class PauseToFreeQuotaPolicy:
    name: ClassVar[str] = "pause_to_free_quota"
    Params: ClassVar[type[BaseModel]] = PauseToFreeQuotaParams

    def __init__(self, params: BaseModel) -> None:
        assert isinstance(params, PauseToFreeQuotaParams)
        self.params = params

    def _say(
        self,
        reason: str,
        message: str,
        *,
        memory: dict[str, Any] | None = None,
        state: State | None = None,
    ) -> Proposal:
        return Proposal(
            policy=self.name,
            kind=ProposalKind.NO_OPINION if state is None else ProposalKind.CONSTRAINT,
            reason=reason,
            message=message,
            memory=memory,
            state=state,
        )

    def propose(self, view: EndpointView, now: float) -> Proposal:
        if view.endpoint.state is EndpointState.PAUSED:
            return self._paused(view, now)
        idle_since, why = self._idle_since(view, now)
        ended = why.startswith(_SERVING) or view.endpoint.state is EndpointState.INITIALIZING
        gaps = self._gaps(view, now, idle_since, ended=ended)
        memory: dict[str, Any] = {} if idle_since is None else {"idle_since": idle_since}
        if gaps:
            memory["gaps"] = gaps
        if idle_since is None:
            return self._say("no_data" if why.startswith("no ") else "not_idle", why, memory=memory)
        p = self.params
        idle_for = now - idle_since
        pause_after = max(p.idle_pause_after_s, p.recur_factor * max(gaps, default=0.0))
        if p.idle_reclaim and idle_for >= pause_after:
            return self._say(
                _IDLE_RECLAIM,
                f"idle for {idle_for:.0f}s >= {pause_after:g}s: pause to free its quota",
                memory=memory,
                state="paused",
            )
        if p.idle_reclaim and idle_for >= p.idle_pause_after_s:
            return self._say(
                "idle",
                f"idle for {idle_for:.0f}s; traffic came back after an idle spell of "
                f"{max(gaps):.0f}s before: no pause before {pause_after:g}s",
                memory=memory,
            )
        if p.arbitration:
            chosen = self._arbitrate(view, now, idle_since)
            if chosen is not None:
                return self._say(_ARBITRATION, chosen, memory=memory, state="paused")
        return self._say("idle", f"idle for {idle_for:.0f}s; no pause due", memory=memory)

    # -- idleness -----------------------------------------------------------------------------

    def _gaps(
        self, view: EndpointView, now: float, idle_since: float | None, *, ended: bool
    ) -> list[float]:
        """The recent idle spells that ended in traffic, oldest first: when traffic (or a wake
        from zero, which only traffic or a person causes) follows a remembered idle clock, that
        spell joins the list."""
        raw = view.memory.get("gaps")
        gaps = (
            [float(g) for g in raw if isinstance(g, int | float)] if isinstance(raw, list) else []
        )
        before = view.memory.get("idle_since")
        if ended and idle_since is None and isinstance(before, int | float) and now > before:
            gaps.append(now - float(before))
        return gaps[-self.params.recur_gaps :]

    def _idle_since(self, view: EndpointView, now: float) -> tuple[float | None, str]:
        state = view.endpoint.state
        remembered = view.memory.get("idle_since")
        w, span = view.window, self.params.idle_probe_s
        rate = w.request_rate(span_s=span, now=now) if w is not None else None
        pending = w.max("pending", span_s=span, now=now) if w is not None else None
        busy = (rate is not None and rate > 0) or (pending is not None and pending > 0)
        if busy and state in (EndpointState.SCALED_TO_ZERO, EndpointState.RUNNING):
            return (
                None,
                f"{_SERVING}: {rate or 0:.3g} req/s, max pending {pending or 0:g} over {span:g}s",
            )
        if state is EndpointState.SCALED_TO_ZERO:
            since = view.state_since if view.state_since is not None else remembered
            return (now if since is None else float(since)), "scaled to zero"
        if state is not EndpointState.RUNNING:
            return None, f"endpoint is {state.value}"
        if w is None or rate is None:
            return None, f"no request rate over the last {span:g}s"
        # Idleness counts within the current running spell only: an endpoint woken or resumed
        # without traffic starts a fresh idle clock.
        starts = [float(t) for t in (remembered, view.state_since) if t is not None]
        return (max(starts) if starts else now), "no traffic"

    # -- arbitration --------------------------------------------------------------------------

    def _arbitrate(self, view: EndpointView, now: float, idle_since: float) -> str | None:
        """A message if this endpoint is among those chosen to yield quota, else None."""
        p = self.params
        members = {m.key: m for m in view.fleet}
        me = members.get(view.key) or FleetMember(
            key=view.key,
            priority=view.priority,
            state=view.endpoint.state.value,
            held_accelerators=view.quota.held_accelerators if view.quota else 0,
            idle_since=idle_since,
            reclaimable=True,
        )
        members[view.key] = me
        needy = sorted(
            (m for m in members.values() if m.short_accelerators > 0),
            key=lambda m: (-m.priority, m.key),
        )
        if not needy:
            return None
        candidates = sorted(
            (
                m
                for m in members.values()
                if m.reclaimable
                and m.state in _PAUSABLE
                and m.held_accelerators > 0
                and m.idle_since is not None
                and now - m.idle_since >= p.arbitration_min_idle_s
            ),
            key=lambda m: (m.priority, m.idle_since, m.key),
        )
        taken: set[str] = set()
        spare = 0  # freed beyond earlier shortfalls
        for n in needy:
            need = n.short_accelerators - spare
            if need <= 0:
                spare = -need
                continue
            pick: list[FleetMember] = []
            for c in candidates:
                if need <= 0:
                    break
                if c.key in taken or c.priority >= n.priority:
                    continue
                pick.append(c)
                need -= c.held_accelerators
            if need > 0:
                continue  # cannot unblock this one: pause nobody for it (spare stays unused)
            spare = -need
            taken.update(c.key for c in pick)
            if view.key in taken:
                return (
                    f"{n.key} (priority {n.priority}) is short of {n.short_accelerators} "
                    f"accelerator(s); this endpoint (priority {me.priority}, idle "
                    f"{now - idle_since:.0f}s) yields its {me.held_accelerators}"
                )
        return None

    # -- paused -------------------------------------------------------------------------------

    def _paused(self, view: EndpointView, now: float) -> Proposal:
        # Forget any idle clock: a resumed endpoint starts a fresh one.
        by = view.paused_by_governor
        if by is None:
            return self._say(
                "human_pause", "paused by a person: never resumed by Governor", memory={}
            )
        if by == _tag(_IDLE_RECLAIM):
            return self._say(
                "kept_paused",
                "paused for idleness: resumes by a schedule window with state running, or by hand",
                memory={},
            )
        if by != _tag(_ARBITRATION):
            return self._say(
                "kept_paused", f"paused by {by}: not this policy's pause to undo", memory={}
            )
        q = view.quota
        if q is None or q.free_accelerators is None:
            return self._say(
                "no_data", "paused for quota; no quota view to judge a resume", memory={}
            )
        pressing = [
            m
            for m in view.fleet
            if m.key != view.key and m.priority > view.priority and m.short_accelerators > 0
        ]
        need = max(view.endpoint.compute.scaling.min_replica, 1) * q.accelerators_per_replica
        if pressing or q.free_accelerators < need:
            why = (
                f"{pressing[0].key} (priority {pressing[0].priority}) still short"
                if pressing
                else f"{q.free_accelerators} accelerator(s) free, {need} needed"
            )
            return self._say("kept_paused", f"paused for quota: {why}", memory={})
        calm_since = float(view.memory.get("calm_since", now))
        calm = now - calm_since
        if calm < self.params.resume_calm_s:
            return self._say(
                "kept_paused",
                f"paused for quota; pressure gone and room for {need} for {calm:.0f}s of "
                f"{self.params.resume_calm_s:g}s",
                memory={"calm_since": calm_since},
            )
        return self._say(
            "resume_own_pause",
            f"paused for quota by Governor; no pressure and room for {need} accelerator(s) "
            f"for {calm:.0f}s: resume",
            memory={},
            state="running",
        )
