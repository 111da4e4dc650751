"""What the emulator accepts: JSON decoding under limits, and the request bodies as pydantic models.

Every request body goes through `decode_json` (size already capped by the app): it refuses NaN and
Infinity (JSON has neither; Python's json module would take them and later fail to render them),
numbers that overflow to infinity (`1e400`), integers beyond 64 bits, and nesting deeper than
`max_depth`, each with a 400 naming the problem. The decoded body is then validated by the model
of its route: unknown keys and wrong types are 422s naming the field (`model.env.A: Input should
be a valid string`); nothing is coerced (`"yes"` is not a boolean, `"python"` is not a command
list). The models follow `hf-endpoints-api-detail.md` section 2.3 (create) and 4 (update); a field
the reference marks optional and the client may omit is optional here.

Two deliberate leniencies, both what the official client's defaults would send: a create without
`model.framework` gets "pytorch" and one without `model.image` gets `{"huggingface": {}}` (the
platform requires both; the emulator fills them in so that short test bodies stay short).

Image variants drop the fields they do not declare, as the platform does (the reference: "fields
an image variant does not declare are silently dropped, not rejected"); an unknown variant key is
a 422, and every variant but `huggingface`/`huggingfaceNeuron` needs a `url`.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar, Literal

import pydantic_core
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from controller.errors import validation_lines

__all__ = [
    "IMAGE_VARIANTS",
    "CreateBody",
    "EmulatorError",
    "FaultBody",
    "ForceStateBody",
    "LoadBody",
    "QuotaBody",
    "UpdateBody",
    "decode_json",
    "validate",
]

_INT64 = 2**63 - 1


class EmulatorError(Exception):
    """An API-level error: HTTP `status` and a human message (sent as `{"error": message}`)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


# -- JSON ---------------------------------------------------------------------------------------


def decode_json(raw: bytes, *, max_depth: int, what: str = "request body") -> Any:
    """Parse `raw` as JSON within the limits above; EmulatorError(400) says what is wrong."""
    if not raw.strip():
        raise EmulatorError(400, f"{what}: expected JSON, got an empty body")
    try:
        data = pydantic_core.from_json(raw, allow_inf_nan=False)
    except ValueError as exc:
        text = str(exc)
        if "recursion limit" in text:
            text = f"nested deeper than {max_depth} levels"
        raise EmulatorError(400, f"{what}: invalid JSON ({text})") from None
    _check_tree(data, max_depth=max_depth, what=what)
    return data


def _check_tree(data: Any, *, max_depth: int, what: str) -> None:
    """Walk the decoded value without recursion: depth, finite floats, 64-bit integers."""
    stack: list[tuple[Any, int]] = [(data, 1)]
    while stack:
        v, depth = stack.pop()
        if isinstance(v, dict | list):
            if depth > max_depth:
                raise EmulatorError(400, f"{what}: nested deeper than {max_depth} levels")
            children = v.values() if isinstance(v, dict) else v
            stack.extend((c, depth + 1) for c in children)
        elif isinstance(v, float):
            if not math.isfinite(v):
                raise EmulatorError(400, f"{what}: number out of range (got {v})")
        elif isinstance(v, int) and not isinstance(v, bool) and abs(v) > _INT64:
            raise EmulatorError(400, f"{what}: integer out of 64-bit range")


def validate(model: type[BaseModel], data: Any, *, what: str = "") -> BaseModel:
    """`model.model_validate(data)`, its errors as one EmulatorError(422) naming the fields (values
    are not echoed: a body may carry secrets)."""
    if not isinstance(data, dict):
        raise EmulatorError(422, f"{what or 'request body'}: expected a JSON object")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        lines = [
            ln.strip().replace("<root>: ", "").replace("Value error, ", "")
            for ln in validation_lines(exc, prefix=what, show_input=False)
        ]
        more = f" (and {len(lines) - 3} more)" if len(lines) > 3 else ""
        raise EmulatorError(422, "; ".join(lines[:3]) + more) from None


# -- models ---------------------------------------------------------------------------------------


class _Body(BaseModel):
    """Strict and closed: no coercion, no unknown keys. A field left out is None ("not given");
    an explicit null is refused unless the field is in `nullable` (the reference: "omit
    `model.task` rather than sending null")."""

    model_config = ConfigDict(extra="forbid", strict=True)
    nullable: ClassVar[frozenset[str]] = frozenset()

    @field_validator("*", mode="before")
    @classmethod
    def _not_null(cls, v: Any, info: ValidationInfo) -> Any:
        if v is None and info.field_name not in cls.nullable:
            raise ValueError("must not be null (omit it instead)")
        return v

    def given(self) -> dict[str, Any]:
        """The fields the body set, as wire JSON."""
        return self.model_dump(exclude_unset=True)


def _str() -> Any:
    return Field(None, min_length=1)


def _count() -> Any:
    return Field(None, ge=0, le=_INT64)


class Measure(_Body):
    nullable = frozenset({"pendingRequests", "hardwareUsage"})
    pendingRequests: float | None = Field(None, gt=0)
    hardwareUsage: float | None = Field(None, gt=0, le=100)

    @model_validator(mode="before")
    @classmethod
    def _one_key(cls, data: Any) -> Any:
        if isinstance(data, dict) and len(data) != 1:
            raise ValueError("expected exactly one key, pendingRequests or hardwareUsage")
        return data


class Scaling(_Body):
    nullable = frozenset({"scaleToZeroTimeout", "measure", "threshold"})
    minReplica: int | None = _count()
    maxReplica: int | None = _count()
    scaleToZeroTimeout: int | None = _count()  # minutes; null or 0: never
    measure: Measure | None = None
    metric: Literal["pendingRequests", "hardwareUsage"] | None = None  # echo of a GET; derived
    threshold: float | None = None  # third-party echo; accepted, not stored


class Compute(_Body):
    accelerator: Literal["cpu", "gpu", "neuron"] | None = None
    instanceType: str | None = _str()
    instanceSize: str | None = _str()
    scaling: Scaling | None = None
    id: str | None = None  # echo of a GET; derived, not stored


class Credentials(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)
    username: str
    password: str | None = None


class _Image(BaseModel):
    """A container variant: common fields; undeclared fields are dropped (`extra="ignore"`)."""

    model_config = ConfigDict(extra="ignore", strict=True)
    needs_url: ClassVar[bool] = True
    url: str | None = Field(None, min_length=1)
    port: int | None = Field(None, ge=1, le=65535)
    healthRoute: str | None = Field(None, pattern=r"^/")
    credentials: Credentials | None = None


class _Toolkit(_Image):
    needs_url = False
    env: dict[str, str] | None = None  # the docs' FAQ still puts env inside the toolkit image


class _ToolkitNeuron(_Toolkit):
    batchSize: int | None = Field(None, ge=1)
    neuronCache: str | None = None
    sequenceLength: int | None = Field(None, ge=1)


class _Tgi(_Image):
    maxBatchPrefillTokens: int | None = Field(None, ge=1)
    maxBatchTotalTokens: int | None = Field(None, ge=1)
    maxInputLength: int | None = Field(None, ge=1)
    maxTotalTokens: int | None = Field(None, ge=1)
    disableCustomKernels: bool | None = None
    quantize: str | None = None


class _TgiNeuron(_Tgi):
    hfAutoCastType: str | None = None
    hfNumCores: int | None = Field(None, ge=1)


class _Tei(_Image):
    maxBatchTokens: int | None = Field(None, ge=1)
    maxConcurrentRequests: int | None = Field(None, ge=1)
    pooling: str | None = None


class _LlamaCpp(_Image):
    ctxSize: int | None = Field(None, ge=1)
    modelPath: str | None = None
    nParallel: int | None = Field(None, ge=1)
    nGpuLayers: int | None = Field(None, ge=0)
    threadsHttp: int | None = Field(None, ge=1)
    mode: str | None = None
    pooling: str | None = None
    variant: str | None = None
    embeddings: bool | None = None


class _VLlm(_Image):
    tensorParallelSize: int | None = Field(None, ge=1)
    dataParallelSize: int | None = Field(None, ge=1)


class _SgLang(_Image):
    tensorParallelSize: int | None = Field(None, ge=1)


class _Custom(_Image):
    env: dict[str, str] | None = None  # the 2023 spec allowed env inside a custom image


IMAGE_VARIANTS: dict[str, type[_Image]] = {
    "huggingface": _Toolkit,
    "huggingfaceNeuron": _ToolkitNeuron,
    "tgi": _Tgi,
    "tgiNeuron": _TgiNeuron,
    "tei": _Tei,
    "llamacpp": _LlamaCpp,
    "vLLM": _VLlm,
    "vLLMNeuron": _VLlm,
    "sGLang": _SgLang,
    "hfServe": _Image,
    "custom": _Custom,
}
PARALLEL_VARIANTS = frozenset({"vLLM", "sGLang"})


def _image(data: Any) -> dict[str, Any]:
    """One variant key, its fields validated by the variant's model, undeclared ones dropped."""
    if not isinstance(data, dict) or len(data) != 1:
        raise ValueError("expected an object with exactly one image variant key")
    ((key, value),) = data.items()
    cls = IMAGE_VARIANTS.get(key)
    if cls is None:
        raise ValueError(f"unknown image variant {key!r}; expected one of {sorted(IMAGE_VARIANTS)}")
    try:
        img = cls.model_validate(value)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = ".".join(str(p) for p in (key, *first["loc"]))
        raise ValueError(f"{loc}: {first['msg']}") from None
    if cls.needs_url and img.url is None:
        raise ValueError(f"{key}.url: field required (every variant but the toolkit's needs one)")
    return {key: img.model_dump(exclude_none=True)}


class Model(_Body):
    nullable = frozenset({"revision"})
    repository: str | None = _str()
    framework: str | None = _str()
    revision: str | None = None
    task: str | None = _str()
    image: dict[str, Any] | None = None
    command: list[str] | None = None
    args: list[str] | None = None
    env: dict[str, str] | None = None
    secrets: dict[str, str] | None = None
    fromCatalog: bool | None = None

    @field_validator("image", mode="after")
    @classmethod
    def _check_image(cls, v: dict[str, Any] | None) -> dict[str, Any] | None:
        return None if v is None else _image(v)


class Route(_Body):
    domain: str | None = _str()
    path: str | None = Field(None, pattern=r"^/")


class PrivateService(_Body):
    accountId: str | None = _str()
    region: str | None = _str()
    shared: bool | None = None


class CustomRouter(_Body):
    nullable = frozenset({"tag"})
    tag: str | None = None
    env: dict[str, str] | None = None
    port: int | None = Field(None, ge=1, le=65535)


class Provider(_Body):
    vendor: str | None = _str()
    region: str | None = _str()


class _Endpoint(_Body):
    """Fields shared by create and update bodies."""

    nullable = frozenset({"accountId", "customRouter", "status", "healthRoute"})
    name: str | None = _str()
    type: Literal["public", "protected", "private", "authenticated"] | None = None
    accountId: str | None = None
    healthRoute: str | None = Field(None, pattern=r"^/")
    tags: list[str] | None = None
    provider: Provider | None = None
    compute: Compute | None = None
    model: Model | None = None
    route: Route | None = None
    cacheHttpResponses: bool | None = None
    privateService: PrivateService | None = None
    customRouter: CustomRouter | None = None
    experimentalFeatures: dict[str, Any] | None = None
    # A GET-then-PUT/POST round trip carries the read-only parts; accepted and ignored.
    status: dict[str, Any] | None = None


_REQUIRED = {
    "": ("name", "provider", "compute", "model"),
    "provider.": ("vendor", "region"),
    "compute.": ("accelerator", "instanceType", "instanceSize", "scaling"),
    "compute.scaling.": ("minReplica", "maxReplica"),
    "model.": ("repository",),
}


class CreateBody(_Endpoint):
    """`POST /endpoint/{ns}`: the full spec (required fields checked in `_required`)."""

    @model_validator(mode="after")
    def _required(self) -> CreateBody:
        nodes: dict[str, BaseModel | None] = {
            "": self,
            "provider.": self.provider,
            "compute.": self.compute,
            "compute.scaling.": self.compute.scaling if self.compute else None,
            "model.": self.model,
        }
        for path, names in _REQUIRED.items():
            node = nodes[path]
            for n in names:
                if node is None or n not in node.model_fields_set:
                    raise ValueError(f"{path}{n}: field required")
        return self


class UpdateBody(_Endpoint):
    """`PUT /endpoint/{ns}/{name}`: any subset, merged into the current spec."""


# -- admin bodies ---------------------------------------------------------------------------------

FAULT_ROUTES = (
    "list",
    "create",
    "get",
    "update",
    "delete",
    "pause",
    "resume",
    "scale-to-zero",
    "open-metrics",
    "provider",
    "inference",
    "health",
    "hub-model",
    "*",
)


class _Admin(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class FaultBody(_Admin):
    route: Literal[FAULT_ROUTES]  # type: ignore[valid-type]
    # ns/name; for `hub-model`, the repository (`name` or `owner/name`)
    endpoint: str | None = Field(None, pattern=r"^[^/]+(/[^/]+)?$")
    status: int | None = Field(500, ge=100, le=599)
    count: int = Field(1, ge=-1, le=1_000_000)
    retry_after: float | None = Field(None, ge=0, le=86_400, allow_inf_nan=False)
    body: str | None = None
    delay_s: float | None = Field(None, ge=0, le=600, allow_inf_nan=False)
    content_type: str | None = Field(None, min_length=1, max_length=200)

    @model_validator(mode="after")
    def _count(self) -> FaultBody:
        if self.count == 0:
            raise ValueError("count: expected a positive integer or -1 (forever)")
        return self


class QuotaBody(_Admin):
    """Sets the limit of every quota group it matches: a vendor's `accelerator` kind, optionally
    narrowed to one `region` and `instance_type`."""

    namespace: str = Field(min_length=1)
    vendor: str = Field(min_length=1)
    accelerator: Literal["cpu", "gpu", "neuron"] | None = None
    region: str | None = Field(None, min_length=1)
    instance_type: str | None = Field(None, min_length=1)
    max_accelerators: int = Field(ge=0, le=10_000_000)

    @model_validator(mode="after")
    def _some_kind(self) -> QuotaBody:
        if self.accelerator is None and self.instance_type is None:
            raise ValueError("accelerator or instance_type: one is required")
        return self


class LoadBody(_Admin):
    endpoint: str = Field(pattern=r"^[^/]+/[^/]+$")
    pattern: dict[str, Any] | None


class ForceStateBody(_Admin):
    endpoint: str = Field(pattern=r"^[^/]+/[^/]+$")
    state: Literal[
        "pending",
        "initializing",
        "updating",
        "updateFailed",
        "running",
        "paused",
        "failed",
        "scaledToZero",
    ]
