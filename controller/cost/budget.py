"""Budget levels: spend and forecast against a cap, mapped to the alert/degrade/hard ladder."""

from __future__ import annotations

from enum import IntEnum
from typing import Protocol

import structlog

from controller.platform.models import EndpointState

log = structlog.get_logger("governor.cost")

S = EndpointState

__all__ = ["BudgetLevel", "budget_status"]

# -- budgets ------------------------------------------------------------------------------------


class BudgetLevel(IntEnum):
    OK = 0
    ALERT = 1  # forecast >= alert x cap: metric and log only
    DEGRADE = 2  # forecast >= degrade x cap: lower ceilings, shorter idle timeouts
    HARD = 3  # spend >= hard x cap: pause non-protected endpoints


class _ThresholdsLike(Protocol):
    alert: float
    degrade: float
    hard: float


def budget_status(
    spend: float | None, forecast: float | None, cap: float, thresholds: _ThresholdsLike
) -> BudgetLevel:
    """The ladder step for one budget. Unknown figures (None) never relax a level: an unknown
    spend or forecast is treated as at least ALERT, so a missing price cannot hide a blow-out."""
    if cap <= 0:
        raise ValueError(f"cap must be > 0, got {cap}")
    if spend is not None and spend >= thresholds.hard * cap:
        return BudgetLevel.HARD
    if forecast is None or spend is None:
        return BudgetLevel.ALERT
    ratio = max(forecast, spend) / cap
    if ratio >= thresholds.degrade:
        return BudgetLevel.DEGRADE
    if ratio >= thresholds.alert:
        return BudgetLevel.ALERT
    return BudgetLevel.OK
