"""What the commands share: the token requirement, the dry-run copy of a config, and the check
that a config gives Governor something to do."""

from __future__ import annotations

from controller.errors import ConfigError
from controller.settings import Settings

__all__ = ["dry_run_copy", "require_token", "usable"]


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
