"""Files Governor creates for itself: private to its user (the ledger is the account's spend).

SQLite creates its `-wal` and `-shm` files with the main file's mode, so making the database file
0600 before SQLite opens it is enough; existing files that others can read are tightened.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

__all__ = ["PRIVATE_MODE", "private_file"]

PRIVATE_MODE = 0o600


def private_file(path: Path) -> None:
    """Create `path` (0600) if absent; tighten it and its SQLite side files if others may read."""
    fd = os.open(path, os.O_CREAT | os.O_RDWR, PRIVATE_MODE)
    os.close(fd)
    for p in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
        with contextlib.suppress(FileNotFoundError):
            if os.stat(p).st_mode & 0o077:
                os.chmod(p, PRIVATE_MODE)
