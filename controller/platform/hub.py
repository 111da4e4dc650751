"""The model's size from the Hugging Face Hub's model API, for right-sizing.

`GET {hub_url}/api/models/{repo}` (`/revision/{rev}` when the endpoint pins one) answers a
`safetensors` object, `{"parameters": {dtype: count}, "total": n}` (huggingface_hub's
`ModelInfo.safetensors`, a `SafeTensorsInfo`): the parameter count per dtype, read by the Hub
from the repository's safetensors headers. The weights' bytes are the counts times each dtype's
width. That is the model as stored, which is why it beats the feed's GPU memory: an engine that
preallocates its KV cache (vLLM's `gpu_memory_utilization`, 0.9) shows ~90 % whatever the model.

Every failure (network, timeout, 401/403 for a gated or private repository, 404, a body past
`max_body_bytes`, bad JSON, no `safetensors`, an unknown dtype) is a `HubSize` with no size and a
one-line reason; nothing raises. Results, failures included, are cached per (repository,
revision) for `cache_ttl_s`. The token is the management API's, sent as `Authorization: Bearer`
and never put in a message.
"""

from __future__ import annotations

import asyncio
import json
import math
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import httpx

from controller import __version__

if TYPE_CHECKING:
    from controller.settings import Settings

__all__ = [
    "DTYPE_BYTES",
    "HubClient",
    "HubSize",
    "make_hub_client",
    "model_size_from_info",
    "weights_bytes",
]

# Bytes per parameter of each safetensors dtype (the safetensors format's dtype names; any
# `F8_*` float8 variant is one byte). A dtype not listed here makes the size unknown.
DTYPE_BYTES: Mapping[str, float] = {
    "F64": 8,
    "I64": 8,
    "U64": 8,
    "F32": 4,
    "I32": 4,
    "U32": 4,
    "BF16": 2,
    "F16": 2,
    "I16": 2,
    "U16": 2,
    "I8": 1,
    "U8": 1,
    "BOOL": 1,
    "F6_E2M3": 0.75,
    "F6_E3M2": 0.75,
    "F4": 0.5,
    "I4": 0.5,
    "U4": 0.5,
}

# A Hub repository id: `name` or `owner/name` (letters, digits, `-`, `_`, `.`).
_REPO = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,95}(/[A-Za-z0-9][A-Za-z0-9_.-]{0,95})?$")


@dataclass(frozen=True, slots=True)
class HubSize:
    """The Hub's answer for one (repository, revision): the weights' GB, or why it is unknown."""

    repository: str
    revision: str | None
    weights_gb: float | None
    parameters: int = 0
    dtypes: tuple[str, ...] = ()
    reason: str = ""  # why `weights_gb` is None

    def source(self) -> str:
        """Where the size came from, for a recommendation's reason."""
        at = f"@{self.revision}" if self.revision else ""
        return (
            f"the Hub's safetensors parameters of {self.repository}{at}: "
            f"{self.parameters / 1e9:.2f}B {'+'.join(self.dtypes)}"
        )


def _bytes_per(dtype: str) -> float | None:
    if dtype.startswith("F8_"):
        return 1.0
    return DTYPE_BYTES.get(dtype)


def weights_bytes(parameters: Any) -> tuple[float | None, str]:
    """Bytes of `{dtype: count}` (the `safetensors.parameters` object); None with a reason for
    a bad shape, a negative or non-integer count or an unknown dtype."""
    if not isinstance(parameters, dict) or not parameters:
        return None, "safetensors.parameters: expected a non-empty object of dtype -> count"
    total = 0.0
    for dtype, count in parameters.items():
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            return None, f"safetensors.parameters.{dtype}: expected a count >= 0, got {count!r}"
        width = _bytes_per(str(dtype))
        if width is None:
            return None, f"safetensors.parameters.{dtype}: unknown dtype, its width is not known"
        total += count * width
    if not total > 0 or not math.isfinite(total):
        return None, "safetensors.parameters: no weights"
    return total, ""


def model_size_from_info(info: Any, repository: str, revision: str | None) -> HubSize:
    """The weights' size from a model API answer (decoded JSON); pure."""

    def unknown(reason: str) -> HubSize:
        return HubSize(repository, revision, None, reason=reason)

    if not isinstance(info, dict):
        return unknown("the Hub's answer is not a JSON object")
    st = info.get("safetensors")
    if st is None:
        return unknown(f"the Hub states no safetensors for {repository} (not in that format)")
    if not isinstance(st, dict):
        return unknown("safetensors: expected an object")
    params = st.get("parameters")
    size, why = weights_bytes(params)
    if size is None:
        return unknown(why)
    assert isinstance(params, dict)
    count = sum(params.values())
    total = st.get("total")
    if total is not None and (isinstance(total, bool) or not isinstance(total, int)):
        return unknown(f"safetensors.total: expected a count, got {total!r}")
    return HubSize(
        repository,
        revision,
        size / 1e9,
        parameters=count,
        dtypes=tuple(sorted(params)),
    )


class HubClient:
    """The model API over httpx, one pool, a total deadline and a body cap per request."""

    def __init__(
        self,
        url: str,
        token: str | None,
        *,
        timeout_s: float = 10.0,
        max_body_bytes: int = 4 * 1024 * 1024,
        cache_ttl_s: float = 86_400.0,
        monotonic: Callable[[], float] | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        headers = {"user-agent": f"governor/{__version__}", "accept": "application/json"}
        if token:
            headers["authorization"] = f"Bearer {token}"
        self._url = url.rstrip("/")
        self._timeout_s = timeout_s
        self._max_body = max_body_bytes
        self._ttl = cache_ttl_s
        self._mono = monotonic or time.monotonic
        self._http = httpx.AsyncClient(
            headers=headers,
            timeout=httpx.Timeout(timeout_s),
            transport=transport,
            follow_redirects=False,
        )
        self._cache: dict[tuple[str, str | None], tuple[float, HubSize]] = {}
        self.fetches = 0  # requests sent (the cache's effect, for tests and logs)

    def __repr__(self) -> str:
        auth = "set" if "authorization" in self._http.headers else "unset"
        return f"HubClient(url={self._url!r}, token={auth})"

    async def aclose(self) -> None:
        await self._http.aclose()

    def model_url(self, repository: str, revision: str | None) -> str:
        path = f"{self._url}/api/models/{quote(repository, safe='/')}"
        return path if not revision else f"{path}/revision/{quote(revision, safe='')}"

    async def model_size(self, repository: str, revision: str | None = None) -> HubSize:
        """The weights' size of `repository` at `revision` (None: the default branch), cached."""
        key = (repository, revision or None)
        hit = self._cache.get(key)
        now = self._mono()
        if hit is not None and now < hit[0]:
            return hit[1]
        got = await self._fetch(repository, revision or None)
        self._cache[key] = (now + self._ttl, got)
        return got

    async def _fetch(self, repository: str, revision: str | None) -> HubSize:
        def unknown(reason: str) -> HubSize:
            return HubSize(repository, revision, None, reason=reason)

        if not _REPO.match(repository):
            return unknown(f"model.repository {repository!r} is not a Hub repository id")
        url = self.model_url(repository, revision)
        self.fetches += 1
        try:
            async with asyncio.timeout(self._timeout_s):
                status, body = await self._get(url)
        except TimeoutError:
            return unknown(f"the Hub did not answer within {self._timeout_s:g}s")
        except _TooLarge:
            return unknown(f"the Hub's answer is larger than {self._max_body} bytes")
        except httpx.HTTPError as exc:
            return unknown(f"the Hub could not be reached ({type(exc).__name__})")
        if status in (401, 403):
            return unknown(
                f"the Hub answered {status} for {repository} (gated or private: the token has "
                "no access)"
            )
        if status == 404:
            return unknown(f"the Hub has no model {repository} (404)")
        if status != 200:
            return unknown(f"the Hub answered {status} for {repository}")
        try:
            info = json.loads(body)
        except ValueError:
            return unknown("the Hub's answer is not valid JSON")
        return model_size_from_info(info, repository, revision)

    async def _get(self, url: str) -> tuple[int, bytes]:
        async with self._http.stream("GET", url) as resp:
            declared = resp.headers.get("content-length", "")
            if declared.isdigit() and int(declared) > self._max_body:
                raise _TooLarge
            chunks: list[bytes] = []
            size = 0
            async for chunk in resp.aiter_bytes():
                size += len(chunk)
                if size > self._max_body:
                    raise _TooLarge
                chunks.append(chunk)
            return resp.status_code, b"".join(chunks)


class _TooLarge(Exception):
    pass


def make_hub_client(settings: Settings, **kw: Any) -> HubClient:
    """The Hub client `settings.api` describes, with the management API's token (never logged)."""
    a = settings.api
    token = settings.token.get_secret_value() if settings.token else None
    return HubClient(
        a.hub_url,
        token,
        timeout_s=a.hub_timeout_s,
        max_body_bytes=a.hub_max_body_bytes,
        cache_ttl_s=a.hub_cache_ttl_s,
        **kw,
    )
