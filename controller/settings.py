"""Governor's configuration: one YAML file, `GOVERNOR_*` environment overrides, the token apart.

Every model forbids unknown keys so a typo is an error, not a silently ignored setting. Errors are
turned into one `ConfigError` whose lines name the key path, the bad value and what is allowed.
Policy parameters are validated here too (through the policy registry), at load time rather than at
the first tick that needs them.

Precedence, highest first: `GOVERNOR_*` environment variables (nested keys joined by `__`, e.g.
`GOVERNOR_LOOP__DRY_RUN=true`), the YAML file, the defaults below. The HF token comes from
`HF_TOKEN`, else `api.token_file`, else the file `hf auth login` wrote (`HF_TOKEN_PATH`, default
`$HF_HOME/token`); it is held as a `SecretStr` and never logged.
"""

from __future__ import annotations

import fnmatch
import itertools
import math
import os
import socket
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from controller.core.params import EndpointSettings
from controller.cost.pricing import load_pricing
from controller.errors import ConfigError, validation_lines
from controller.platform.recipes import Recipe, SignalName
from controller.platform.signals import FeedMapping
from policies.registry import build_policy

__all__ = [
    "CONFIG_ENV",
    "DEFAULT_CONFIG_PATHS",
    "ApiSettings",
    "Budget",
    "BudgetThresholds",
    "DefaultsSettings",
    "ElectionSettings",
    "EndpointRule",
    "EndpointSettings",
    "LedgerSettings",
    "LoopSettings",
    "ManageSettings",
    "PriceOverride",
    "PricingSettings",
    "QuotaLimit",
    "QuotaSettings",
    "Settings",
    "find_config",
    "format_validation_error",
    "hf_token_path",
    "load_settings",
    "merge_endpoint_settings",
    "validate_endpoint_rules",
    "validate_policy_config",
]

REAL_API = "https://api.endpoints.huggingface.cloud/v2"
REAL_HUB = "https://huggingface.co"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True, allow_inf_nan=False)


def _check_url(v: str) -> str:
    """An absolute http(s) URL with a host and a valid port, without the trailing slash."""
    from urllib.parse import urlsplit

    if not v.startswith(("http://", "https://")):
        raise ValueError("must start with http:// or https://")
    try:
        parts = urlsplit(v)
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"not a valid URL: {exc}") from None
    if not parts.hostname:
        raise ValueError("has no host")
    if port is not None and not 1 <= port <= 65535:
        raise ValueError(f"port {port} is not in 1..65535")
    if parts.query or parts.fragment:
        raise ValueError("must not carry a query or fragment")
    return v.rstrip("/")


class ApiSettings(_Strict):
    base_url: str = Field(
        REAL_API, description="Management API base URL (the emulator's in tests)."
    )
    token_file: Path | None = Field(
        None,
        description="File whose first line is the HF token, if HF_TOKEN is unset (before the "
        "hf auth login cache).",
    )
    timeout_s: float = Field(
        10.0, gt=0, le=300, description="Total deadline of one request: connect, headers, body."
    )
    call_deadline_s: float = Field(
        60.0, gt=0, le=3600, description="Total deadline of one call, retries and waits included."
    )
    max_clock_skew_s: float = Field(
        300.0, ge=0, le=86400, description="An API timestamp further ahead than this is refused."
    )
    max_replicas: int = Field(
        1000, ge=1, le=100_000, description="The platform's replica limit per endpoint."
    )
    max_retry_after_s: float = Field(
        3600.0, gt=0, le=86400, description="Longest Retry-After honoured across ticks."
    )
    max_attempts: int = Field(4, ge=1, le=10, description="Attempts per call incl. retries.")
    backoff_initial_s: float = Field(0.5, gt=0, le=60)
    backoff_max_s: float = Field(20.0, gt=0, le=600)
    max_connections: int = Field(32, ge=1, le=1024)
    hub_url: str = Field(
        REAL_HUB,
        description="Hugging Face Hub base URL; right-sizing reads a model's size from its model "
        "API (the emulator's in tests).",
    )
    hub_timeout_s: float = Field(
        10.0, gt=0, le=300, description="Total deadline of one Hub model API request."
    )
    hub_max_body_bytes: int = Field(
        4 * 1024 * 1024,
        ge=1024,
        le=256 * 1024 * 1024,
        description="A Hub model API answer larger than this is refused (the size is unknown).",
    )
    hub_cache_ttl_s: float = Field(
        3600.0,
        ge=0,
        le=30 * 86_400,
        description="A model's size (or why it is unknown) is reused this long per "
        "(repository, revision).",
    )

    @field_validator("base_url", "hub_url")
    @classmethod
    def _url(cls, v: str) -> str:
        return _check_url(v)


class ManageSettings(_Strict):
    """Which endpoints Governor may touch. An endpoint matching none of these is never acted on."""

    names: list[str] = Field(default_factory=list, description="Exact names or `ns/name`.")
    globs: list[str] = Field(
        default_factory=list, description="fnmatch patterns on name or ns/name."
    )
    tags: list[str] = Field(
        default_factory=list, description="Any of these tags selects an endpoint."
    )
    exclude_tags: list[str] = Field(default_factory=list, description="Never manage these, ever.")


class LoopSettings(_Strict):
    tick_interval_s: float = Field(15.0, gt=0, le=3600, description="Time between ticks.")
    dry_run: bool = Field(False, description="Decide and log, but change nothing.")
    max_actions_per_min: int = Field(
        60, ge=1, le=100_000, description="Global cap on actions across all endpoints."
    )
    tick_budget_s: float | None = Field(
        None,
        gt=0,
        le=3600,
        description="Wall time a tick may take; the rest is skipped and counted. Default: the "
        "tick interval.",
    )
    unready_after_failed_ticks: int = Field(
        3, ge=1, le=10_000, description="/readyz fails after this many failed ticks in a row."
    )
    actuation: Literal["pin", "floor"] = Field(
        "pin",
        description="pin: set min=max=desired (Governor decides alone); floor: set min=desired and "
        "leave max at the ceiling so the platform autoscaler can still add replicas.",
    )
    watch_config: bool | None = Field(
        None,
        description="Reload the config file when it changes on disk, as SIGHUP does. Default: "
        "only for a file in a Kubernetes ConfigMap volume (its directory has a `..data` link).",
    )
    event_loop: Literal["auto", "asyncio", "uvloop"] = Field(
        "auto",
        description="The daemon's event loop. auto: uvloop when installed (pip install "
        "'governor[fast]'; ~25 % less CPU per feed fetch), else asyncio's; uvloop: refuse to "
        "start without it. Taken at start-up only.",
    )
    gc_freeze: bool = Field(
        True,
        description="After the first tick, move every object alive then (imports, config, "
        "caches, windows) out of the garbage collector's scans (gc.freeze). Taken at start-up "
        "only; a reload cannot undo it.",
    )
    gc_young_threshold: int = Field(
        50_000,
        ge=100,
        le=10_000_000,
        description="Container allocations between young-generation garbage collections "
        "(CPython's default is 700). A tick allocates hundreds of thousands that live to its end; "
        "at 700 each is scanned and promoted several times (2-3 s of CPU per tick at 10,000 "
        "endpoints, benchmarks/results/overhead-16.md).",
    )

    @property
    def budget_s(self) -> float:
        return self.tick_budget_s if self.tick_budget_s is not None else self.tick_interval_s


_MIB = 1024 * 1024


class ScrapeSettings(_Strict):
    """How feeds are fetched and parsed, and the limits that keep one bad feed from stalling a tick.

    Each limit ends a feed as a counted scrape error for that endpoint only (docs/signals.md,
    "A bad feed cannot stall the loop").
    """

    concurrency: int = Field(16, ge=1, le=1024, description="Feeds fetched at once.")
    max_age_s: float = Field(
        60.0,
        gt=0,
        description="A newer sample than this is required to act (its series' own timestamps, "
        "if any, date it).",
    )
    deadline_s: float = Field(
        5.0,
        gt=0,
        le=300,
        description="Total deadline of one endpoint's scrape: connect, headers, body, retries.",
    )
    max_body_bytes: int = Field(
        4 * _MIB,
        ge=1024,
        le=1024 * _MIB,
        description="Largest feed body accepted on the wire (before decompression).",
    )
    max_decoded_bytes: int = Field(
        4 * _MIB,
        ge=1024,
        le=1024 * _MIB,
        description="Largest feed body accepted after decompression (checked while inflating).",
    )
    parse_deadline_s: float = Field(
        2.0, gt=0, le=300, description="Longest one feed's parse may take before it is abandoned."
    )
    parse_inline_bytes: int = Field(
        256 * 1024,
        ge=0,
        le=1024 * _MIB,
        description="Bodies larger than this are parsed in a worker thread, off the event loop.",
    )
    retention_s: float = Field(900.0, gt=0, description="How much history the windows keep.")
    mapping: FeedMapping = Field(
        default_factory=FeedMapping,
        description="One series name per signal (the pre-preset config). Set: read every "
        "endpoint with it (the `custom` preset) unless its rules name a feed_preset; unset: "
        "presets are detected per endpoint.",
    )

    @property
    def custom_mapping(self) -> FeedMapping | None:
        """The mapping when the config set one, else None (detect presets)."""
        return self.mapping if "mapping" in self.model_fields_set else None


class ServerSettings(_Strict):
    listen: str = Field("127.0.0.1:9108", description="host:port for /metrics, /healthz, /readyz.")
    enabled: bool = True

    @field_validator("listen")
    @classmethod
    def _listen(cls, v: str) -> str:
        host, sep, port = v.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
            raise ValueError("must be host:port with a port in 0..65535")
        bare = host[1:-1] if host.startswith("[") and host.endswith("]") else host
        if ":" in bare and not host.startswith("["):
            raise ValueError("an IPv6 address must be in brackets, e.g. [::1]:9108")
        try:
            socket.getaddrinfo(bare, int(port), type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        except (OSError, UnicodeError) as exc:
            raise ValueError(f"cannot listen on host {bare!r}: {exc}") from None
        return v

    @property
    def host(self) -> str:
        return self.listen.rpartition(":")[0].strip("[]")

    @property
    def port(self) -> int:
        return int(self.listen.rpartition(":")[2])


class ForecastSettings(_Strict):
    """Which earlier periods the pre-warm forecast compares (policies/prewarm.py): the same
    phase 1..hours hours, 1..days days and 1..weeks weeks ago, read from the recorded demand."""

    hours: int = Field(3, ge=0, le=48, description="Hourly lags (a job on every hour).")
    days: int = Field(3, ge=0, le=31, description="Daily lags (the morning after a night).")
    weeks: int = Field(2, ge=0, le=8, description="Weekly lags (Monday after a weekend).")
    horizon_s: float = Field(
        1200.0,
        ge=60,
        le=7200,
        description="Span after each lagged instant handed to policies (at least the longest "
        "cold start plus its margin plus refresh_s).",
    )
    refresh_s: float = Field(
        300.0,
        ge=15,
        le=3600,
        description="How often each endpoint's lagged history is re-read from the store "
        "(staggered over endpoints). The lags are an hour or more, so a history read a few "
        "minutes ago still holds; one read cost about 0.5-1.4 ms on 2 shared cores.",
    )

    def lags(self) -> tuple[float, ...]:
        hour, day, week = 3600.0, 86400.0, 604800.0
        out = {k * hour for k in range(1, self.hours + 1)}
        out |= {k * day for k in range(1, self.days + 1)}
        out |= {k * week for k in range(1, self.weeks + 1)}
        return tuple(sorted(out))


class StateSettings(_Strict):
    path: Path = Field(Path("governor-state.sqlite"), description="SQLite file for durable state.")
    demand_retention_days: float = Field(
        14.0,
        ge=0,
        le=366,
        description="Days of per-minute demand kept for the autopilot, tune, export-trace and "
        "the pre-warm forecast (0: not recorded, no forecast).",
    )
    memory_every_s: float = Field(
        0.0,
        ge=0,
        le=86400,
        description="Write the decision memory at most this often (0: every tick). A restart "
        "resumes from the last write; a replay, which never restarts, writes it once a day.",
    )
    demand_every_s: float = Field(
        0.0,
        ge=0,
        le=86400,
        description="Write the recorded demand at most this often (0: every tick); the minutes "
        "held meanwhile are written, in order, before anything reads the store and before the "
        "hourly prune, so every read sees what an every-tick write would have left.",
    )
    forecast: ForecastSettings = Field(default_factory=ForecastSettings)


class ElectionSettings(_Strict):
    """Leader election through a Kubernetes Lease: only the holder writes to the API and ledger."""

    enabled: bool = Field(
        False, description="Run as one of several replicas; only the Lease holder acts."
    )
    lease_name: str = Field("governor", min_length=1, max_length=253)
    namespace: str | None = Field(
        None, description="Namespace of the Lease; default: the pod's (service account)."
    )
    identity: str | None = Field(
        None, description="This replica's holder identity; default: POD_NAME, else HOSTNAME."
    )
    api_url: str | None = Field(
        None, description="Kubernetes API URL; default: in-cluster (KUBERNETES_SERVICE_HOST)."
    )
    token_file: Path | None = Field(
        Path("/var/run/secrets/kubernetes.io/serviceaccount/token"),
        description="Bearer token for the Kubernetes API (re-read on every call).",
    )
    ca_file: Path | None = Field(
        Path("/var/run/secrets/kubernetes.io/serviceaccount/ca.crt"),
        description="CA bundle of the Kubernetes API.",
    )
    lease_duration_s: float = Field(
        15.0, ge=1, le=3600, description="A Lease unchanged this long is free to take."
    )
    renew_deadline_s: float = Field(
        10.0, gt=0, le=3600, description="A leader that has not renewed this long stops acting."
    )
    retry_period_s: float = Field(2.0, gt=0, le=600, description="Time between Lease rounds.")
    timeout_s: float = Field(5.0, gt=0, le=600, description="Deadline of one Lease round.")
    watermark_max_bytes: int = Field(
        200_000,
        ge=1_000,
        le=250_000,
        description="Largest ledger watermark written into the Lease (annotations: 256 KiB).",
    )

    @field_validator("api_url")
    @classmethod
    def _api_url(cls, v: str | None) -> str | None:
        return None if v is None else _check_url(v)

    @model_validator(mode="after")
    def _timings(self) -> ElectionSettings:
        # client-go's rule: leaseDuration > renewDeadline > retryPeriod (with jitter room).
        if not self.lease_duration_s > self.renew_deadline_s:
            raise ValueError(
                f"renew_deadline_s ({self.renew_deadline_s:g}) must be < lease_duration_s "
                f"({self.lease_duration_s:g})"
            )
        if not self.renew_deadline_s > 1.2 * self.retry_period_s:
            raise ValueError(
                f"retry_period_s ({self.retry_period_s:g}) must be < renew_deadline_s / 1.2 "
                f"({self.renew_deadline_s / 1.2:g})"
            )
        if self.timeout_s > self.renew_deadline_s:
            raise ValueError(
                f"timeout_s ({self.timeout_s:g}) must be <= renew_deadline_s "
                f"({self.renew_deadline_s:g})"
            )
        return self


class AutopilotSettings(_Strict):
    """Tuning each endpoint on its own recorded demand (docs/autopilot.md). Off unless enabled."""

    enabled: bool = Field(False, description="Replay recorded demand and adopt what met the SLO.")
    interval_s: float = Field(
        86_400.0, ge=600, le=30 * 86_400, description="How often each endpoint is tuned."
    )
    history_days: float = Field(
        7.0, gt=0, le=366, description="Recorded demand replayed (within state retention)."
    )
    max_step: int = Field(
        1, ge=1, le=3, description="Most grid steps one adoption moves a knob (bounded change)."
    )
    min_busy_minutes: int = Field(
        60, ge=1, le=100_000, description="Minutes with requests needed before tuning."
    )
    revert_after_s: float = Field(
        3600.0,
        ge=60,
        le=7 * 86_400,
        description="Recorded time after an adoption at which live attainment is checked; below "
        "the SLO, the previous value is restored.",
    )


class LogSettings(_Strict):
    format: Literal["auto", "json", "console"] = "auto"
    level: Literal["debug", "info", "warning", "warn", "error"] = "info"


class DefaultsSettings(EndpointSettings):
    pass


class PriceOverride(_Strict):
    """A negotiated rate or an instance missing from the shipped table."""

    vendor: str = Field(min_length=1)
    instance_type: str = Field(min_length=1)
    instance_size: str = Field(min_length=1)
    usd_per_hour: float = Field(ge=0, le=10000, description="USD per replica-hour.")
    accelerators: int | None = Field(
        None, ge=0, le=64, description="Accelerators per replica; required for a new instance."
    )
    accelerator: Literal["cpu", "gpu", "neuron"] | None = Field(
        None, description="Accelerator kind; inferred from the table or from `accelerators`."
    )


class PricingSettings(_Strict):
    overrides: list[PriceOverride] = Field(default_factory=list)
    refresh_from_api: bool = Field(
        False, description="At start, compare the table with GET /provider/{ns} and log changes."
    )

    @model_validator(mode="after")
    def _unique(self) -> PricingSettings:
        seen: set[tuple[str, str, str]] = set()
        for i, o in enumerate(self.overrides):
            k = (o.vendor, o.instance_type, o.instance_size)
            if k in seen:
                raise ValueError(f"overrides[{i}]: duplicate override for {'/'.join(k)}")
            seen.add(k)
            if o.accelerators is None and k not in load_pricing():
                raise ValueError(
                    f"overrides[{i}].accelerators: required for {'/'.join(k)}, which is not in "
                    "the pricing table"
                )
        return self


class LedgerSettings(_Strict):
    enabled: bool = Field(True, description="Record spend per endpoint every tick.")
    path: Path | None = Field(None, description="SQLite file; default: the state.path file.")
    pending_s: float = Field(
        10.0, ge=0, le=3600, description="Time a resumed endpoint stays pending before billing."
    )
    gap_ticks: float = Field(
        2.0, ge=1, le=1000, description="A pause longer than this many ticks is an estimated gap."
    )
    timezone: str = Field("UTC", description="IANA zone for day and month boundaries.")
    standby_buffer_ticks: int = Field(
        64,
        ge=1,
        le=100_000,
        description="Listings a standby keeps to bill from the leader's watermark on take-over.",
    )

    @field_validator("timezone")
    @classmethod
    def _tz(cls, v: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {v!r}") from None
        return v


class QuotaLimit(_Strict):
    namespace: str = Field(min_length=1)
    vendor: str = Field(min_length=1)
    accelerator: Literal["gpu", "neuron"]
    max_accelerators: int = Field(ge=0, le=100000)


class QuotaSettings(_Strict):
    limits: list[QuotaLimit] = Field(default_factory=list)


class BudgetThresholds(_Strict):
    """Fractions of the cap: `alert` and `degrade` compare the forecast, `hard` the spend."""

    alert: float = Field(0.8, gt=0, le=10)
    degrade: float = Field(0.95, gt=0, le=10)
    hard: float = Field(1.0, gt=0, le=10)

    @model_validator(mode="after")
    def _order(self) -> BudgetThresholds:
        if not self.alert <= self.degrade <= self.hard:
            raise ValueError(
                f"must satisfy alert <= degrade <= hard (got {self.alert}, {self.degrade}, "
                f"{self.hard})"
            )
        return self


class Budget(_Strict):
    scope: Literal["endpoint", "tag", "namespace"]
    match: str = Field(min_length=1, description="ns/name, a tag, or a namespace.")
    period: Literal["month", "day"] = "month"
    usd: float = Field(gt=0, description="The cap for one period.")
    thresholds: BudgetThresholds = Field(default_factory=BudgetThresholds)

    @property
    def label(self) -> str:
        return f"{self.scope}:{self.match}"

    def covers(self, namespace: str, name: str, tags: list[str] | tuple[str, ...]) -> bool:
        """Whether this budget counts the endpoint's spend (and so caps it, when managed)."""
        if self.scope == "endpoint":
            return self.match == f"{namespace}/{name}"
        if self.scope == "tag":
            return self.match in tags
        return self.match == namespace

    @model_validator(mode="after")
    def _endpoint_match(self) -> Budget:
        if self.scope == "endpoint" and "/" not in self.match:
            raise ValueError(f"match: an endpoint budget needs ns/name (got {self.match!r})")
        return self


class RuleMatch(_Strict):
    names: list[str] = Field(default_factory=list)
    globs: list[str] = Field(default_factory=list)
    tags: list[str] = Field(default_factory=list)


class EndpointRule(_Strict):
    """Overrides for endpoints matching `match`; later rules win over earlier ones."""

    match: RuleMatch
    floor: int | None = Field(None, ge=0, le=1000)
    ceiling: int | None = Field(None, ge=1, le=1000)
    scale_up_stabilization_s: float | None = Field(None, ge=0, le=3600)
    scale_down_stabilization_s: float | None = Field(None, ge=0, le=86400)
    policies: dict[str, dict[str, Any]] | None = None
    priority: int | None = Field(None, ge=-1000, le=1000)
    max_step_up: int | None = Field(None, ge=1)
    max_step_down: int | None = Field(None, ge=1)
    min_action_interval_s: float | None = Field(None, ge=0, le=86400)
    human_backoff_s: float | None = Field(None, ge=0, le=7 * 86400)
    feed_preset: str | None = None
    feed_recipes: dict[SignalName, Recipe] | None = None
    feed_source: Literal["platform", "engine"] | None = None
    engine_metrics_path: str | None = Field(None, pattern=r"^/[A-Za-z0-9_.~/-]{0,200}$")


def _matches(
    namespace: str,
    name: str,
    tags: list[str],
    *,
    names: list[str],
    globs: list[str],
    tag_sel: list[str],
) -> bool:
    full = f"{namespace}/{name}"
    if name in names or full in names:
        return True
    if any(fnmatch.fnmatchcase(name, g) or fnmatch.fnmatchcase(full, g) for g in globs):
        return True
    return bool(set(tags) & set(tag_sel))


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="GOVERNOR_",
        env_nested_delimiter="__",
        extra="forbid",
        validate_default=True,
        allow_inf_nan=False,
    )

    api: ApiSettings = Field(default_factory=ApiSettings)
    # NoDecode: GOVERNOR_NAMESPACES=a,b is a comma list (a JSON list still works).
    namespaces: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="Namespaces to discover."
    )
    manage: ManageSettings = Field(default_factory=ManageSettings)
    loop: LoopSettings = Field(default_factory=LoopSettings)
    scrape: ScrapeSettings = Field(default_factory=ScrapeSettings)
    server: ServerSettings = Field(default_factory=ServerSettings)
    state: StateSettings = Field(default_factory=StateSettings)
    autopilot: AutopilotSettings = Field(default_factory=AutopilotSettings)
    election: ElectionSettings = Field(default_factory=ElectionSettings)
    log: LogSettings = Field(default_factory=LogSettings)
    defaults: DefaultsSettings = Field(default_factory=DefaultsSettings)
    endpoints: list[EndpointRule] = Field(default_factory=list)
    token: SecretStr | None = Field(
        None, exclude=True, description="Filled from HF_TOKEN/token_file."
    )
    pricing: PricingSettings = Field(default_factory=PricingSettings)
    ledger: LedgerSettings = Field(default_factory=LedgerSettings)
    quota: QuotaSettings = Field(default_factory=QuotaSettings)
    budgets: list[Budget] = Field(default_factory=list)
    _token_source: str = PrivateAttr("")
    # Merged EndpointSettings by (matching rule indices, budget-covered): one merge per distinct
    # combination instead of one pydantic validation per endpoint per call (three calls per
    # endpoint per tick cost ~1 s at 10,000). Bounded by the combinations of this config's rules;
    # a reload builds a new Settings, so a new cache. Callers must not mutate the result.
    _merged: dict[tuple[tuple[int, ...], bool], EndpointSettings] = PrivateAttr(
        default_factory=dict
    )

    @property
    def token_source(self) -> str:
        """Where the token was found (`HF_TOKEN`, `api.token_file (PATH)`, ...), never the token."""
        return self._token_source

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The file arrives as init kwargs; environment variables must override it.
        return (env_settings, init_settings)

    @field_validator("namespaces", mode="before")
    @classmethod
    def _ns_csv(cls, v: Any) -> Any:
        if not isinstance(v, str):
            return v
        if v.strip().startswith("["):
            import json

            try:
                return json.loads(v)
            except ValueError:
                raise ValueError("not a valid JSON list; give a comma list: a,b") from None
        return [s.strip() for s in v.split(",") if s.strip()]

    def is_managed(self, namespace: str, name: str, tags: list[str]) -> bool:
        m = self.manage
        if set(tags) & set(m.exclude_tags):
            return False
        return _matches(namespace, name, tags, names=m.names, globs=m.globs, tag_sel=m.tags)

    def endpoint_settings(self, namespace: str, name: str, tags: list[str]) -> EndpointSettings:
        """Defaults with every matching rule applied in order (later rules override).

        A budget is enforced on every managed endpoint it covers: one that does not name the
        `budget` policy gets it with its default parameters (degrade, then pause at the hard
        cap; `policies.budget: {protected: true}` caps instead of pausing)."""
        matched = tuple(
            i
            for i, rule in enumerate(self.endpoints)
            if _matches(
                namespace,
                name,
                tags,
                names=rule.match.names,
                globs=rule.match.globs,
                tag_sel=rule.match.tags,
            )
        )
        budgeted = any(b.covers(namespace, name, tags) for b in self.budgets)
        es = self._merged.get((matched, budgeted))
        if es is None:
            es = merge_endpoint_settings(self.defaults, [self.endpoints[i] for i in matched])
            if budgeted and "budget" not in es.policies:
                es = es.model_copy(update={"policies": {**es.policies, "budget": {}}})
            self._merged[(matched, budgeted)] = es
        return es

    def redacted(self) -> dict[str, Any]:
        """The effective config for the start-up log; the token is only ever shown as set/unset."""
        data = self.model_dump(mode="json")
        data["token"] = "***set***" if self.token else None
        return data


def merge_endpoint_settings(
    defaults: DefaultsSettings, rules: list[EndpointRule]
) -> EndpointSettings:
    """`defaults` with `rules` applied in order; raises ValidationError if the result is bad."""
    merged = defaults.model_dump()
    for rule in rules:
        for k, v in rule.model_dump(exclude={"match"}, exclude_none=True).items():
            if k == "policies":
                pol = dict(merged["policies"])
                for pname, params in v.items():
                    pol[pname] = {**pol.get(pname, {}), **params}
                merged["policies"] = pol
            elif k == "feed_recipes":
                merged[k] = {**merged[k], **v}
            else:
                merged[k] = v
    return EndpointSettings.model_validate(merged)


DEFAULT_CONFIG_PATHS: tuple[Path, ...] = (
    Path("governor.yaml"),
    Path("/etc/governor/governor.yaml"),
)
CONFIG_ENV = "GOVERNOR_CONFIG"


def find_config(explicit: str | Path | None, env: Mapping[str, str] | None = None) -> Path:
    """The config file a command reads: `-c/--config`, else `GOVERNOR_CONFIG`, else the first of
    ./governor.yaml and /etc/governor/governor.yaml that exists (as kubectl reads --kubeconfig,
    then KUBECONFIG, then ~/.kube/config). None of them is a `ConfigError`: Governor never runs
    on defaults alone."""
    env = os.environ if env is None else env
    if explicit:
        return Path(explicit)
    if env.get(CONFIG_ENV, "").strip():
        return Path(env[CONFIG_ENV].strip())
    for candidate in DEFAULT_CONFIG_PATHS:
        if candidate.is_file():
            return candidate
    raise ConfigError(
        f"no config file: pass -c FILE, set {CONFIG_ENV}, or create ./governor.yaml or "
        "/etc/governor/governor.yaml (examples/governor.yaml is a start)"
    )


def _env_vars(environ: Mapping[str, str]) -> dict[tuple[str, ...], str]:
    """The `GOVERNOR_*` variables set, by the key path they override (lower case, as
    pydantic-settings matches them)."""
    out: dict[tuple[str, ...], str] = {}
    for name in environ:
        if name.upper().startswith("GOVERNOR_") and name.upper() != CONFIG_ENV:
            out[tuple(name[len("GOVERNOR_") :].lower().split("__"))] = name
    return out


def _env_source(loc: tuple[Any, ...], env_vars: Mapping[tuple[str, ...], str]) -> str | None:
    """The variable that supplied the value at `loc`, if one did (the longest matching one)."""
    path = tuple(str(p).lower() for p in loc)
    for n in range(len(path), 0, -1):
        if path[:n] in env_vars:
            return env_vars[path[:n]]
    return None


def format_validation_error(
    err: ValidationError, *, source: str, environ: Mapping[str, str] | None = None
) -> str:
    """One line per problem under a header naming the file; a value that came from a
    `GOVERNOR_*` variable is reported under that variable's name, not the file's."""
    env_vars = _env_vars(os.environ if environ is None else environ)
    from_file: list[str] = []
    from_env: list[str] = []
    for e, line in zip(err.errors(), validation_lines(err, brackets=True), strict=True):
        var = _env_source(tuple(e["loc"]), env_vars)
        if var is None:
            from_file.append(line)
        else:
            key, rest = line.strip().split(": ", 1)
            from_env.append(f"  {var} (environment, {key}): {rest}")
    if not from_file:
        return "\n".join(["invalid configuration in the environment:", *from_env])
    return "\n".join([f"invalid configuration in {source}:", *from_file, *from_env])


def _env_parse_error(exc: ValueError, environ: Mapping[str, str]) -> str:
    """pydantic-settings' "error parsing value for field X from source EnvSettingsSource" as the
    variable's name and what it must be."""
    import re

    m = re.search(r'field "([^"]+)"', str(exc))
    if m:
        field = m.group(1)
        var = _env_vars(environ).get((field.lower(),), f"GOVERNOR_{field.upper()}")
        return f"{var} (environment): not valid JSON (a list or mapping is given as JSON)"
    return f"environment: {exc}"


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses a key given twice in one mapping (YAML would keep the last)."""


def _unique_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False) -> Any:
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=True)
        line = key_node.start_mark.line + 1
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None,
                None,
                f"duplicate key {key!r} at line {line} (first at line {seen[key]}); YAML would "
                "silently keep only the last one",
                key_node.start_mark,
            )
        seen[key] = line
    return loader.construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG,
    _unique_mapping,  # type: ignore[arg-type]
)


def _non_finite(data: Any, where: str = "") -> list[str]:
    """Key paths of every NaN or infinity in the file (`.inf` is valid YAML, never a setting)."""
    if isinstance(data, float) and not math.isfinite(data):
        return [f"  {where or '<root>'}: must be a finite number (got {data})"]
    if isinstance(data, dict):
        return [
            e for k, v in data.items() for e in _non_finite(v, f"{where}.{k}" if where else str(k))
        ]
    if isinstance(data, list):
        return [e for i, v in enumerate(data) for e in _non_finite(v, f"{where}[{i}]")]
    return []


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        line = path.read_bytes()[: exc.start].count(b"\n") + 1
        raise ConfigError(f"{path}: not UTF-8 text (byte {exc.start + 1}, line {line})") from None
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{path}: not valid YAML{where}: {problem}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"{path}: the top level must be a mapping of keys, got {type(data).__name__}"
        )
    bad = _non_finite(data)
    if bad:
        raise ConfigError("\n".join([f"invalid configuration in {path}:", *bad]))
    return data


def hf_token_path(env: Mapping[str, str]) -> Path:
    """The file `hf auth login` writes, found as huggingface_hub finds it.

    huggingface_hub `constants.py`: `HF_HOME` defaults to `$XDG_CACHE_HOME/huggingface` (else
    `~/.cache/huggingface`), and `HF_TOKEN_PATH` to `$HF_HOME/token`; both have `~` and `$VAR`
    expanded. (Read from huggingface/huggingface_hub, src/huggingface_hub/constants.py.)
    """

    user_home = env.get("HOME") or os.path.expanduser("~")

    def expand(p: str) -> str:
        p = user_home + p[1:] if p == "~" or p.startswith("~/") else os.path.expanduser(p)
        return os.path.expandvars(p)

    cache = env.get("XDG_CACHE_HOME") or os.path.join(user_home, ".cache")
    home = expand(env.get("HF_HOME") or os.path.join(cache, "huggingface"))
    return Path(expand(env.get("HF_TOKEN_PATH") or os.path.join(home, "token")))


def _first_line(text: str) -> str:
    """A token file's token: its first line, stripped (a comment or a second line after it is
    never sent, nor leaked in an error)."""
    return text.split("\n", 1)[0].strip()


def _read_token(settings: Settings, env: Mapping[str, str]) -> tuple[SecretStr | None, str]:
    """The HF token and where it came from, in huggingface_hub's order (utils/_auth.py
    `get_token`: the `HF_TOKEN` variable, else the token file), with Governor's own
    `api.token_file` between the two: a file named in the config wins over the login cache.

    huggingface_hub also reads the older `HUGGING_FACE_HUB_TOKEN` after `HF_TOKEN`; so does this.
    """
    for var in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"):
        tok = _first_line(env.get(var, ""))
        if tok:
            return SecretStr(tok), var
    tf = settings.api.token_file
    if tf is not None:
        try:
            tok = _first_line(tf.read_text(encoding="utf-8"))
        except (OSError, UnicodeError) as exc:
            why = getattr(exc, "strerror", None) or "not UTF-8 text"
            raise ConfigError(f"api.token_file: cannot read {tf}: {why}") from None
        if not tok:
            raise ConfigError(f"api.token_file: {tf} is empty (the token is its first line)")
        return SecretStr(tok), f"api.token_file ({tf})"
    cached = hf_token_path(env)
    var = "HF_TOKEN_PATH" if env.get("HF_TOKEN_PATH") else "the hf auth login cache"
    try:
        tok = _first_line(cached.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None, ""
    except (OSError, UnicodeError) as exc:
        why = getattr(exc, "strerror", None) or "not UTF-8 text"
        raise ConfigError(f"{var}: cannot read {cached}: {why}") from None
    if not tok:
        return None, ""
    return SecretStr(tok), f"{var} ({cached})"


def load_settings(
    path: str | Path | None = None,
    *,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
    validate_policies: bool = True,
) -> Settings:
    """Load, merge and fully validate the configuration, or raise one `ConfigError`.

    `GOVERNOR_*` overrides are read from the process environment by pydantic-settings; `env` only
    supplies `HF_TOKEN` (tests pass their own mapping).
    """
    env = os.environ if env is None else env
    data: dict[str, Any] = _read_yaml(Path(path)) if path is not None else {}
    if path is not None and not data:
        raise ConfigError(
            f"{path}: the file has no settings; Governor needs at least `namespaces` and a "
            "`manage` selection (see examples/governor.yaml)"
        )
    for k, v in (overrides or {}).items():
        data[k] = v
    source = str(path) if path is not None else "environment/defaults"
    if "token" in data:
        raise ConfigError(
            f"{source}: token: put the token in HF_TOKEN or api.token_file, not in config"
        )
    try:
        settings = Settings(**data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, source=source)) from None
    except ValueError as exc:  # e.g. an env override that is not valid JSON for a nested field
        raise ConfigError(_env_parse_error(exc, os.environ)) from None
    validate_endpoint_rules(settings, source=source)
    settings.token, settings._token_source = _read_token(settings, env)
    if validate_policies:
        validate_policy_config(settings)
    return settings


def validate_endpoint_rules(settings: Settings, *, source: str) -> None:
    """Check the merged per-endpoint settings every endpoint could end up with, so a config that
    passes never fails at a tick (a floor of 3 from `defaults` under a rule's ceiling of 2).

    Which rules match is only known per endpoint, so this checks the defaults alone, each rule
    over the defaults, and each pair of rules over the defaults (the later one winning).
    """
    rules = settings.endpoints
    combos: list[tuple[int, ...]] = [()]
    combos += [(i,) for i in range(len(rules))]
    combos += list(itertools.combinations(range(len(rules)), 2))
    errors: list[str] = []
    for combo in combos:
        try:
            merge_endpoint_settings(settings.defaults, [rules[i] for i in combo])
        except ValidationError as exc:
            what = (
                "defaults"
                if not combo
                else " + ".join(["defaults", *(f"endpoints[{i}]" for i in combo)])
            )
            for e in exc.errors():
                msg = e["msg"].removeprefix("Value error, ")
                errors.append(f"  {what}: {msg}")
    if errors:
        raise ConfigError("\n".join([f"invalid configuration in {source}:", *errors[:20]]))


def validate_policy_config(settings: Settings) -> None:
    """Parse every configured policy's parameters now, so a bad one fails at start-up."""
    for name, params in settings.defaults.policies.items():
        build_policy(name, params, where=f"defaults.policies.{name}")
    for i, rule in enumerate(settings.endpoints):
        for name, params in (rule.policies or {}).items():
            # A rule's params are merged over the defaults' params at use; validate the merge.
            merged = {**settings.defaults.policies.get(name, {}), **params}
            build_policy(name, merged, where=f"endpoints[{i}].policies.{name}")
