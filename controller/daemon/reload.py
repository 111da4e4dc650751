"""Reloading the config while `governor run` runs: on SIGHUP, or when the file changes on disk.

A reload happens between ticks (`Governor.run` calls `ConfigReloader.poll` before each tick), so
a tick always runs on one config. The new file is loaded and validated exactly as at start-up; a
file that fails, or that changes a setting only a restart can apply (`RESTART_ONLY`), is rejected
whole and the running config is kept: said in one log line and in `/metrics`.

The file watch compares the file's identity (device, inode, mtime, size, following symlinks)
between ticks and, when it moved, its SHA-256: a Kubernetes ConfigMap volume swaps its `..data`
symlink to a new directory, which changes the inode even when the clock granularity hides the
mtime. By default the watch is on only for a file in such a volume (`loop.watch_config`).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog

from controller.clock import Clock
from controller.daemon.exporter import Metrics
from controller.errors import ConfigError
from controller.settings import Settings

__all__ = [
    "LIVE",
    "RESTART_ONLY",
    "ConfigReloader",
    "FileStamp",
    "changed_keys",
    "config_digest",
    "in_configmap_volume",
    "restart_only_changes",
]

log = structlog.get_logger("governor.reload")

# Settings a reload applies before the next tick (a key path, or a prefix of key paths).
LIVE: tuple[str, ...] = (
    "namespaces",
    "manage",
    "loop",
    "scrape",
    "defaults",
    "endpoints",
    "budgets",
    "quota",
    "log",
    "api.max_clock_skew_s",
    "api.max_replicas",
)
# Settings held by an object built once at start-up (the API client, the metrics listener, the
# state and ledger files, the election, the autopilot's runner, the price book): a reload that
# changes one is refused, and the process must be restarted to apply it.
RESTART_ONLY: tuple[str, ...] = (
    "api.base_url",
    "api.token_file",
    "api.timeout_s",
    "api.call_deadline_s",
    "api.max_retry_after_s",
    "api.max_attempts",
    "api.backoff_initial_s",
    "api.backoff_max_s",
    "api.max_connections",
    "api.hub_url",
    "api.hub_timeout_s",
    "api.hub_max_body_bytes",
    "api.hub_cache_ttl_s",
    "server",
    "state",
    "ledger",
    "election",
    "autopilot",
    "pricing",
)


@dataclass(frozen=True, slots=True)
class FileStamp:
    """What `stat` says of the file (following symlinks); a change means "read it again"."""

    dev: int
    ino: int
    mtime_ns: int
    size: int

    @classmethod
    def of(cls, path: Path) -> FileStamp | None:
        try:
            st = os.stat(path)
        except OSError:
            return None
        return cls(st.st_dev, st.st_ino, st.st_mtime_ns, st.st_size)


def config_digest(path: Path) -> str | None:
    """SHA-256 of the file's bytes (what `sha256sum` prints), or None if it cannot be read."""
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


def in_configmap_volume(path: Path) -> bool:
    """True for a file in a Kubernetes ConfigMap/Secret volume: the kubelet's atomic writer
    keeps the files behind a `..data` symlink in the mounted directory."""
    return (path.parent / "..data").is_symlink()


def _leaves(data: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(data, dict) and data:
        out: dict[str, Any] = {}
        for k, v in data.items():
            out.update(_leaves(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    return {prefix: data}


def _under(key: str, prefixes: tuple[str, ...]) -> bool:
    return any(key == p or key.startswith(p + ".") for p in prefixes)


def changed_keys(old: Settings, new: Settings) -> list[str]:
    """Key paths whose values differ (lists compared whole: `endpoints`, `budgets`)."""
    a = _leaves(old.model_dump(mode="json"))
    b = _leaves(new.model_dump(mode="json"))
    return sorted(k for k in set(a) | set(b) if a.get(k, _MISSING) != b.get(k, _MISSING))


_MISSING = object()


def _short(v: Any) -> str:
    s = "unset" if v is None else str(v)
    return s if len(s) <= 40 else s[:37] + "..."


def restart_only_changes(old: Settings, new: Settings) -> list[str]:
    """The restart-only settings `new` changes, each as `key (old -> new)`; the token unnamed."""
    a = _leaves(old.model_dump(mode="json"))
    b = _leaves(new.model_dump(mode="json"))
    out = [
        f"{k} ({_short(a.get(k))} -> {_short(b.get(k))})"
        for k in changed_keys(old, new)
        if _under(k, RESTART_ONLY)
    ]
    tok_a = old.token.get_secret_value() if old.token else None
    tok_b = new.token.get_secret_value() if new.token else None
    if tok_a != tok_b:
        out.append("the token (HF_TOKEN, api.token_file or the hf auth login cache)")
    return out


def _one_line(msg: str) -> str:
    return "; ".join(part.strip() for part in msg.splitlines() if part.strip())


class ConfigReloader:
    """Decides between ticks whether to reload, loads, checks and hands a good config over.

    `load()` builds the config exactly as the command line did at start (file, environment,
    command-line overrides); `apply(settings)` puts it in force (the loop, logging). `request()`
    is the SIGHUP handler: it only sets a flag, the work is done by `poll()` between ticks.
    """

    def __init__(
        self,
        path: Path | None,
        *,
        load: Callable[[], Settings],
        apply: Callable[[Settings], None],
        running: Settings,
        metrics: Metrics,
        clock: Clock,
        digest: str | None = None,
    ) -> None:
        self.path = path
        self._load = load
        self._apply = apply
        self.running = running
        self.metrics = metrics
        self.clock = clock
        self._requested = False
        self._stamp = FileStamp.of(path) if path is not None else None
        # The content last looked at (loaded or rejected): a rejected file is not retried
        # every tick, only once it changes again or on SIGHUP.
        self._seen = digest if digest is not None else (config_digest(path) if path else None)
        self.digest = self._seen
        metrics.config_loaded(self.digest, clock.now())

    def request(self) -> None:
        self._requested = True

    def watching(self) -> bool:
        if self.path is None:
            return False
        watch = self.running.loop.watch_config
        return in_configmap_volume(self.path) if watch is None else watch

    def _file_moved(self) -> bool:
        assert self.path is not None
        stamp = FileStamp.of(self.path)
        if stamp == self._stamp or stamp is None:
            return False
        self._stamp = stamp
        return config_digest(self.path) not in (None, self._seen)

    def poll(self) -> bool:
        """Reload if asked or the watched file changed; True when a new config was applied."""
        trigger = None
        if self._requested:
            self._requested = False
            trigger = "signal"
        elif self.watching() and self._file_moved():
            trigger = "file"
        if trigger is None:
            return False
        if self.path is None:
            log.warning("config_reload_skipped", trigger=trigger, detail="started without a file")
            return False
        return self.reload(trigger)

    def reload(self, trigger: str) -> bool:
        assert self.path is not None
        self._stamp = FileStamp.of(self.path)
        digest = config_digest(self.path)
        self._seen = digest
        try:
            new = self._load()
        except ConfigError as exc:
            return self._reject(trigger, _one_line(str(exc)))
        blocked = restart_only_changes(self.running, new)
        if blocked:
            return self._reject(trigger, "needs a restart to change: " + ", ".join(blocked))
        changed = changed_keys(self.running, new)
        self._apply(new)
        self.running = new
        self.digest = digest
        self.metrics.config_reloaded(True, digest, self.clock.now())
        log.info("config_reloaded", trigger=trigger, sha256=digest, changed=changed)
        return True

    def _reject(self, trigger: str, why: str) -> bool:
        self.metrics.config_reloaded(False, None, self.clock.now())
        log.error(
            "config_reload_failed",
            trigger=trigger,
            error=why,
            detail=f"the running config is kept (sha256 {self.digest})",
        )
        return False
