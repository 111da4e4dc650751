"""Per-endpoint context for the policies: quota group, fleet of competitors, budget pressure.

Pure functions of one tick's listing, the price book, Governor's memory and the latest cost
report; the loop calls `build_contexts` once per tick so every endpoint of a quota group sees the
same picture (they must agree on who yields quota).

One-tick lag, by design: an endpoint's accelerator *need* comes from the previous tick's
decision (desired above current that the quota cannot cover), because this tick's demand is not
known until the policies ran.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from controller.core import Decision, EndpointMemory
from controller.core.params import EndpointSettings
from controller.cost.pricing import PriceBook
from controller.cost.quota import held_accelerators, quota_usage
from controller.platform.models import AnyEndpoint, EndpointState
from controller.settings import Settings
from policies.base import FleetMember, QuotaView, SpendView

__all__ = ["EndpointContext", "build_contexts"]


@dataclass(frozen=True, slots=True)
class EndpointContext:
    quota: QuotaView | None = None
    fleet: tuple[FleetMember, ...] = ()
    spend: SpendView | None = None


def _spend(ep: AnyEndpoint, settings: Settings, report: object | None) -> SpendView | None:
    states = {(b.scope, b.period): b for b in getattr(report, "budgets", None) or []}
    worst: SpendView | None = None
    for b in settings.budgets:
        if not b.covers(ep.namespace or "", ep.name, ep.tags):
            continue
        st = states.get((b.label, b.period))
        if st is None:
            continue
        view = SpendView(
            scope=b.label,
            period=b.period,
            level=int(st.level),
            cap_usd=st.cap_usd,
            spend_usd=st.spend_usd,
            forecast_usd=st.forecast_usd,
        )
        if worst is None or view.level > worst.level:
            worst = view
    return worst


def build_contexts(
    managed: Sequence[AnyEndpoint],
    listed: Sequence[AnyEndpoint],
    *,
    settings: Settings,
    endpoint_settings: Mapping[str, EndpointSettings],
    book: PriceBook,
    memory: Mapping[str, EndpointMemory],
    last: Mapping[str, Decision],
    report: object | None = None,
) -> dict[str, EndpointContext]:
    usage = quota_usage(listed, book)
    limits = {
        (q.namespace, q.vendor, q.accelerator): q.max_accelerators for q in settings.quota.limits
    }
    groups: dict[tuple[str, str, str], list[tuple[AnyEndpoint, int, int]]] = {}
    for ep in managed:
        found = held_accelerators(ep, book)
        if found is None:
            continue
        g, held, per = found
        groups.setdefault(g, []).append((ep, per, held))

    out: dict[str, EndpointContext] = {}
    for g, members in groups.items():
        used, limit = usage.get(g, 0), limits.get(g)
        free = None if limit is None else max(0, limit - used)
        fleet: list[FleetMember] = []
        for ep, per, held in members:
            es = endpoint_settings[ep.key]
            mem = memory.get(ep.key)
            d = last.get(ep.key)
            need = 0
            if d is not None and d.desired is not None and d.current is not None:
                need = max(0, d.desired - d.current) * per
            short = max(0, need - (free if free is not None else need))
            idle_since = None
            if mem is not None:
                idle_since = mem.policy_memory.get("pause_to_free_quota", {}).get("idle_since")
                if ep.state is EndpointState.SCALED_TO_ZERO and mem.state_since is not None:
                    idle_since = mem.state_since
            ptfq = es.policies.get("pause_to_free_quota")
            fleet.append(
                FleetMember(
                    key=ep.key,
                    priority=es.priority,
                    state=ep.state.value,
                    held_accelerators=held,
                    short_accelerators=short,
                    idle_since=idle_since,
                    reclaimable=ptfq is not None and bool(ptfq.get("arbitration", True)),
                )
            )
        members_t = tuple(fleet)
        for ep, per, held in members:
            out[ep.key] = EndpointContext(
                quota=QuotaView(
                    namespace=g[0],
                    vendor=g[1],
                    accelerator=g[2],
                    used_accelerators=used,
                    limit_accelerators=limit,
                    accelerators_per_replica=per,
                    held_accelerators=held,
                ),
                fleet=members_t,
            )
    if settings.budgets:
        for ep in managed:
            sp = _spend(ep, settings, report)
            if sp is not None:
                prev = out.get(ep.key, EndpointContext())
                out[ep.key] = EndpointContext(quota=prev.quota, fleet=prev.fleet, spend=sp)
    return out
