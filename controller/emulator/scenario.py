"""The demo world: one namespace, four endpoints with distinct traffic, built ready to run.

`default_scenario()` is what `governor demo` runs against. Capacity per replica is
`concurrency / service_time_s` requests/second:

- chat-llm: aws nvidia-l4 x1 ($0.80/h), min 1 / max 6, 2 rps per replica; 0.5 rps rising to
  12 rps over 30 min, back to 0.5 rps over the next 30 min (about 6 replicas at the peak).
- embeddings: aws intel-spr x2 ($0.067/h), min 1 / max 4, 10 rps per replica; a 4..7 rps wave
  with a 1 h period.
- batch-summarizer: aws nvidia-a10g x1 ($1.00/h), min 0 / max 3, 1 rps per replica; idle, then
  2.5 rps bursts of 5 min every 40 min (first at 10 min); scale-to-zero after 10 idle minutes.
- unmanaged-experiment: aws nvidia-t4 x1 ($0.50/h), min 1 / max 1, tag "experiment", 0.2 rps;
  Governor's demo config must leave it alone.

Tokens: `demo-token` (identity governor-bot, for Governor) and `demo-human-token` (identity
"alice", for simulating a person editing an endpoint by hand). They are the demo's, passed to its
in-process server; `governor emulator` accepts only the tokens given on its command line.

`load_scenario` reads a scenario file (endpoints and their loads, plus a `settings:` mapping of
emulator knobs); `emulator_configs` validates knob values (from the file or `--set`) into the
`PlatformConfig` and `EmulatorConfig` they belong to.
"""

from __future__ import annotations

import copy
import dataclasses
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model

from controller.emulator.app import EmulatorConfig
from controller.emulator.load import Burst, Constant, Diurnal, LoadPattern, Piecewise
from controller.emulator.platform import FeedShape, Platform, PlatformConfig, SimParams
from controller.errors import ConfigError, validation_lines
from controller.platform.models import UserRef

__all__ = [
    "EndpointSpec",
    "ScenarioSpec",
    "build_platform",
    "default_scenario",
    "emulator_configs",
    "knob_names",
    "load_scenario",
]


@dataclass(frozen=True)
class EndpointSpec:
    name: str
    body: dict[str, Any]  # create body, as sent to POST /v2/endpoint/{ns}
    load: LoadPattern | None
    sim: SimParams = field(default_factory=SimParams)
    managed: bool = True  # whether the demo's Governor config manages it


@dataclass(frozen=True)
class ScenarioSpec:
    namespace: str
    token: str
    user: UserRef
    endpoints: tuple[EndpointSpec, ...]
    human_token: str | None = None  # a second identity, for "manual" edits (the demo's alice)
    human: UserRef = field(default_factory=lambda: UserRef(id="u-alice", name="alice"))
    duration_s: float = 5400.0
    settings: Mapping[str, Any] = field(default_factory=dict)  # emulator knobs (`settings:`)

    @property
    def tokens(self) -> dict[str, UserRef]:
        out = {self.token: self.user}
        if self.human_token is not None:
            out[self.human_token] = self.human
        return out

    def endpoint(self, name: str) -> EndpointSpec:
        for e in self.endpoints:
            if e.name == name:
                return e
        raise KeyError(name)


def _body(
    name: str,
    *,
    accelerator: str,
    instance_type: str,
    instance_size: str,
    min_replica: int,
    max_replica: int,
    repository: str,
    task: str,
    tags: list[str],
    scale_to_zero_timeout: int | None = None,
    measure: dict[str, float | None] | None = None,
) -> dict[str, Any]:
    scaling: dict[str, Any] = {
        "minReplica": min_replica,
        "maxReplica": max_replica,
        "scaleToZeroTimeout": scale_to_zero_timeout,
    }
    if measure is not None:
        scaling["measure"] = measure
    return {
        "name": name,
        "type": "protected",
        "accountId": None,
        "healthRoute": "/health",
        "tags": tags,
        "provider": {"vendor": "aws", "region": "us-east-1"},
        "compute": {
            "accelerator": accelerator,
            "instanceType": instance_type,
            "instanceSize": instance_size,
            "scaling": scaling,
        },
        "model": {
            "repository": repository,
            "framework": "pytorch",
            "revision": None,
            "task": task,
            "image": {"huggingface": {}},
        },
    }


def default_scenario() -> ScenarioSpec:
    eps = (
        EndpointSpec(
            name="chat-llm",
            body=_body(
                "chat-llm",
                accelerator="gpu",
                instance_type="nvidia-l4",
                instance_size="x1",
                min_replica=1,
                max_replica=6,
                repository="meta-llama/Llama-3.1-8B-Instruct",
                task="text-generation",
                tags=["prod", "chat"],
                measure={"pendingRequests": 1.5},
            ),
            load=Piecewise(((0.0, 0.5), (1800.0, 12.0), (3600.0, 0.5))),
            sim=SimParams(cold_start_s=120.0, concurrency=4, service_time_s=2.0),
        ),
        EndpointSpec(
            name="embeddings",
            body=_body(
                "embeddings",
                accelerator="cpu",
                instance_type="intel-spr",
                instance_size="x2",
                min_replica=1,
                max_replica=4,
                repository="BAAI/bge-small-en-v1.5",
                task="sentence-embeddings",
                tags=["prod", "search"],
            ),
            load=Diurnal(base=4.0, peak=7.0, period_s=3600.0),
            sim=SimParams(cold_start_s=60.0, concurrency=2, service_time_s=0.2),
        ),
        EndpointSpec(
            name="batch-summarizer",
            body=_body(
                "batch-summarizer",
                accelerator="gpu",
                instance_type="nvidia-a10g",
                instance_size="x1",
                min_replica=0,
                max_replica=3,
                repository="facebook/bart-large-cnn",
                task="summarization",
                tags=["batch"],
                scale_to_zero_timeout=10,
                measure={"pendingRequests": 1.5},
            ),
            load=Burst(base=0.0, peak=2.5, start_s=600.0, duration_s=300.0, period_s=2400.0),
            sim=SimParams(cold_start_s=150.0, concurrency=4, service_time_s=4.0),
        ),
        EndpointSpec(
            name="unmanaged-experiment",
            body=_body(
                "unmanaged-experiment",
                accelerator="gpu",
                instance_type="nvidia-t4",
                instance_size="x1",
                min_replica=1,
                max_replica=1,
                repository="gpt2",
                task="text-generation",
                tags=["experiment"],
            ),
            load=Constant(0.2),
            sim=SimParams(cold_start_s=90.0, concurrency=2, service_time_s=2.0),
            managed=False,
        ),
    )
    return ScenarioSpec(
        namespace="demo-org",
        token="demo-token",
        user=UserRef(id="u-governor", name="governor-bot"),
        endpoints=eps,
        human_token="demo-human-token",
    )


def build_platform(
    spec: ScenarioSpec,
    *,
    start: float,
    seed: int = 0,
    config: PlatformConfig | None = None,
) -> Platform:
    """A platform with the scenario's endpoints already running at their min replicas (warm, no
    cold start at `start`; minReplica 0 starts scaledToZero) and their loads attached at `start`.
    They are created (and last updated) by the scenario's human, as people create endpoints.
    """
    platform = Platform(start=start, seed=seed, config=config)
    for e in spec.endpoints:
        platform.create(
            spec.namespace,
            copy.deepcopy(e.body),
            by=spec.human,
            sim=e.sim,
            load=e.load,
            ready=True,
        )
    return platform


class _ScenarioEndpoint(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    vendor: str = "aws"
    region: str = "us-east-1"
    accelerator: str = "gpu"
    instance_type: str = "nvidia-l4"
    instance_size: str = "x1"
    min_replica: int = Field(1, ge=0)
    max_replica: int = Field(1, ge=1)
    scale_to_zero_timeout: int | None = Field(None, ge=1)
    measure: dict[str, float | None] | None = None
    tags: list[str] = Field(default_factory=list)
    repository: str = "gpt2"
    task: str = "text-generation"
    load: dict[str, Any] | None = None
    cold_start_s: float | None = Field(None, ge=0)
    concurrency: int | None = Field(None, ge=1)
    service_time_s: float | None = Field(None, gt=0)
    # The feed shape its open-metrics route serves: the platform's, or an engine's own.
    feed: FeedShape | None = None


class _ScenarioFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    namespace: str = "demo-org"
    settings: dict[str, Any] = Field(default_factory=dict)
    endpoints: list[_ScenarioEndpoint] = Field(min_length=1)


def load_scenario(path: str | Path, *, token: str = "emulator-token") -> ScenarioSpec:
    """Read a scenario YAML file for `governor emulator --scenario`; errors name the field."""
    from controller.emulator.load import pattern_from_json

    p = Path(path)
    try:
        raw = yaml.safe_load(p.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read scenario {p}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{p}: not valid YAML: {exc}") from None
    try:
        data = _ScenarioFile.model_validate(raw)
    except ValidationError as exc:
        lines = [f"invalid scenario {p}:", *validation_lines(exc, show_input=False)]
        raise ConfigError("\n".join(lines)) from None
    eps = []
    for i, e in enumerate(data.endpoints):
        if e.min_replica > e.max_replica:
            raise ConfigError(f"{p}: endpoints[{i}]: min_replica must be <= max_replica")
        try:
            load = pattern_from_json(e.load) if e.load is not None else None
        except ValueError as exc:
            raise ConfigError(f"{p}: endpoints[{i}].load: {exc}") from None
        body = _body(
            e.name,
            accelerator=e.accelerator,
            instance_type=e.instance_type,
            instance_size=e.instance_size,
            min_replica=e.min_replica,
            max_replica=e.max_replica,
            repository=e.repository,
            task=e.task,
            tags=e.tags,
            scale_to_zero_timeout=e.scale_to_zero_timeout,
            measure=e.measure,
        )
        body["provider"] = {"vendor": e.vendor, "region": e.region}
        sim = SimParams(
            cold_start_s=e.cold_start_s,
            concurrency=e.concurrency,
            service_time_s=e.service_time_s,
            feed=e.feed,
        )
        eps.append(EndpointSpec(name=e.name, body=body, load=load, sim=sim))
    emulator_configs(data.settings, where=f"{p}: settings")  # named errors now, not at start
    return ScenarioSpec(
        namespace=data.namespace,
        token=token,
        user=UserRef(id="u-governor", name="governor-bot"),
        endpoints=tuple(eps),
        settings=dict(data.settings),
    )


# -- knobs --------------------------------------------------------------------------------------

_KNOB_CLASSES: tuple[type, ...] = (PlatformConfig, EmulatorConfig)


def _knob_model(cls: type) -> type[BaseModel]:
    """A strict, closed pydantic model of a config dataclass's fields, with the bounds their
    `Annotated` types carry (the dataclass itself stays a plain, fast dataclass)."""
    hints = typing.get_type_hints(cls, include_extras=True)
    fields: dict[str, Any] = {f.name: (hints[f.name], f.default) for f in dataclasses.fields(cls)}
    return create_model(
        f"{cls.__name__}Knobs",
        __config__=ConfigDict(extra="forbid", strict=True),
        **fields,
    )


_KNOB_MODELS = {cls: _knob_model(cls) for cls in _KNOB_CLASSES}


def knob_names() -> dict[str, type]:
    """Every knob name and the config class it belongs to (names are unique across both)."""
    return {f.name: cls for cls in _KNOB_CLASSES for f in dataclasses.fields(cls)}


def emulator_configs(
    values: Mapping[str, Any], *, where: str = "settings"
) -> tuple[PlatformConfig, EmulatorConfig]:
    """The two configs with `values` (knob name -> value) applied over their defaults.
    ConfigError names the knob: an unknown name, a wrong type or a value out of bounds."""
    owners = knob_names()
    unknown = sorted(k for k in values if k not in owners)
    if unknown:
        raise ConfigError(f"{where}.{unknown[0]}: unknown emulator setting")
    out: dict[type, Any] = {}
    for cls, model in _KNOB_MODELS.items():
        given = {k: v for k, v in values.items() if owners[k] is cls}
        try:
            checked = model.model_validate(given)
        except ValidationError as exc:
            lines = validation_lines(exc, prefix=f"{where}.")
            raise ConfigError(lines[0].strip()) from None
        out[cls] = cls(**checked.model_dump(exclude_unset=True))
    return out[PlatformConfig], out[EmulatorConfig]
