"""One Governor per state directory: an exclusive, non-blocking `flock` held for the process life.

Two daemons on one state file both decide and both bill the same minutes into the ledger. The lock
file `.governor.lock` sits in every directory holding the state or the ledger file; the kernel
drops the lock when the process dies (kill -9 included), so a stale lock never blocks a restart.
The holder's pid is written into the file only to name it in the refusal.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterable
from pathlib import Path
from types import TracebackType

from controller.errors import ConfigError, StateLockedError
from controller.files import private_file

__all__ = ["LOCK_NAME", "StateLock"]

LOCK_NAME = ".governor.lock"


class StateLock:
    """Hold `.governor.lock` in each of `dirs`; `acquire` raises StateLockedError if taken."""

    def __init__(self, dirs: Iterable[Path]) -> None:
        self.paths = sorted({Path(d).resolve() / LOCK_NAME for d in dirs})
        self._fds: list[int] = []

    @classmethod
    def for_files(cls, *files: Path | None) -> StateLock:
        return cls(Path(f).parent for f in files if f is not None)

    def acquire(self) -> None:
        try:
            for path in self.paths:
                self._fds.append(self._take(path))
        except BaseException:
            self.release()
            raise

    def _take(self, path: Path) -> int:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            private_file(path)
            fd = os.open(path, os.O_RDWR)
        except OSError as exc:
            raise ConfigError(f"state.path: cannot create lock {path}: {exc.strerror}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
            os.close(fd)
            raise StateLockedError(
                f"state directory {path.parent} is in use by another governor (pid {holder}); "
                "run one Governor per state directory (use leader election for replicas)"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        return fd

    def release(self) -> None:
        for fd in self._fds:
            with contextlib.suppress(OSError):
                os.close(fd)
        self._fds = []

    def __enter__(self) -> StateLock:
        self.acquire()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()
