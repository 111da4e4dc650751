"""Pydantic models of the Inference Endpoints API objects (see the API contract in docs/api.md).

They tolerate unknown fields (`extra="allow"`) because the platform adds fields without notice, and
they keep the wire names (camelCase) as aliases so a model dumps back to exactly the JSON the API
uses. The client and the emulator share them, which is what keeps the two in step.

A listing is the exception. At 10,000 endpoints the models built from one `GET /endpoint/{ns}`
held ~90 MiB (eight pydantic models, their field sets, extras and strings per endpoint) and cost
~2 s of CPU per tick, every tick (`benchmarks/results/overhead-16.md`). So the client reads a
listing into `ListedEndpoint`: frozen slotted dataclasses with the same field names, types,
aliases, defaults and constraints as the models (unknown fields dropped, no `wire()`), validated
by one pydantic `TypeAdapter` straight from the JSON bytes (no intermediate dicts; repeated short
strings shared). `tests/test_listed.py` checks the two against each other on generated and
emulator listings, field by field and error path by error path. Code that reads an endpoint takes
either (`AnyEndpoint`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, TypeAlias

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    TypeAdapter,
    field_validator,
    model_validator,
)

__all__ = [
    "AnyEndpoint",
    "Compute",
    "Endpoint",
    "EndpointState",
    "ListedCompute",
    "ListedEndpoint",
    "ListedModel",
    "ListedProvider",
    "ListedScaling",
    "ListedStatus",
    "ListedUser",
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

    @model_validator(mode="before")
    @classmethod
    def _not_from_the_body(cls, data: Any) -> Any:
        """The path gives the namespace: a body's own `namespace` (any type) is not read, as the
        listing's records do not read it."""
        if isinstance(data, dict) and "namespace" in data:
            data = {k: v for k, v in data.items() if k != "namespace"}
        return data

    @property
    def key(self) -> str:
        """`namespace/name`: the identity used in logs, metrics and the state store."""
        return f"{self.namespace}/{self.name}"

    @property
    def state(self) -> EndpointState:
        return self.status.state


# ------------------------------------------------------------------------------- listing records
# Field for field the models above (same order, so the first error of a bad item is the same
# field); kw_only keeps that order with defaults in between.


def _ts_or_value(v: Any) -> Any:
    return parse_timestamp(v) if isinstance(v, str) else v


_Timestamp = Annotated[datetime, BeforeValidator(_ts_or_value)]
_record = dataclass(slots=True, frozen=True, kw_only=True)


@_record
class ListedProvider:
    vendor: str
    region: str


@_record
class ListedScaling:
    min_replica: Annotated[int, Field(alias="minReplica", ge=0)]
    max_replica: Annotated[int, Field(alias="maxReplica", ge=0)]
    scale_to_zero_timeout: Annotated[int | None, Field(alias="scaleToZeroTimeout")] = None
    metric: str | None = None
    measure: dict[str, float | None] | None = None


@_record
class ListedCompute:
    id: str | None = None
    accelerator: str
    instance_type: Annotated[str, Field(alias="instanceType")]
    instance_size: Annotated[str, Field(alias="instanceSize")]
    scaling: ListedScaling


def _default_image() -> dict[str, Any]:
    return {"huggingface": {}}


@_record
class ListedModel:
    repository: str
    framework: str | None = None
    revision: str | None = None
    task: str | None = None
    image: dict[str, Any] = field(default_factory=_default_image)
    env: dict[str, str] | None = None
    secrets: dict[str, str | None] | None = None


@_record
class ListedUser:
    id: str
    name: str


@_record
class ListedStatus:
    created_at: Annotated[_Timestamp, Field(alias="createdAt")]
    created_by: Annotated[ListedUser | None, Field(alias="createdBy")] = None
    updated_at: Annotated[_Timestamp, Field(alias="updatedAt")]
    updated_by: Annotated[ListedUser | None, Field(alias="updatedBy")] = None
    private: Any = None
    state: EndpointState
    message: str | None = None
    url: str | None = None
    ready_replica: Annotated[int, Field(alias="readyReplica")] = 0
    target_replica: Annotated[int, Field(alias="targetReplica")] = 0
    error_message: Annotated[str | None, Field(alias="errorMessage")] = None


@_record
class ListedEndpoint:
    """One item of a listing, read-only; `namespace` and `key` are set by `placed`."""

    name: str
    type: str = "protected"
    account_id: Annotated[str | None, Field(alias="accountId")] = None
    health_route: Annotated[str | None, Field(alias="healthRoute")] = "/health"
    tags: list[str] = field(default_factory=list)
    provider: ListedProvider
    compute: ListedCompute
    model: ListedModel
    status: ListedStatus
    # Not read from the JSON (init=False): the listing's path gives them.
    namespace: str | None = field(default=None, init=False)
    # Built once: it is a dict key in every per-endpoint table and asked for many times a tick.
    key: str = field(default="", init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "key", f"{self.namespace}/{self.name}")

    def placed(self, namespace: str) -> ListedEndpoint:
        """This record, in `namespace` (the client calls it once, before anyone reads it)."""
        object.__setattr__(self, "namespace", namespace)
        object.__setattr__(self, "key", f"{namespace}/{self.name}")
        return self

    @property
    def state(self) -> EndpointState:
        return self.status.state


@_record
class _Listing:
    items: list[ListedEndpoint]


# What reads an endpoint takes: a listing's record, or the model of a single call (or a test's).
AnyEndpoint: TypeAlias = Endpoint | ListedEndpoint

LISTING: TypeAdapter[_Listing] = TypeAdapter(_Listing)
"""`LISTING.validate_json(body).items`: a whole listing in one pass."""
LISTED_ITEM: TypeAdapter[ListedEndpoint] = TypeAdapter(ListedEndpoint)
"""One item (`validate_python`), for a listing with a bad item: the others are kept."""
