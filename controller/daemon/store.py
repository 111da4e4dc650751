"""Durable controller state in one SQLite file (WAL), so a restart continues where it stopped.

Holds each endpoint's decision memory (stabilisation history, policy memory). Written once per
tick in one transaction; a row that cannot be read back is dropped with a warning, which makes the
endpoint start conservatively (no scale-down until a full window has been observed again).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Mapping
from pathlib import Path

import structlog

from controller.core import EndpointMemory
from controller.errors import ConfigError
from controller.files import private_file

__all__ = ["StateStore"]

log = structlog.get_logger("governor.store")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS endpoint_memory (
    key TEXT PRIMARY KEY,
    data TEXT NOT NULL,
    updated_at REAL NOT NULL
);
"""
SCHEMA_VERSION = "1"


class StateStore:
    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            private_file(self.path)
            self._db = sqlite3.connect(self.path, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(_SCHEMA)
            row = self._db.execute("SELECT value FROM meta WHERE key='schema'").fetchone()
            if row is None:
                self._db.execute("INSERT INTO meta VALUES ('schema', ?)", (SCHEMA_VERSION,))
            elif row[0] != SCHEMA_VERSION:
                raise ConfigError(
                    f"state.path: {self.path} has schema {row[0]}, this Governor expects "
                    f"{SCHEMA_VERSION}"
                )
        except sqlite3.DatabaseError as exc:
            raise ConfigError(
                f"state.path: {self.path} is not a usable SQLite file: {exc}"
            ) from None
        except OSError as exc:
            raise ConfigError(f"state.path: cannot create {self.path}: {exc.strerror}") from None

    def load_memory(self) -> dict[str, EndpointMemory]:
        out: dict[str, EndpointMemory] = {}
        for key, data in self._db.execute("SELECT key, data FROM endpoint_memory"):
            try:
                out[key] = EndpointMemory.from_json(json.loads(data))
            except (ValueError, KeyError, TypeError) as exc:
                log.warning("state_row_unreadable", endpoint=key, error=str(exc))
        return out

    def load_identity(self) -> str | None:
        """The management API identity Governor's writes carry (`updatedBy`), once learnt."""
        row = self._db.execute("SELECT value FROM meta WHERE key='api_identity'").fetchone()
        return row[0] if row else None

    def save_identity(self, identity: str) -> None:
        self._db.execute(
            "INSERT INTO meta VALUES ('api_identity', ?) "
            "ON CONFLICT(key) DO UPDATE SET value=excluded.value",
            (identity,),
        )

    def save_one(self, key: str, mem: EndpointMemory, *, now: float) -> None:
        """One endpoint's memory, committed now (a write's record must survive a kill -9)."""
        self.save_memory({key: mem}, now=now)

    def save_memory(self, items: Mapping[str, EndpointMemory], *, now: float) -> None:
        # A generator, not a list: at 10,000 endpoints the rows' JSON need not all exist at once.
        rows = ((k, json.dumps(m.to_json()), now) for k, m in items.items())
        with self._tx():
            self._db.executemany(
                "INSERT INTO endpoint_memory (key, data, updated_at) VALUES (?, ?, ?) "
                "ON CONFLICT(key) DO UPDATE SET data=excluded.data, updated_at=excluded.updated_at",
                rows,
            )

    def _tx(self) -> _Tx:
        return _Tx(self._db)

    def close(self) -> None:
        self._db.close()


class _Tx:
    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def __enter__(self) -> None:
        self.db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        self.db.execute("ROLLBACK" if exc_type else "COMMIT")
