"""What the commands share: the token requirement and the dry-run copy of a config."""

from __future__ import annotations

from controller.errors import ConfigError
from controller.settings import Settings

__all__ = ["dry_run_copy", "require_token"]


def require_token(settings: Settings) -> None:
    if settings.token is None:
        raise ConfigError(
            "no API token: set HF_TOKEN, api.token_file or HF_TOKEN_PATH, or run `hf auth "
            "login` (a fine-grained token with 'Inference Endpoints: manage' permission)"
        )


def dry_run_copy(settings: Settings) -> Settings:
    """A copy of `settings` that changes nothing (the token is carried over by the copy)."""
    return settings.model_copy(update={"loop": settings.loop.model_copy(update={"dry_run": True})})
