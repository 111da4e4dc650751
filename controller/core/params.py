"""The decision core's per-endpoint parameters.

They live with the core (not with the config loader) so the core imports nothing that reads files;
`controller.settings` merges `defaults` and the matching rules into one of these per endpoint.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from controller.platform.presets import AUTO, PRESET_CHOICES
from controller.platform.recipes import Recipe, SignalName

__all__ = ["SLO", "EndpointSettings", "apply_override"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True, allow_inf_nan=False)


class SLO(_Strict):
    """The service objective: this share of requests waits at most this long before service.

    Demand policies derive their targets from it (`slo_target` sizes the replicas so that the
    queueing model's miss probability stays inside the budget); the autopilot scores candidates
    against it, and the backtest scores runs with it.
    """

    queue_delay_ms: float = Field(
        1000.0, gt=0, le=3_600_000, description="Longest acceptable queueing delay (ms)."
    )
    attainment: float = Field(
        0.99, gt=0, le=1, description="Share of requests that must wait at most queue_delay_ms."
    )

    @property
    def queue_delay_s(self) -> float:
        return self.queue_delay_ms / 1000.0


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
    slo: SLO = Field(default_factory=SLO, description="The endpoint's service objective.")
    capacity_per_replica: float | None = Field(
        None,
        gt=0,
        le=100_000,
        description="Requests one replica serves at once (the engine's batch width). Unset: read "
        "from the engine's env in the API (MAX_BATCH_SIZE, ...), else learnt online.",
    )
    cold_start_s: float | None = Field(
        None,
        ge=0,
        le=86_400,
        description="Seconds from a replica's start to serving. Unset: learnt from starts seen.",
    )
    policies: dict[str, dict[str, Any]] = Field(
        default_factory=lambda: {"slo_target": {}},
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

    feed_preset: str = Field(
        AUTO,
        description="How the endpoint's feed is read: auto (detected from the families present), "
        "custom (scrape.mapping), or a preset: " + ", ".join(PRESET_CHOICES[2:]) + ".",
    )
    feed_recipes: dict[SignalName, Recipe] = Field(
        default_factory=dict,
        description="Per-signal recipes replacing the preset's: signal -> alternatives, each a "
        "list of series (a name, or {name, match, scale, collapse}); see docs/signals.md.",
    )

    feed_source: Literal["platform", "engine"] = Field(
        "platform",
        description="Where the load is read: platform (the API's open-metrics route) or engine "
        "(GET <status.url><engine_metrics_path> with the token: one replica's engine metrics, "
        "its counts scaled by the ready replicas; docs/signals.md, 'Engine-native scraping').",
    )
    engine_metrics_path: str = Field(
        "/metrics",
        pattern=r"^/[A-Za-z0-9_.~/-]{0,200}$",
        description="The engine's metrics path under the endpoint URL (not documented by the "
        "platform; /metrics for TGI, vLLM, TEI, SGLang, llama.cpp).",
    )

    @field_validator("feed_preset")
    @classmethod
    def _preset(cls, v: str) -> str:
        if v not in PRESET_CHOICES:
            raise ValueError(f"unknown preset {v!r}; one of {', '.join(PRESET_CHOICES)}")
        return v

    @model_validator(mode="after")
    def _bounds(self) -> EndpointSettings:
        if self.floor > self.ceiling:
            raise ValueError(f"floor ({self.floor}) must be <= ceiling ({self.ceiling})")
        return self


def apply_override(es: EndpointSettings, override: dict[str, Any]) -> EndpointSettings:
    """`es` with a partial settings dict merged over it; policy parameters merge key by key (as
    config rules do). Raises pydantic's ValidationError for a bad override."""
    data = es.model_dump()
    for k, v in override.items():
        if k == "policies" and isinstance(v, dict):
            pols = dict(data["policies"])
            for name, params in v.items():
                pols[name] = {**pols.get(name, {}), **(params or {})}
            data["policies"] = pols
        elif k in ("slo", "feed_recipes") and isinstance(v, dict):
            data[k] = {**data[k], **v}
        else:
            data[k] = v
    return EndpointSettings.model_validate(data)
