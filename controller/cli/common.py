"""What the commands share: the token requirement, the dry-run copy of a config, the check that
a config gives Governor something to do, budget coverage and the `-o json` writer."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TextIO

from controller.errors import ConfigError
from controller.settings import Settings

if TYPE_CHECKING:
    from controller.platform.models import AnyEndpoint

__all__ = [
    "BudgetCoverage",
    "budget_coverage",
    "coverage_warnings",
    "dry_run_copy",
    "iso",
    "json_dump",
    "manage_hint",
    "offline_budget_warnings",
    "require_token",
    "usable",
]


def require_token(settings: Settings) -> None:
    if settings.token is None:
        raise ConfigError(
            "no API token: set HF_TOKEN, api.token_file or HF_TOKEN_PATH, or run `hf auth "
            "login` (a fine-grained token with 'Inference Endpoints: manage' permission)"
        )


def dry_run_copy(settings: Settings, *, dry_run: bool = True) -> Settings:
    """A copy of `settings` with `loop.dry_run` set (the token is carried over by the copy)."""
    return settings.model_copy(
        update={"loop": settings.loop.model_copy(update={"dry_run": dry_run})}
    )


def usable(settings: Settings, *, source: str) -> list[str]:
    """Raise `ConfigError` for a config that gives Governor nothing to look at (no namespaces:
    it would tick, report healthy and do nothing); return warnings for one that can only
    observe (no `manage` selection: cost is reported, no endpoint is ever changed)."""
    if not settings.namespaces:
        raise ConfigError(
            f"{source}: namespaces: empty; list the users or organisations whose endpoints "
            "Governor reads (GOVERNOR_NAMESPACES=a,b also works)"
        )
    m = settings.manage
    if not (m.names or m.globs or m.tags):
        return [
            "manage selects no endpoint (no manage.names, globs or tags): Governor only "
            "observes and reports cost; it changes nothing"
        ]
    return []


@dataclass(frozen=True, slots=True)
class BudgetCoverage:
    """Which listed endpoints a budget counts (`covers`) and which of them it caps (`enforced`:
    the managed ones; an unmanaged endpoint's spend counts, but Governor never changes it)."""

    label: str
    period: str
    usd: float
    covers: tuple[str, ...]
    enforced: tuple[str, ...]

    def describe(self) -> str:
        n, k = len(self.covers), len(self.enforced)
        text = f"{self.label} {self.period} ${self.usd:,.2f}: covers {n} endpoint(s)"
        if n:
            text += f", enforced on {k}"
            if n > k:
                text += f" ({n - k} unmanaged: counted, never changed)"
        return text

    def as_json(self) -> dict[str, Any]:
        return {
            "budget": self.label,
            "period": self.period,
            "usd": self.usd,
            "covers": list(self.covers),
            "enforced": list(self.enforced),
        }


def budget_coverage(settings: Settings, listed: Iterable[AnyEndpoint]) -> list[BudgetCoverage]:
    eps = list(listed)
    out = []
    for b in settings.budgets:
        covers = [e for e in eps if b.covers(e.namespace or "", e.name, e.tags)]
        enforced = [e for e in covers if settings.is_managed(e.namespace or "", e.name, e.tags)]
        out.append(
            BudgetCoverage(
                label=b.label,
                period=b.period,
                usd=b.usd,
                covers=tuple(sorted(e.key for e in covers)),
                enforced=tuple(sorted(e.key for e in enforced)),
            )
        )
    return out


def coverage_warnings(settings: Settings, coverage: Sequence[BudgetCoverage]) -> list[str]:
    """A budget that covers no listed endpoint: most often a typo in its `match`."""
    return [
        f"budget {c.label} ({c.period}) covers no endpoint listed in "
        f"{', '.join(settings.namespaces) or 'no namespace'}: check its match (an endpoint "
        "budget matches ns/name, a tag budget a tag, a namespace budget a namespace)"
        for c in coverage
        if not c.covers
    ]


def offline_budget_warnings(settings: Settings) -> list[str]:
    """What can be told without the API: a namespace or endpoint budget outside `namespaces`
    covers nothing Governor lists."""
    out = []
    for b in settings.budgets:
        ns = b.match.split("/", 1)[0] if b.scope == "endpoint" else b.match
        if b.scope in ("namespace", "endpoint") and ns not in settings.namespaces:
            out.append(
                f"budget {b.label}: namespace {ns!r} is not in namespaces "
                f"({', '.join(settings.namespaces)}), so it covers no endpoint"
            )
    return out


def manage_hint(settings: Settings, listed: Sequence[AnyEndpoint]) -> str:
    """Why no endpoint was selected: what was listed, and what `manage` asks for."""
    m = settings.manage
    rules = ", ".join(
        f"{k} [{', '.join(v)}]"
        for k, v in (
            ("names", m.names),
            ("globs", m.globs),
            ("tags", m.tags),
            ("exclude_tags", m.exclude_tags),
        )
        if v
    )
    if not listed:
        seen = f"no endpoint listed in namespace(s) {', '.join(settings.namespaces)}"
    else:
        shown = ", ".join(
            f"{e.key}" + (f" [{','.join(e.tags)}]" if e.tags else "") for e in listed[:8]
        )
        more = f" and {len(listed) - 8} more" if len(listed) > 8 else ""
        seen = f"listed {len(listed)} endpoint(s): {shown}{more}"
    return f"{seen}; manage selects {rules or 'nothing'}"


def json_dump(data: Any, out: TextIO) -> None:
    """The JSON documents of `-o json`: one object, keys in a fixed order, then a newline."""
    out.write(json.dumps(data, indent=2, allow_nan=False) + "\n")


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")
