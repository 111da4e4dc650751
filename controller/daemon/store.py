"""Durable controller state in one SQLite file (WAL), so a restart continues where it stopped.

Holds each endpoint's decision memory (stabilisation history, policy memory). Written once per
tick in one transaction; a row that cannot be read back is dropped with a warning, which makes the
endpoint start conservatively (no scale-down until a full window has been observed again).

It also records each managed endpoint's demand, one row per endpoint and minute (`demand`):
requests served (the feed's request counter increase), latency sum and count (the latency
summary's increase), pending requests (sum and peak over the minute's samples), ready replicas
(summed per sample), the number of samples and the pending gauge's change since the sample
before (`queue_growth`: answered + growth = arrivals). `DemandRecorder` folds samples into open
minutes; each tick's rows are added to the stored ones (a minute spread over ticks adds up).
Rows older than `state.demand_retention_days` are pruned. `governor export-trace` turns them into
a trace and `governor tune` / the autopilot replay them through the simulator.
"""

from __future__ import annotations

import json
import math
import sqlite3
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import structlog

from controller.core import EndpointMemory
from controller.errors import ConfigError
from controller.files import private_file
from controller.platform.signals import FeedSample
from policies.base import DemandHistory

__all__ = ["DemandMinute", "DemandRecorder", "StateStore", "demand_history", "service_time"]

log = structlog.get_logger("governor.store")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS endpoint_memory (
    key TEXT PRIMARY KEY,
    data TEXT NOT NULL,
    updated_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS demand (
    key TEXT NOT NULL,
    minute INTEGER NOT NULL,
    requests REAL NOT NULL,
    latency_sum REAL NOT NULL,
    latency_count REAL NOT NULL,
    pending_sum REAL NOT NULL,
    pending_max REAL NOT NULL,
    ready_sum REAL NOT NULL,
    samples INTEGER NOT NULL,
    PRIMARY KEY (key, minute)
) WITHOUT ROWID;
"""
_SCHEMA += """
CREATE TABLE IF NOT EXISTS autopilot (key TEXT PRIMARY KEY, data TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS rightsize (key TEXT PRIMARY KEY, data TEXT NOT NULL);
"""
# The demand, autopilot and rightsize tables are additive (created when missing), and so is the
# demand's queue_growth column (added when missing, 0 in older rows): schema 1 files keep working.
SCHEMA_VERSION = "1"


class StateStore:
    def __init__(self, path: Path | str, *, durable: bool = True) -> None:
        """`durable=False` skips the fsync of each commit: for a replay's scratch store (the
        backtest), never for the daemon's."""
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            private_file(self.path)
            self._db = sqlite3.connect(self.path, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(f"PRAGMA synchronous={'FULL' if durable else 'OFF'}")
            self._db.executescript(_SCHEMA)
            cols = {r[1] for r in self._db.execute("PRAGMA table_info(demand)")}
            if "queue_growth" not in cols:
                self._db.execute(
                    "ALTER TABLE demand ADD COLUMN queue_growth REAL NOT NULL DEFAULT 0"
                )
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

    # -- demand ---------------------------------------------------------------------------------

    def record_demand(self, rows: Iterable[DemandMinute]) -> None:
        """Add the rows to the stored minutes (sums add, the pending peak is the larger)."""
        with self._tx():
            self._db.executemany(
                "INSERT INTO demand VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT(key, minute) DO UPDATE SET "
                "requests = requests + excluded.requests, "
                "latency_sum = latency_sum + excluded.latency_sum, "
                "latency_count = latency_count + excluded.latency_count, "
                "pending_sum = pending_sum + excluded.pending_sum, "
                "pending_max = max(pending_max, excluded.pending_max), "
                "ready_sum = ready_sum + excluded.ready_sum, "
                "samples = samples + excluded.samples, "
                "queue_growth = queue_growth + excluded.queue_growth",
                (r.row() for r in rows),
            )

    def prune_demand(self, *, before: float) -> int:
        """Drop minutes that start before `before` (epoch seconds); returns how many."""
        with self._tx():
            cur = self._db.execute(
                "DELETE FROM demand WHERE minute < ?", (math.floor(before / 60),)
            )
        return cur.rowcount

    def demand(
        self, key: str, *, since: float | None = None, until: float | None = None
    ) -> list[DemandMinute]:
        """The recorded minutes of one endpoint (`ns/name`) in [since, until), oldest first."""
        lo = -(2**62) if since is None else math.floor(since / 60)
        hi = 2**62 if until is None else math.ceil(until / 60)
        cur = self._db.execute(
            "SELECT * FROM demand WHERE key = ? AND minute >= ? AND minute < ? ORDER BY minute",
            (key, lo, hi),
        )
        return [DemandMinute(*row) for row in cur]

    def demand_minutes(self, key: str, minutes: Iterable[int]) -> dict[int, DemandMinute]:
        """The recorded minutes of one endpoint among `minutes` (minute numbers), by minute."""
        wanted = sorted(set(minutes))
        out: dict[int, DemandMinute] = {}
        for i in range(0, len(wanted), 500):  # within SQLite's bound-parameter limit
            chunk = wanted[i : i + 500]
            marks = ",".join("?" * len(chunk))
            cur = self._db.execute(
                f"SELECT * FROM demand WHERE key = ? AND minute IN ({marks})", (key, *chunk)
            )
            for row in cur:
                m = DemandMinute(*row)
                out[m.minute] = m
        return out

    def first_minute(self, key: str) -> int | None:
        """The oldest recorded minute of one endpoint (None: nothing recorded)."""
        row = self._db.execute("SELECT MIN(minute) FROM demand WHERE key = ?", (key,)).fetchone()
        return None if row is None or row[0] is None else int(row[0])

    def load_autopilot(self) -> dict[str, str]:
        """The autopilot's per-endpoint state (JSON text; `controller.daemon.autopilot`)."""
        return dict(self._db.execute("SELECT key, data FROM autopilot"))

    def save_autopilot(self, key: str, data: str) -> None:
        with self._tx():
            self._db.execute(
                "INSERT INTO autopilot (key, data) VALUES (?, ?) "
                "ON CONFLICT(key) DO UPDATE SET data=excluded.data",
                (key, data),
            )

    def load_rightsize(self) -> dict[str, str]:
        """Right-sizing's per-endpoint state (JSON text; `controller.daemon.rightsize`)."""
        return dict(self._db.execute("SELECT key, data FROM rightsize"))

    def save_rightsize(self, key: str, data: str) -> None:
        with self._tx():
            self._db.execute(
                "INSERT INTO rightsize (key, data) VALUES (?, ?) "
                "ON CONFLICT(key) DO UPDATE SET data=excluded.data",
                (key, data),
            )

    def demand_keys(self) -> list[str]:
        """Endpoints with recorded demand."""
        return [k for (k,) in self._db.execute("SELECT DISTINCT key FROM demand ORDER BY key")]

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


@dataclass(slots=True)
class DemandMinute:
    """One endpoint's demand over one minute (`minute` = epoch seconds // 60)."""

    key: str
    minute: int
    requests: float = 0.0
    latency_sum: float = 0.0
    latency_count: float = 0.0
    pending_sum: float = 0.0
    pending_max: float = 0.0
    ready_sum: float = 0.0
    samples: int = 0
    queue_growth: float = 0.0

    @property
    def start(self) -> float:
        return self.minute * 60.0

    @property
    def mean_latency_s(self) -> float | None:
        return self.latency_sum / self.latency_count if self.latency_count > 0 else None

    @property
    def mean_pending(self) -> float | None:
        return self.pending_sum / self.samples if self.samples else None

    @property
    def in_system(self) -> float:
        """Mean requests in the endpoint over the minute, queued or in service: the pending
        gauge's mean, or by Little's law (answered x mean latency) where that says more (a feed
        without a pending gauge). Tells a queued minute from one without a queue; not a load to
        size for (`in_flight`)."""
        lat = self.mean_latency_s
        derived = self.requests * lat / 60.0 if lat is not None else 0.0
        return max(self.mean_pending or 0.0, derived)

    @property
    def arrivals(self) -> float:
        """Requests that arrived in the minute: the answered ones plus what the pending gauge
        grew by (a queue that drained gives back what it held; never below 0)."""
        return max(0.0, self.requests + self.queue_growth)

    def in_flight(self, service_s: float | None = None) -> float:
        """The load the minute offered, in requests to serve at once: arrivals per second x the
        time one takes to serve, `service_s` (the endpoint's, `service_time`), or the minute's
        own mean latency where that is shorter.

        Why not the pending gauge's mean, nor arrivals x latency: the engines' pending counts
        the queue and their latency includes the wait in it, so in a backlog both say what
        piled up while replicas were short (a 2-minute burst before its replicas were ready
        reads as tens of replicas' worth, and as the backlog drains it still reads high), not
        what the load needs served; the pre-warm would replay the backlog. Arrivals count each
        request once, when it came (a cold start's 503s included: they are demand too). Without
        any latency record (a feed with a pending gauge only), the pending mean is the one
        figure, queue included."""
        known = [v for v in (self.mean_latency_s, service_s) if v is not None]
        if not known:
            return self.mean_pending or 0.0
        return self.arrivals * min(known) / 60.0

    @property
    def mean_ready(self) -> float | None:
        return self.ready_sum / self.samples if self.samples else None

    def row(self) -> tuple[str, int, float, float, float, float, float, float, int, float]:
        return (
            self.key,
            self.minute,
            self.requests,
            self.latency_sum,
            self.latency_count,
            self.pending_sum,
            self.pending_max,
            self.ready_sum,
            self.samples,
            self.queue_growth,
        )


class DemandRecorder:
    """Folds feed samples into per-minute demand; `drain()` hands the open minutes to the store.

    Requests are counted per counter series (replica and status class), as the metric windows
    do: a series that went down restarted (its new value is all increase), a series first seen
    after the endpoint's first sample (a new replica) counts from 0, and a replica that goes
    away takes nothing back. The latency summary is one series. The first sample of an endpoint
    only sets the baseline.
    """

    def __init__(self) -> None:
        self._prev: dict[str, tuple[dict[tuple[str, str], float], float, float]] = {}
        self._open: dict[tuple[str, int], DemandMinute] = {}
        self._pending: dict[str, float] = {}

    def add(self, key: str, sample: FeedSample, *, ready: int) -> None:
        series = dict(_series(sample))
        lat_n, lat_sum = sample.latency_count or 0.0, sample.latency_sum or 0.0
        prev = self._prev.get(key)
        self._prev[key] = (series, lat_n, lat_sum)
        minute = math.floor(sample.at / 60)
        m = self._open.get((key, minute))
        if m is None:
            m = self._open[(key, minute)] = DemandMinute(key, minute)
        if prev is not None:
            p_series, p_n, p_sum = prev
            for k, v in series.items():
                was = p_series.get(k, 0.0)
                m.requests += v if v < was else v - was
            if lat_n < p_n:  # the summary restarted
                m.latency_count += lat_n
                m.latency_sum += lat_sum
            else:
                m.latency_count += lat_n - p_n
                m.latency_sum += max(0.0, lat_sum - p_sum)
        pending = sample.pending if sample.pending is not None else 0.0
        if prev is not None:
            m.queue_growth += pending - self._pending.get(key, 0.0)
        self._pending[key] = pending
        m.pending_sum += pending
        m.pending_max = max(m.pending_max, pending)
        m.ready_sum += ready
        m.samples += 1

    def forget_except(self, keys: set[str]) -> None:
        for k in set(self._prev) - keys:
            del self._prev[k]
            self._pending.pop(k, None)

    def drain(self) -> list[DemandMinute]:
        rows = list(self._open.values())
        self._open.clear()
        return rows


def _series(sample: FeedSample) -> Mapping[tuple[str, str], float]:
    """The request counters per (replica, class); hand-built samples may carry coarser maps."""
    if sample.request_series:
        return sample.request_series
    if sample.requests:
        return {("", cls): v for cls, v in sample.requests.items()}
    return {(r, "other"): v for r, v in sample.requests_by_replica.items()}


def service_time(rows: Iterable[DemandMinute]) -> float | None:
    """The endpoint's service time: the median of its minutes' mean latency (minutes with
    requests). Queueing inflates a backlog's minutes only, and those are few (bursts), so the
    median is a quiet minute's; None without latency records."""
    lat = sorted(v for r in rows if (v := r.mean_latency_s) is not None and r.requests >= 1)
    return lat[len(lat) // 2] if lat else None


def demand_history(
    store: StateStore, key: str, *, now: float, lags: Iterable[float], horizon_s: float
) -> DemandHistory | None:
    """The per-minute served load (`DemandMinute.in_flight`, with the service time of the minutes
    read) at `now - lag` and the `horizon_s` after it, for each lag, from the recorded demand
    (`DemandHistory`, the pre-warm's input); None when nothing is recorded for the endpoint."""
    first = store.first_minute(key)
    if first is None:
        return None
    n = math.ceil(horizon_s / 60.0) + 1
    spans = [(lag, math.floor((now - lag) / 60.0)) for lag in lags]
    got = store.demand_minutes(key, (m + i for _, m in spans for i in range(n)))
    service = service_time(got.values())
    out = []
    for lag, m in spans:
        loads = tuple(got[m + i].in_flight(service) if (m + i) in got else None for i in range(n))
        out.append((float(lag), loads))
    return DemandHistory(at=now, lags=tuple(out), recorded_s=max(0.0, now - first * 60.0))
