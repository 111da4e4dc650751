"""Pydantic models of the Inference Endpoints API objects (see the API contract in docs/api.md).

They tolerate unknown fields (`extra="allow"`) because the platform adds fields without notice, and
they keep the wire names (camelCase) as aliases so a model dumps back to exactly the JSON the API
uses. The client and the emulator share them, which is what keeps the two in step.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

__all__ = [
    "Compute",
    "Endpoint",
    "EndpointState",
    "ModelSpec",
    "Provider",
    "Scaling",
    "Status",
    "UserRef",
    "parse_timestamp",
]


class EndpointState(StrEnum):
    PENDING = "pending"
    INITIALIZING = "initializing"
    UPDATING = "updating"
    UPDATE_FAILED = "updateFailed"
    RUNNING = "running"
    PAUSED = "paused"
    FAILED = "failed"
    SCALED_TO_ZERO = "scaledToZero"


# States in which replicas are billed and in which a metrics-driven decision makes sense.
BILLED_STATES = frozenset({EndpointState.INITIALIZING, EndpointState.RUNNING})


class _Wire(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)

    def wire(self) -> dict[str, Any]:
        """The JSON object as the API writes it (camelCase keys, unknown fields kept)."""
        return self.model_dump(by_alias=True, mode="json")


def parse_timestamp(value: str) -> datetime:
    """RFC 3339 with 0-9 fractional digits and `Z`; Python wants at most 6 digits."""
    s = value.strip()
    if s.endswith(("Z", "z")):
        s = s[:-1] + "+00:00"
    if "." in s:
        head, rest = s.split(".", 1)
        digits = ""
        i = 0
        while i < len(rest) and rest[i].isdigit():
            digits += rest[i]
            i += 1
        s = f"{head}.{(digits + '000000')[:6]}{rest[i:]}"
    return datetime.fromisoformat(s)


class Provider(_Wire):
    vendor: str
    region: str


class Scaling(_Wire):
    min_replica: int = Field(alias="minReplica", ge=0)
    max_replica: int = Field(alias="maxReplica", ge=0)
    scale_to_zero_timeout: int | None = Field(default=None, alias="scaleToZeroTimeout")
    metric: str | None = None
    measure: dict[str, float | None] | None = None


class Compute(_Wire):
    id: str | None = None
    accelerator: str
    instance_type: str = Field(alias="instanceType")
    instance_size: str = Field(alias="instanceSize")
    scaling: Scaling


class ModelSpec(_Wire):
    repository: str
    framework: str | None = None
    revision: str | None = None
    task: str | None = None
    image: dict[str, Any] = Field(default_factory=lambda: {"huggingface": {}})
    env: dict[str, str] | None = None
    secrets: dict[str, str | None] | None = None


class UserRef(_Wire):
    id: str
    name: str


class Status(_Wire):
    created_at: datetime = Field(alias="createdAt")
    created_by: UserRef | None = Field(default=None, alias="createdBy")
    updated_at: datetime = Field(alias="updatedAt")
    updated_by: UserRef | None = Field(default=None, alias="updatedBy")
    private: Any = None
    state: EndpointState
    message: str | None = None
    url: str | None = None
    ready_replica: int = Field(default=0, alias="readyReplica")
    target_replica: int = Field(default=0, alias="targetReplica")
    error_message: str | None = Field(default=None, alias="errorMessage")

    @field_validator("created_at", "updated_at", mode="before")
    @classmethod
    def _ts(cls, v: Any) -> Any:
        return parse_timestamp(v) if isinstance(v, str) else v


class Endpoint(_Wire):
    """One endpoint as `GET /endpoint/{namespace}/{name}` returns it.

    The object has no namespace field; the client sets `namespace` from the request path (it is
    excluded from `wire()`).
    """

    name: str
    type: str = "protected"
    account_id: str | None = Field(default=None, alias="accountId")
    health_route: str | None = Field(default="/health", alias="healthRoute")
    tags: list[str] = Field(default_factory=list)
    provider: Provider
    compute: Compute
    model: ModelSpec
    status: Status
    namespace: str | None = Field(default=None, exclude=True)

    @property
    def key(self) -> str:
        """`namespace/name`: the identity used in logs, metrics and the state store."""
        return f"{self.namespace}/{self.name}"

    @property
    def state(self) -> EndpointState:
        return self.status.state
