"""The billing ledger: what every endpoint has cost, recorded tick by tick in SQLite (WAL).

Billing model (the platform's, see `docs/cost.md`): each replica is billed from its creation until
its removal, its lifetime rounded **up** to whole minutes, at its instance's hourly rate / 60 per
minute; replicas exist while the endpoint is initializing, running or updating. The ledger keeps,
per endpoint, the replicas it believes are alive (start time, rate, minutes already recorded). Each
tick it compares the listed `targetReplica` with that set and dates any change:

- `status.updatedAt` moved since the last tick and lies in the interval: the change is an API call
  (Governor's own actions, a person's) and happened then; when the endpoint had to go through
  `pending` (resume from paused, a new endpoint) the replicas start `ledger.pending_s` later;
- otherwise (platform autoscaler, idle scale-to-zero, wake on request): the middle of the interval.

The interval ends when the listing was answered (`observe(now=...)`), and an `updatedAt` counts
from when the previous listing was asked for (`asked_at`): a listing shows the world somewhere
between the two, and billing it as of the tick's start dated a change made during a slow listing
too early (a scale-down: lost minutes) or not at all.

Removals take the newest replicas first (the platform removes not-ready, then newest, first).
Minutes are recorded into per-day buckets (by each minute's start, in `ledger.timezone`) with the
rate they were billed at. One tick is one transaction: a `kill -9` loses nothing that was recorded.

**What a tick writes.** An endpoint's row (`ledger_endpoint.data`) is rewritten only when its
state changed (replicas, `updatedAt`, state, target, scaling, tags, instance); otherwise the tick
only moves its `last_observed` and `asked` columns. A replica's billed minutes are stored as
`null` when they are the minutes its lifetime up to `last_observed` rounds up to (what every tick
leaves behind), and explicitly otherwise, so the row still says exactly what was billed
(schema 2; a schema-1 file is upgraded on open). Rewriting all 10,000 rows' JSON each tick was
~0.2 s of CPU per tick.

**Gaps.** When more than `gap_ticks` tick intervals passed since an endpoint was last observed
(Governor was down, or a listing failed), the interval is an estimate: the last observed replicas
are assumed to have run until now (unless `updatedAt` dates a change). Minutes recorded for it are
flagged `estimated`, and the gap itself is kept in `ledger_gap` (exported as
`governor_ledger_estimated_seconds`).

An endpoint Governor has never seen is recorded from its first sighting (or from its creation if
that was within the gap threshold).

**Under leader election** only the leader records. After every tick it publishes its ledger's
state (`watermark`: per endpoint the billed-through time and the replicas with their billed
minutes) in the Lease; a standby records nothing and keeps its listings (`standby_buffer_ticks`).
A standby that takes over adopts the Lease's watermark and replays its own listings from there
(`take_over`), so the minutes between the old leader's last record and the take-over are billed
once. Spend a leader records but has not yet seen published is also kept in
`ledger_unpublished`; if a successor billed from an older watermark (the leader was killed
between its commit and its publish), those minutes are taken back (`undo_after`).
"""

from __future__ import annotations

import json
import math
import sqlite3
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

import structlog

from controller.cost.budget import BudgetLevel, budget_status
from controller.cost.forecast import (
    SLOTS_PER_WEEK,
    Profile,
    SlotArray,
    billed_replicas,
    day_bounds,
    day_key,
    hour_of_week,
    month_bounds,
    project_spend,
)
from controller.cost.pricing import PriceBook, pricing_version
from controller.cost.quota import QuotaLine, quota_lines, quota_usage
from controller.errors import ConfigError
from controller.files import private_file
from controller.platform.models import AnyEndpoint, EndpointState

if TYPE_CHECKING:  # the ledger reads settings by attribute; config sits above cost
    from controller.settings import Settings

__all__ = [
    "BudgetState",
    "CostReport",
    "CostTracker",
    "EndpointCost",
    "GroupCost",
    "Ledger",
]

log = structlog.get_logger("governor.ledger")

S = EndpointState
UNKNOWN_PRICE = -1.0  # stored rate of minutes whose instance had no known price
LEDGER_SCHEMA = "2"
_UPGRADABLE = {"1"}  # older schemas this one reads; opening for writing upgrades them

_SCHEMA = """
CREATE TABLE IF NOT EXISTS ledger_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS ledger_endpoint (
    key TEXT PRIMARY KEY,
    data TEXT NOT NULL,
    last_observed REAL NOT NULL,
    asked REAL
);
CREATE TABLE IF NOT EXISTS ledger_spend (
    key TEXT NOT NULL,
    day TEXT NOT NULL,
    price REAL NOT NULL,
    estimated INTEGER NOT NULL,
    minutes INTEGER NOT NULL,
    PRIMARY KEY (key, day, price, estimated)
);
CREATE TABLE IF NOT EXISTS ledger_gap (
    key TEXT NOT NULL,
    t_from REAL NOT NULL,
    t_to REAL NOT NULL,
    replicas INTEGER NOT NULL,
    PRIMARY KEY (key, t_from)
);
CREATE TABLE IF NOT EXISTS ledger_unpublished (
    at REAL NOT NULL,
    key TEXT NOT NULL,
    day TEXT NOT NULL,
    price REAL NOT NULL,
    estimated INTEGER NOT NULL,
    minutes INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS ledger_profile (
    key TEXT NOT NULL,
    slot INTEGER NOT NULL,
    replica_s REAL NOT NULL,
    seconds REAL NOT NULL,
    PRIMARY KEY (key, slot)
);
"""


def _minutes(seconds: float) -> int:
    """Billed minutes of a lifetime: started minutes count in full (the platform's rule)."""
    return max(0, math.ceil(seconds / 60.0 - 1e-9))


@dataclass(slots=True)
class _Rep:
    start: float
    price: float | None
    minutes: int = 0


@dataclass(slots=True)
class _EpState:
    key: str
    namespace: str
    name: str
    tags: list[str]
    instance: tuple[str, str, str]
    state: str
    target: int
    min_replica: int
    max_replica: int
    updated_at: str
    last_observed: float
    reps: list[_Rep] = field(default_factory=list)
    # When the listing that last observed it was asked for: a change that listing did not show
    # happened after then, though maybe before `last_observed` (when the answer came).
    asked_at: float | None = None
    # The stored row's `data` no longer says this state: the next tick rewrites it.
    dirty: bool = True
    # Some replica's minutes are not what its lifetime to `last_observed` rounds up to (an odd
    # watermark): the row stores every replica's minutes explicitly while it lasts.
    pinned: bool = True

    def _state(self, minutes: bool) -> dict[str, Any]:
        """The state; each replica's minutes only where `minutes` (else `null`: following)."""
        return {
            "namespace": self.namespace,
            "name": self.name,
            "tags": self.tags,
            "instance": list(self.instance),
            "state": self.state,
            "target": self.target,
            "min_replica": self.min_replica,
            "max_replica": self.max_replica,
            "updated_at": self.updated_at,
            "reps": [[r.start, r.price, r.minutes if minutes else None] for r in self.reps],
        }

    def to_json(self) -> dict[str, Any]:
        return {**self._state(True), "asked": self.asked_at}

    def row_data(self) -> str:
        """The stored row: the state without what moves every tick (`last_observed`, `asked`
        are columns; following minutes are `null`, see the module docstring)."""
        return json.dumps(self._state(self.pinned))

    @classmethod
    def from_json(
        cls, key: str, d: dict[str, Any], last_observed: float, asked: float | None = None
    ) -> _EpState:
        """A stored row or a watermark entry; `null` minutes are the following ones."""
        reps = [
            _Rep(
                float(s),
                None if p is None else float(p),
                _minutes(last_observed - float(s)) if m is None else int(m),
            )
            for s, p, m in d["reps"]
        ]
        if asked is None and d.get("asked") is not None:
            asked = float(d["asked"])
        return cls(
            key=key,
            namespace=d["namespace"],
            name=d["name"],
            tags=list(d["tags"]),
            instance=tuple(d["instance"]),  # type: ignore[arg-type]
            state=d["state"],
            target=int(d["target"]),
            min_replica=int(d["min_replica"]),
            max_replica=int(d["max_replica"]),
            updated_at=d["updated_at"],
            last_observed=last_observed,
            reps=reps,
            asked_at=asked,
            dirty=False,
            pinned=any(r.minutes != _minutes(last_observed - r.start) for r in reps),
        )


@dataclass(frozen=True, slots=True)
class SpendCell:
    usd: float | None  # None when some minutes had no known price
    minutes: int
    estimated_usd: float


class Ledger:
    """Per-endpoint spend, integrated from what each tick observes. A `TickObserver`."""

    def __init__(
        self,
        path: Path | str,
        *,
        prices: PriceBook,
        tick_interval_s: float,
        pending_s: float = 10.0,
        gap_ticks: float = 2.0,
        timezone: str = "UTC",
        readonly: bool = False,
        standby_buffer_ticks: int = 64,
    ) -> None:
        self.path = Path(path)
        self.prices = prices
        self.tick_interval_s = tick_interval_s
        self.pending_s = pending_s
        self.gap_s = gap_ticks * tick_interval_s
        self.tz = ZoneInfo(timezone)
        self.readonly = readonly
        self._eps: dict[str, _EpState] = {}
        # A standby's listings since the leader's last published watermark (leader election):
        # (answered at, asked at, endpoints).
        self._buffer: deque[tuple[float, float, list[AnyEndpoint]]] = deque(
            maxlen=standby_buffer_ticks
        )
        # Under election the leader keeps each tick's spend until its watermark is published.
        self.track_unpublished = False
        # The forecast profiles, mirrored in memory once read (see `profiles`).
        self._profiles: dict[str, tuple[SlotArray, SlotArray, set[int]]] | None = None
        try:
            if readonly:
                if self.path.exists():
                    self._db = sqlite3.connect(
                        f"file:{self.path}?mode=ro", uri=True, isolation_level=None
                    )
                else:
                    self._db = sqlite3.connect(":memory:", isolation_level=None)
                    self._db.executescript(_SCHEMA)
                if not self._has_tables():
                    self._db.close()
                    self._db = sqlite3.connect(":memory:", isolation_level=None)
                    self._db.executescript(_SCHEMA)
            else:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                private_file(self.path)
                self._db = sqlite3.connect(self.path, isolation_level=None)
                self._db.execute("PRAGMA journal_mode=WAL")
                self._db.execute("PRAGMA synchronous=FULL")
                self._db.execute("PRAGMA busy_timeout=5000")
                self._db.executescript(_SCHEMA)
                row = self._db.execute(
                    "SELECT value FROM ledger_meta WHERE key='schema'"
                ).fetchone()
                if row is None:
                    self._db.execute(
                        "INSERT INTO ledger_meta VALUES ('schema', ?)", (LEDGER_SCHEMA,)
                    )
                elif row[0] in _UPGRADABLE:
                    self._upgrade()
                elif row[0] != LEDGER_SCHEMA:
                    raise ConfigError(
                        f"ledger.path: {self.path} has ledger schema {row[0]}, this Governor "
                        f"expects {LEDGER_SCHEMA}"
                    )
            self._load_states()
        except sqlite3.DatabaseError as exc:
            raise ConfigError(
                f"ledger.path: {self.path} is not a usable SQLite file: {exc}"
            ) from None
        except OSError as exc:
            raise ConfigError(f"ledger.path: cannot open {self.path}: {exc.strerror}") from None

    def _has_asked_column(self) -> bool:
        cols = self._db.execute("PRAGMA table_info(ledger_endpoint)").fetchall()
        return any(c[1] == "asked" for c in cols)

    def _upgrade(self) -> None:
        """Schema 1 -> 2: the `asked` column (schema-1 rows keep theirs in `data`, still read)."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            if not self._has_asked_column():
                self._db.execute("ALTER TABLE ledger_endpoint ADD COLUMN asked REAL")
            self._db.execute(
                "UPDATE ledger_meta SET value = ? WHERE key = 'schema'", (LEDGER_SCHEMA,)
            )
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def _load_states(self) -> None:
        q = "SELECT key, data, last_observed, asked FROM ledger_endpoint"
        if not self._has_asked_column():  # a schema-1 file opened read-only
            q = "SELECT key, data, last_observed, NULL FROM ledger_endpoint"
        rows = self._db.execute(q).fetchall()
        for key, data, last, asked_at in rows:
            try:
                self._eps[key] = _EpState.from_json(key, json.loads(data), last, asked_at)
            except (ValueError, KeyError, TypeError) as exc:
                log.warning("ledger_row_unreadable", endpoint=key, error=str(exc))

    def _has_tables(self) -> bool:
        row = self._db.execute(
            "SELECT count(*) FROM sqlite_master WHERE type='table' AND name='ledger_spend'"
        ).fetchone()
        return bool(row and row[0])

    def close(self) -> None:
        self._db.close()

    # -- recording ------------------------------------------------------------------------------

    def observe(
        self,
        endpoints: Sequence[AnyEndpoint],
        *,
        now: float,
        record: bool = True,
        asked_at: float | None = None,
    ) -> None:
        """Record every listed endpoint's spend up to `now`, in one transaction.

        `now` is when the listing was answered: every change it shows happened by then (the
        tick's start is too early: a change made while the listing was on its way was dated
        before it happened, or not at all). `asked_at` (default `now`) is when it was asked for:
        a change it does not show happened after then, and the next listing dates it from there.

        With `record=False` (a standby under leader election) nothing is recorded: the listing is
        kept for `take_over`, which bills from the leader's watermark with it."""
        if self.readonly:
            raise RuntimeError("ledger opened read-only")
        asked = now if asked_at is None else min(asked_at, now)
        if not record:
            self._buffer.append((now, asked, list(endpoints)))
            return
        self._observe(endpoints, now=now, asked_at=asked, record=True)

    def _observe(
        self,
        endpoints: Sequence[AnyEndpoint],
        *,
        now: float,
        record: bool,
        asked_at: float | None = None,
    ) -> None:
        """Advance every listed endpoint to `now`; with `record=False` the replicas are followed
        and their minutes counted as billed but no spend is written (a leader that left no
        watermark: an older Governor)."""
        spend: dict[tuple[str, str, float, int], int] = {}
        gaps: list[tuple[str, float, float, int]] = []
        prof: dict[tuple[str, int], list[float]] = {}
        touched: list[_EpState] = []
        asked = now if asked_at is None else asked_at
        for ep in endpoints:
            try:
                st = self._advance(ep, now, asked, spend, gaps, prof)
            except Exception:  # one odd endpoint must not cost the others their record
                log.exception("ledger_observe_failed", endpoint=ep.key)
                continue
            if st is not None:
                touched.append(st)
        if not record:
            spend.clear()
            gaps.clear()
            prof.clear()
        self._db.execute("BEGIN IMMEDIATE")
        try:
            self._db.executemany(
                "INSERT INTO ledger_spend (key, day, price, estimated, minutes) VALUES (?,?,?,?,?) "
                "ON CONFLICT(key, day, price, estimated) DO UPDATE SET "
                "minutes = minutes + excluded.minutes",
                [(k, d, p, e, m) for (k, d, p, e), m in spend.items() if m],
            )
            if self.track_unpublished:
                self._db.executemany(
                    "INSERT INTO ledger_unpublished (at, key, day, price, estimated, minutes) "
                    "VALUES (?,?,?,?,?,?)",
                    [(now, k, d, p, e, m) for (k, d, p, e), m in spend.items() if m],
                )
            self._db.executemany(
                "INSERT OR REPLACE INTO ledger_gap (key, t_from, t_to, replicas) VALUES (?,?,?,?)",
                gaps,
            )
            self._db.executemany(
                "INSERT INTO ledger_profile (key, slot, replica_s, seconds) VALUES (?,?,?,?) "
                "ON CONFLICT(key, slot) DO UPDATE SET replica_s = replica_s + excluded.replica_s, "
                "seconds = seconds + excluded.seconds",
                [(k, s, v[0], v[1]) for (k, s), v in prof.items()],
            )
            changed = [s for s in touched if s.dirty]
            self._db.executemany(
                "INSERT INTO ledger_endpoint (key, data, last_observed, asked) VALUES (?,?,?,?) "
                "ON CONFLICT(key) DO UPDATE SET data=excluded.data, "
                "last_observed=excluded.last_observed, asked=excluded.asked",
                [(s.key, s.row_data(), s.last_observed, s.asked_at) for s in changed],
            )
            self._db.executemany(
                "UPDATE ledger_endpoint SET last_observed = ?, asked = ? WHERE key = ?",
                [(s.last_observed, s.asked_at, s.key) for s in touched if not s.dirty],
            )
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")
        for st in changed:
            st.dirty = False
        if self._profiles is not None:
            for (key, slot), (replica_s, seconds) in prof.items():
                self._add_profile(self._profiles, key, slot, replica_s, seconds)

    def _advance(
        self,
        ep: AnyEndpoint,
        now: float,
        asked_at: float,
        spend: dict[tuple[str, str, float, int], int],
        gaps: list[tuple[str, float, float, int]],
        prof: dict[tuple[str, int], list[float]],
    ) -> _EpState | None:
        key = ep.key
        row = self.prices.for_endpoint(ep)
        price = row.usd_per_hour if row is not None else None
        n = billed_replicas(ep)
        upd_s = ep.status.updated_at.isoformat()
        upd = ep.status.updated_at.timestamp()
        st = self._eps.get(key)
        if st is None:
            created = ep.status.created_at.timestamp()
            if now - self.gap_s <= created < now:
                # Born since the last tick: bill from the end of its pending phase.
                st = self._new_state(ep, last_observed=created, state=S.PENDING.value)
                st.updated_at = upd_s if upd <= created else ""
            else:
                st = self._new_state(ep, last_observed=now, state=ep.state.value)
                st.updated_at = upd_s
                st.reps = [_Rep(now, price) for _ in range(n)]
                st.asked_at = asked_at
                st.pinned = False  # every replica at 0 minutes, born now
                self._eps[key] = st
                return self._refresh(st, ep, now)
            self._eps[key] = st
        t0 = st.last_observed
        if now <= t0:
            return None
        if n != len(st.reps) or upd_s != st.updated_at:
            st.dirty = True
        gap = now - t0 > self.gap_s
        est = 1 if gap else 0
        m = len(st.reps)
        # The last listing was asked for at `lo` and answered at `t0`: a change it did not show
        # but this one does happened after `lo`.
        lo = t0 if st.asked_at is None else min(st.asked_at, t0)
        upd_changed = upd_s != st.updated_at and lo - 1e-6 <= upd <= now
        tau = (t0 + now) / 2.0
        if n != m:
            via_pending = (
                m == 0
                and n > 0
                and st.state in (S.PENDING.value, S.PAUSED.value, S.FAILED.value, "updateFailed")
            )
            if upd_changed or (via_pending and st.state == S.PENDING.value):
                tau = upd + (self.pending_s if via_pending else 0.0)
            elif gap:
                tau = now  # the last observed replicas are assumed to have run until now
            tau = min(max(tau, lo if upd_changed else t0), now)
        if n < m:
            st.reps.sort(key=lambda r: r.start)
            closing, st.reps = st.reps[n:], st.reps[:n]
            for r in closing:
                self._charge(key, r, tau, est, spend)
        elif n > m:
            st.reps.extend(_Rep(tau, price) for _ in range(n - m))
        following = True
        for r in st.reps:
            following = self._charge(key, r, now, est, spend) and following
        if st.pinned or not following:
            st.dirty = True  # the row's explicit minutes change (or must be stored explicitly)
        st.pinned = not following
        if gap:
            gaps.append((key, t0, now, m))
            log.warning(
                "ledger_gap_estimated",
                endpoint=key,
                seconds=round(now - t0, 1),
                assumed_replicas=m,
                detail="spend for this interval is an estimate",
            )
        else:
            slot = hour_of_week((t0 + now) / 2.0, self.tz)
            acc = prof.setdefault((key, slot), [0.0, 0.0])
            at = max(tau, t0)
            acc[0] += m * (at - t0) + n * (now - at)
            acc[1] += now - t0
        st.updated_at = upd_s
        st.last_observed = now
        st.asked_at = asked_at
        return self._refresh(st, ep, now)

    def _new_state(self, ep: AnyEndpoint, *, last_observed: float, state: str) -> _EpState:
        c = ep.compute
        return _EpState(
            key=ep.key,
            namespace=ep.namespace or "",
            name=ep.name,
            tags=list(ep.tags),
            instance=(ep.provider.vendor, c.instance_type, c.instance_size),
            state=state,
            target=0,
            min_replica=c.scaling.min_replica,
            max_replica=c.scaling.max_replica,
            updated_at="",
            last_observed=last_observed,
        )

    @staticmethod
    def _refresh(st: _EpState, ep: AnyEndpoint, now: float) -> _EpState:
        c = ep.compute
        tags = list(ep.tags)
        instance = (ep.provider.vendor, c.instance_type, c.instance_size)
        state = ep.state.value
        target = ep.status.target_replica
        lo, hi = c.scaling.min_replica, c.scaling.max_replica
        if (
            tags != st.tags
            or instance != st.instance
            or state != st.state
            or target != st.target
            or lo != st.min_replica
            or hi != st.max_replica
        ):
            st.tags, st.instance, st.state, st.target = tags, instance, state, target
            st.min_replica, st.max_replica = lo, hi
            st.dirty = True
        st.last_observed = now
        return st

    def _charge(
        self,
        key: str,
        rep: _Rep,
        upto: float,
        est: int,
        spend: dict[tuple[str, str, float, int], int],
    ) -> bool:
        """Bill `rep` up to `upto`; True when its minutes are then its lifetime's to `upto`."""
        target = _minutes(upto - rep.start)
        k = rep.minutes + 1
        price = UNKNOWN_PRICE if rep.price is None else rep.price
        while k <= target:
            minute_start = rep.start + (k - 1) * 60.0
            _, day_end = day_bounds(minute_start, self.tz)
            last = max(k, min(target, _minutes(day_end - rep.start)))
            b = (key, day_key(minute_start, self.tz), price, est)
            spend[b] = spend.get(b, 0) + (last - k + 1)
            k = last + 1
        rep.minutes = max(rep.minutes, target)
        return rep.minutes == target

    # -- leader election: the watermark, the take-over, unpublished spend ----------------------

    def watermark(self) -> dict[str, dict[str, Any]]:
        """Per endpoint, what this ledger has billed: the state `take_over` resumes from."""
        return {
            k: {**st.to_json(), "last_observed": st.last_observed} for k, st in self._eps.items()
        }

    def take_over(
        self,
        watermark: dict[str, dict[str, Any]] | None,
        *,
        since: float | None,
        complete: bool = True,
        record: bool = True,
    ) -> int:
        """Become the leader's ledger: adopt the old leader's `watermark` (taken at `since`),
        then bill the standby's own listings after it. Returns how many listings were replayed.

        With no watermark the ledger resumes from its own last record (the winner of a Lease with
        no watermark wrote its own there); `record=False` follows the listings without billing
        them."""
        if self.readonly:
            raise RuntimeError("ledger opened read-only")
        if watermark is not None:
            adopted: dict[str, _EpState] = {}
            for key, d in watermark.items():
                try:
                    adopted[key] = _EpState.from_json(key, d, float(d["last_observed"]))
                except (ValueError, KeyError, TypeError) as exc:
                    log.warning("ledger_watermark_row_unreadable", endpoint=key, error=str(exc))
            if complete:
                # An endpoint the old leader did not know is new since: it starts from scratch.
                self._eps = adopted
            else:
                self._eps.update(adopted)
            self._save_states()
        cut = -math.inf if since is None else since
        replay = [entry for entry in self._buffer if entry[0] > cut]
        self._buffer.clear()
        for t, asked, eps in replay:
            self._observe(eps, now=t, asked_at=asked, record=record)
        return len(replay)

    def prune_buffer(self, through: float) -> None:
        """Forget the standby's listings the leader has billed (its watermark is at `through`)."""
        while self._buffer and self._buffer[0][0] <= through:
            self._buffer.popleft()

    def _save_states(self) -> None:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            self._db.execute("DELETE FROM ledger_endpoint")
            self._db.executemany(
                "INSERT INTO ledger_endpoint (key, data, last_observed, asked) VALUES (?,?,?,?)",
                [(s.key, s.row_data(), s.last_observed, s.asked_at) for s in self._eps.values()],
            )
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")
        for st in self._eps.values():
            st.dirty = False

    def unpublished_at(self) -> list[float]:
        """The ticks whose spend is recorded but not yet known to be in a published watermark."""
        rows = self._db.execute("SELECT DISTINCT at FROM ledger_unpublished ORDER BY at")
        return [r[0] for r in rows]

    def confirm_through(self, at: float) -> None:
        """Spend up to `at` is in a published watermark: a successor resumes after it."""
        self._db.execute("DELETE FROM ledger_unpublished WHERE at <= ?", (at,))

    def undo_after(self, at: float) -> int:
        """Take back the spend recorded after `at` that no watermark carried: a successor billed
        those minutes from the watermark at `at`. Returns the replica-minutes taken back."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            rows = self._db.execute(
                "SELECT key, day, price, estimated, SUM(minutes) FROM ledger_unpublished "
                "WHERE at > ? GROUP BY key, day, price, estimated",
                (at,),
            ).fetchall()
            self._db.executemany(
                "UPDATE ledger_spend SET minutes = MAX(0, minutes - ?) "
                "WHERE key = ? AND day = ? AND price = ? AND estimated = ?",
                [(m, k, d, p, e) for k, d, p, e, m in rows],
            )
            self._db.execute("DELETE FROM ledger_unpublished WHERE at > ?", (at,))
            self._db.execute("DELETE FROM ledger_unpublished WHERE at <= ?", (at,))
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")
        undone = sum(int(r[4]) for r in rows)
        if undone:
            log.warning(
                "ledger_unpublished_undone",
                after=at,
                replica_minutes=undone,
                detail="a successor billed these minutes from an older watermark",
            )
        return undone

    # -- queries --------------------------------------------------------------------------------

    def known(self) -> dict[str, _EpState]:
        return dict(self._eps)

    def spend(self, since: float, until: float, key: str | None = None) -> dict[str, SpendCell]:
        """Recorded spend per endpoint for the local days in [since, until)."""
        d0, d1 = day_key(since, self.tz), day_key(until - 1e-3, self.tz)
        q = (
            "SELECT key, price, estimated, SUM(minutes) FROM ledger_spend "
            "WHERE day >= ? AND day <= ?"
        )
        args: list[Any] = [d0, d1]
        if key is not None:
            q += " AND key = ?"
            args.append(key)
        q += " GROUP BY key, price, estimated"
        acc: dict[str, list[Any]] = {}
        for k, price, estimated, minutes in self._db.execute(q, args):
            a = acc.setdefault(k, [0.0, 0, 0.0, False])
            a[1] += minutes
            if price == UNKNOWN_PRICE:
                a[3] = True
                continue
            usd = price * minutes / 60.0
            a[0] += usd
            if estimated:
                a[2] += usd
        return {k: SpendCell(None if a[3] else a[0], a[1], a[2]) for k, a in acc.items()}

    def total_usd(self, key: str) -> float | None:
        cell = self.spend(0.0, 4e9, key).get(key)
        return 0.0 if cell is None else cell.usd

    def gaps(self, key: str | None = None) -> list[tuple[str, float, float, int]]:
        q = "SELECT key, t_from, t_to, replicas FROM ledger_gap"
        args: tuple[Any, ...] = ()
        if key is not None:
            q += " WHERE key = ?"
            args = (key,)
        return [tuple(r) for r in self._db.execute(q + " ORDER BY t_from", args)]  # type: ignore[misc]

    def estimated_seconds(self, since: float) -> dict[str, float]:
        out: dict[str, float] = {}
        for k, a, b in self._db.execute(
            "SELECT key, t_from, t_to FROM ledger_gap WHERE t_to > ?", (since,)
        ):
            out[k] = out.get(k, 0.0) + (b - max(a, since))
        return out

    def profiles(self) -> dict[str, Profile]:
        """Each endpoint's hour-of-week profile, for the forecast.

        A writing ledger reads the table once and then keeps it in memory, updated by `observe`
        after each commit: reading a week-old table every tick (168 rows per endpoint) cost 2.9 s
        of CPU and 190 MB of transient dicts at 10,000 endpoints. The mirror is two arrays of 168
        doubles per endpoint (~2.8 KB) and the set of slots observed, so the forecast of a young
        ledger looks at those slots only. A read-only ledger (`governor cost`) reads it each call.
        """
        if self._profiles is not None:
            table = self._profiles
        else:
            table = {}
            for k, slot, r, sec in self._db.execute(
                "SELECT key, slot, replica_s, seconds FROM ledger_profile"
            ):
                self._add_profile(table, k, slot, r, sec)
            if not self.readonly:
                self._profiles = table
        return {k: Profile(r, sec, slots) for k, (r, sec, slots) in table.items()}

    @staticmethod
    def _add_profile(
        table: dict[str, tuple[SlotArray, SlotArray, set[int]]],
        key: str,
        slot: int,
        replica_s: float,
        seconds: float,
    ) -> None:
        if not 0 <= slot < SLOTS_PER_WEEK:
            return  # not an hour-of-week slot: nothing `project_spend` would ever ask for
        pair = table.get(key)
        if pair is None:
            pair = table[key] = (SlotArray.zeros(), SlotArray.zeros(), set())
        pair[0][slot] += replica_s
        pair[1][slot] += seconds
        pair[2].add(slot)  # the slots the forecast has to look at (`Profile.slots`)


# -- the report (metrics and `governor cost`) ---------------------------------------------------


@dataclass(frozen=True, slots=True)
class EndpointCost:
    namespace: str
    name: str
    tags: tuple[str, ...]
    instance: str
    state: str
    replicas: int
    usd_per_hour: float | None  # the instance's rate per replica
    rate_usd_per_hour: float | None  # billed replicas x rate, now
    today_usd: float | None
    month_usd: float | None
    forecast_day_usd: float | None
    forecast_month_usd: float | None
    estimated_s: float
    estimated_usd: float

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True, slots=True)
class GroupCost:
    kind: str  # namespace | tag
    name: str
    endpoints: int
    rate_usd_per_hour: float | None
    today_usd: float | None
    month_usd: float | None
    forecast_day_usd: float | None
    forecast_month_usd: float | None


@dataclass(frozen=True, slots=True)
class BudgetState:
    scope: str  # e.g. namespace:acme
    period: str
    cap_usd: float
    spend_usd: float | None
    forecast_usd: float | None
    level: BudgetLevel

    @property
    def use_ratio(self) -> float | None:
        return None if self.forecast_usd is None else self.forecast_usd / self.cap_usd

    @property
    def headroom_usd(self) -> float | None:
        return None if self.forecast_usd is None else self.cap_usd - self.forecast_usd


@dataclass(frozen=True, slots=True)
class CostReport:
    at: float
    endpoints: list[EndpointCost]
    groups: list[GroupCost]
    budgets: list[BudgetState]
    quota: list[QuotaLine]
    unknown_instances: int
    pricing_version: str


def _sum(vals: Iterable[float | None]) -> float | None:
    total = 0.0
    for v in vals:
        if v is None:
            return None
        total += v
    return total


class CostTracker:
    """The tick observer Governor runs: records the ledger and keeps the latest `CostReport`
    for the metrics collector. `report(endpoints, now)` also serves `governor cost`."""

    def __init__(self, settings: Settings, ledger: Ledger) -> None:
        self.settings = settings
        self.ledger = ledger
        self.latest: CostReport | None = None

    @classmethod
    def open(cls, settings: Settings, *, readonly: bool = False) -> CostTracker:
        lg = settings.ledger
        prices = PriceBook(settings.pricing.overrides)
        ledger = Ledger(
            lg.path or settings.state.path,
            prices=prices,
            tick_interval_s=settings.loop.tick_interval_s,
            pending_s=lg.pending_s,
            gap_ticks=lg.gap_ticks,
            timezone=lg.timezone,
            readonly=readonly,
            standby_buffer_ticks=lg.standby_buffer_ticks,
        )
        return cls(settings, ledger)

    def close(self) -> None:
        self.ledger.close()

    def observe(
        self,
        endpoints: Sequence[AnyEndpoint],
        *,
        now: float,
        record: bool = True,
        asked_at: float | None = None,
    ) -> None:
        self.ledger.observe(endpoints, now=now, record=record, asked_at=asked_at)
        self.latest = self.report(endpoints, now=now)

    async def refresh_prices(self, client: Any, namespaces: Sequence[str]) -> int:
        """Compare the price book with `GET /provider/{ns}` and log every difference."""
        diffs = 0
        for ns in namespaces[:1]:
            try:
                data = await client.get_provider(ns)
            except Exception as exc:
                log.warning("price_refresh_failed", namespace=ns, error=str(exc))
                return 0
            for d in self.ledger.prices.diff_provider(data):
                diffs += 1
                log.warning(
                    "price_differs_from_api",
                    instance=f"{d.vendor}/{d.instance_type}/{d.instance_size}",
                    ours=d.ours,
                    api=d.api,
                )
        log.info("price_refresh", differences=diffs, table=pricing_version().get("version"))
        return diffs

    def report(self, endpoints: Sequence[AnyEndpoint] | None, *, now: float) -> CostReport:
        s, lg = self.settings, self.ledger
        tz = lg.tz
        m0, m1 = month_bounds(now, tz)
        d0, d1 = day_bounds(now, tz)
        month = lg.spend(m0, m1)
        today = lg.spend(d0, d1)
        est_s = lg.estimated_seconds(m0)
        profiles = lg.profiles()
        listed = {ep.key: ep for ep in endpoints or ()}
        known = lg.known()
        keys = sorted(set(listed) | (set(month) & set(known)))
        rows: list[EndpointCost] = []
        for key in keys:
            ep = listed.get(key)
            st = known.get(key)
            if ep is not None:
                ns, name, tags = ep.namespace or "", ep.name, list(ep.tags)
                row = lg.prices.for_endpoint(ep)
                reps = billed_replicas(ep)
                state = ep.state.value
                inst = f"{ep.provider.vendor}/{ep.compute.instance_type}/{ep.compute.instance_size}"
                billed_state = ep.state in (S.RUNNING, S.INITIALIZING, S.UPDATING)
            else:
                assert st is not None
                ns, name, tags = st.namespace, st.name, st.tags
                row = lg.prices.lookup(*st.instance)
                reps = len(st.reps)
                state = st.state
                inst = "/".join(st.instance)
                billed_state = reps > 0
            price = row.usd_per_hour if row is not None else None
            floor = 0.0
            if billed_state and s.is_managed(ns, name, tags):
                floor = float(s.endpoint_settings(ns, name, tags).floor)
            kw: dict[str, Any] = {
                "usd_per_hour": price,
                "profile": profiles.get(key, Profile.empty()),
                "current_replicas": float(reps),
                "floor": floor,
                "tz": tz,
            }
            mc = month.get(key)
            tc = today.get(key)
            month_usd = 0.0 if mc is None else mc.usd
            today_usd = 0.0 if tc is None else tc.usd
            rest_day = project_spend(now, d1, **kw)
            rest_month = project_spend(now, m1, **kw)
            rows.append(
                EndpointCost(
                    namespace=ns,
                    name=name,
                    tags=tuple(tags),
                    instance=inst,
                    state=state,
                    replicas=reps,
                    usd_per_hour=price,
                    rate_usd_per_hour=None if price is None else reps * price,
                    today_usd=today_usd,
                    month_usd=month_usd,
                    forecast_day_usd=_sum([today_usd, rest_day]),
                    forecast_month_usd=_sum([month_usd, rest_month]),
                    estimated_s=est_s.get(key, 0.0),
                    estimated_usd=0.0 if mc is None else mc.estimated_usd,
                )
            )
        groups = self._groups(rows)
        budgets = self._budgets(rows)
        quota = quota_lines(quota_usage(listed.values(), lg.prices), s.quota.limits)
        return CostReport(
            at=now,
            endpoints=rows,
            groups=groups,
            budgets=budgets,
            quota=quota,
            unknown_instances=len(lg.prices.unknown),
            pricing_version=pricing_version().get("version", "unknown"),
        )

    @staticmethod
    def _group(kind: str, name: str, members: list[EndpointCost]) -> GroupCost:
        return GroupCost(
            kind=kind,
            name=name,
            endpoints=len(members),
            rate_usd_per_hour=_sum(e.rate_usd_per_hour for e in members),
            today_usd=_sum(e.today_usd for e in members),
            month_usd=_sum(e.month_usd for e in members),
            forecast_day_usd=_sum(e.forecast_day_usd for e in members),
            forecast_month_usd=_sum(e.forecast_month_usd for e in members),
        )

    def _groups(self, rows: list[EndpointCost]) -> list[GroupCost]:
        by_ns: dict[str, list[EndpointCost]] = {}
        by_tag: dict[str, list[EndpointCost]] = {}
        for r in rows:
            by_ns.setdefault(r.namespace, []).append(r)
            for t in r.tags:
                by_tag.setdefault(t, []).append(r)
        out = [self._group("namespace", k, v) for k, v in sorted(by_ns.items())]
        out += [self._group("tag", k, v) for k, v in sorted(by_tag.items())]
        return out

    def _budgets(self, rows: list[EndpointCost]) -> list[BudgetState]:
        out = []
        for b in self.settings.budgets:
            if b.scope == "endpoint":
                members = [r for r in rows if r.key == b.match]
            elif b.scope == "tag":
                members = [r for r in rows if b.match in r.tags]
            else:
                members = [r for r in rows if r.namespace == b.match]
            if b.period == "month":
                spend = _sum(r.month_usd for r in members)
                fc = _sum(r.forecast_month_usd for r in members)
            else:
                spend = _sum(r.today_usd for r in members)
                fc = _sum(r.forecast_day_usd for r in members)
            level = budget_status(spend, fc, b.usd, b.thresholds)
            out.append(BudgetState(b.label, b.period, b.usd, spend, fc, level))
        return out
