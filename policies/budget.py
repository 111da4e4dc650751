"""Budget caps: a degrade ladder driven by the cost ledger's spend and forecast.

The loop gives the policy the worst budget level among the budgets that cover the endpoint
(`view.spend`, computed by `controller.cost.budget.budget_status` from the ledger):

- `ok`: no opinion; if Governor paused the endpoint for budget, propose `running` again (the
  period was reset or the cap raised) - reason `budget_reset`.
- `alert` (forecast >= alert x cap): no opinion, reason `budget_alert` (metrics and logs alert).
- `degrade` (forecast >= degrade x cap): constraint: ceiling `degrade_ceiling` and a shorter
  scale-to-zero timeout `degrade_scale_to_zero_timeout_min` - reason `budget_degrade`.
- `hard` (spend >= hard x cap): pause the endpoint unless `protected`, which instead gets the
  ceiling `protected_ceiling` - reasons `budget_exhausted`, `budget_exhausted_protected`.

Hysteresis: the forecast projects the *current* replicas, so the degrade step's own lower ceiling
can pull the forecast back under the degrade line, which would lift the ceiling, raise the forecast
again, and so on every other tick. Once degraded, the endpoint therefore stays degraded while the
level is at least `alert`, until the forecast is back under the alert line or a new period starts
(spend went down). The policy memory (`degraded_spend`) remembers it, across restarts.

Unknown spend (an instance without a price) is treated by the ledger as at least `alert`, never
as "fine".
"""

from __future__ import annotations

from dataclasses import replace
from typing import ClassVar

from pydantic import BaseModel, ConfigDict, Field

from controller.platform.models import EndpointState
from policies.base import EndpointView, Proposal, ProposalKind

__all__ = ["BudgetParams", "BudgetPolicy"]

OK, ALERT, DEGRADE, HARD = 0, 1, 2, 3


class BudgetParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    degrade_ceiling: int | None = Field(
        1, ge=1, le=1000, description="Ceiling applied at the degrade step (None: unchanged)."
    )
    degrade_scale_to_zero_timeout_min: int | None = Field(
        5, ge=1, le=1440, description="Scale-to-zero timeout at the degrade step (None: unchanged)."
    )
    protected: bool = Field(False, description="Never paused by a budget; capped instead.")
    protected_ceiling: int = Field(
        1, ge=1, le=1000, description="Ceiling of a protected endpoint at the hard cap."
    )


class BudgetPolicy:
    name: ClassVar[str] = "budget"
    Params: ClassVar[type[BaseModel]] = BudgetParams

    def __init__(self, params: BaseModel) -> None:
        assert isinstance(params, BudgetParams)
        self.params = params

    def _says(self, reason: str, message: str, **kw: object) -> Proposal:
        kind = ProposalKind.CONSTRAINT if kw else ProposalKind.NO_OPINION
        return Proposal(policy=self.name, kind=kind, reason=reason, message=message, **kw)  # type: ignore[arg-type]

    def propose(self, view: EndpointView, now: float) -> Proposal:
        s = view.spend
        p = self.params
        if s is None:
            return self._says("no_budget", "no budget covers this endpoint")
        fig = (
            f"{s.scope} {s.period}: spend ${s.spend_usd:.2f}"
            if s.spend_usd is not None
            else f"{s.scope} {s.period}: spend unknown"
        )
        fig += f", forecast ${s.forecast_usd:.2f}" if s.forecast_usd is not None else ""
        fig += f" of ${s.cap_usd:.2f}"
        ours = (view.paused_by_governor or "").startswith(f"{self.name}:")
        if view.endpoint.state is EndpointState.PAUSED and ours and s.level < HARD:
            return self._with(
                self._says(
                    "budget_reset", f"{fig}: below the hard cap again; resume", state="running"
                ),
                {},
            )
        if s.level >= HARD:
            if p.protected:
                return self._says(
                    "budget_exhausted_protected",
                    f"{fig}: cap reached; protected, ceiling {p.protected_ceiling}",
                    ceiling=p.protected_ceiling,
                )
            return self._says("budget_exhausted", f"{fig}: cap reached; pause", state="paused")
        held = view.memory.get("degraded_spend")
        if held is not None and (s.spend_usd is None or s.spend_usd < float(held)):
            held = None  # spend went down (a new period) or is unknown
        if s.level >= DEGRADE or (held is not None and s.level >= ALERT):
            why = (
                "forecast over the degrade line"
                if s.level >= DEGRADE
                else "degraded until the forecast is back under the alert line"
            )
            kw: dict[str, object] = {}
            if p.degrade_ceiling is not None:
                kw["ceiling"] = p.degrade_ceiling
            if p.degrade_scale_to_zero_timeout_min is not None:
                kw["scale_to_zero_timeout_min"] = p.degrade_scale_to_zero_timeout_min
            # Remember the spend when the degrade began (unknown spend: nothing to hold on to).
            start = s.spend_usd if held is None else float(held)
            mem: dict[str, object] = {} if start is None else {"degraded_spend": start}
            return self._with(self._says("budget_degrade", f"{fig}: {why}", **kw), mem)
        if s.level >= ALERT:
            return self._with(
                self._says("budget_alert", f"{fig}: forecast over the alert line"), {}
            )
        return self._with(self._says("budget_ok", fig), {})

    @staticmethod
    def _with(proposal: Proposal, memory: dict[str, object]) -> Proposal:
        return replace(proposal, memory=memory)
