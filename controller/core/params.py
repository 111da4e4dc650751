"""The decision core's per-endpoint parameters.

They live with the core (not with the config loader) so the core imports nothing that reads files;
`controller.settings` merges `defaults` and the matching rules into one of these per endpoint.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = ["EndpointSettings"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True, allow_inf_nan=False)


class EndpointSettings(_Strict):
    """Per-endpoint behaviour; `defaults` and each matching rule are merged in order."""

    floor: int = Field(1, ge=0, le=1000, description="Never fewer replicas than this.")
    ceiling: int = Field(10, ge=1, le=1000, description="Never more replicas than this.")
    scale_up_stabilization_s: float = Field(
        0.0, ge=0, le=3600, description="Scale up to the lowest recommendation of this window."
    )
    scale_down_stabilization_s: float = Field(
        300.0,
        ge=0,
        le=86400,
        description="Scale down only to the highest recommendation of this window.",
    )
    policies: dict[str, dict[str, Any]] = Field(
        default_factory=lambda: {"pending_requests": {}},
        description="Policy name -> parameters (validated by the policy's Params model).",
    )
    priority: int = Field(0, ge=-1000, le=1000, description="Higher wins quota arbitration.")
    max_step_up: int | None = Field(None, ge=1, description="Most replicas added per action.")
    max_step_down: int | None = Field(None, ge=1, description="Most replicas removed per action.")
    min_action_interval_s: float = Field(
        0.0, ge=0, le=86400, description="No scaling action sooner than this after the last one."
    )
    human_backoff_s: float = Field(
        1800.0,
        ge=0,
        le=7 * 86400,
        description="Hands off an endpoint for this long after someone else changed it.",
    )

    @model_validator(mode="after")
    def _bounds(self) -> EndpointSettings:
        if self.floor > self.ceiling:
            raise ValueError(f"floor ({self.floor}) must be <= ceiling ({self.ceiling})")
        return self
