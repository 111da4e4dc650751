"""The Hub's model API as the emulator serves it: `GET /api/models/{repo}[/revision/{rev}]`.

Only what right-sizing reads: `{"id", "sha", "safetensors": {"parameters": {dtype: count},
"total": n}}`, huggingface_hub's `ModelInfo` field names. The sizes come from `HUB_MODELS`, the
Hub's own counts for models the default scenario deploys, else from the endpoint that deploys the
repository (`SimParams.model_gb` as BF16 parameters: 2 bytes each); a repository known to
neither is a 404. `set` adds or replaces one (`parameters=None`: no safetensors), `gated` makes
it answer 401 without a known token. Other failures (a 500, a delay, a bad body) are the
emulator's faults on the route `hub-model`, matched by repository.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

__all__ = ["HUB_MODELS", "HubModel", "HubModels"]

# The Hub's safetensors parameter counts (`/api/models/{repo}`), as the Hub states them.
HUB_MODELS: Mapping[str, Mapping[str, int]] = {
    "meta-llama/Llama-3.1-8B-Instruct": {"BF16": 8_030_261_248},
    "gpt2": {"F32": 137_022_720},
}


@dataclass(frozen=True, slots=True)
class HubModel:
    parameters: Mapping[str, int] | None  # None: the repository has no safetensors
    gated: bool = False

    def info(self, repository: str, revision: str | None) -> dict[str, object]:
        body: dict[str, object] = {"id": repository, "sha": revision or "main"}
        if self.parameters is not None:
            body["safetensors"] = {
                "parameters": dict(self.parameters),
                "total": sum(self.parameters.values()),
            }
        return body


class HubModels:
    """Repository (and revision) -> what the model API answers."""

    def __init__(self, table: Mapping[str, Mapping[str, int]] = HUB_MODELS) -> None:
        self._models: dict[tuple[str, str | None], HubModel] = {
            (repo, None): HubModel(dict(params)) for repo, params in table.items()
        }
        self._deployed: dict[str, float] = {}  # repository -> model_gb of an endpoint serving it

    def set(
        self,
        repository: str,
        parameters: Mapping[str, int] | None,
        *,
        revision: str | None = None,
        gated: bool = False,
    ) -> None:
        self._models[(repository, revision)] = HubModel(
            None if parameters is None else dict(parameters), gated
        )

    def remove(self, repository: str, *, revision: str | None = None) -> None:
        self._models.pop((repository, revision), None)
        if revision is None:
            self._deployed.pop(repository, None)

    def deployed(self, repository: str, model_gb: float | None) -> None:
        """An endpoint serving `repository` with this model size (the scenario's figure)."""
        if model_gb is not None and model_gb > 0:
            self._deployed.setdefault(repository, model_gb)

    def lookup(self, repository: str, revision: str | None) -> HubModel | None:
        """The model at `revision`: its own entry, else the repository's (any revision has
        the same weights here), else the deploying endpoint's size; None: unknown (404)."""
        got = self._models.get((repository, revision)) or self._models.get((repository, None))
        if got is not None:
            return got
        gb = self._deployed.get(repository)
        return None if gb is None else HubModel({"BF16": round(gb * 1e9 / 2)})
