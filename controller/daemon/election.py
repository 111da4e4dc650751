"""Leader election through a Kubernetes `coordination.k8s.io/v1` Lease, as client-go does it.

Several replicas run the full loop (discover, scrape, decide) so a standby's windows are warm, but
only the replica holding the Lease writes to the management API and to the ledger. The protocol is
client-go's `leaderelection` with a `LeaseLock`:

- every `retry_period_s` a replica GETs the Lease; if it does not exist, it creates it as holder;
- the record (holder, renewTime, ...) is judged expired when it has not *changed* for
  `lease_duration_s` of this replica's own clock (client-go's `observedTime`: no trust in the
  other replica's clock), and only then may another replica take it;
- taking or renewing is a PUT carrying the `resourceVersion` that was read, so of two replicas
  racing for an expired Lease the API server accepts one and answers 409 Conflict to the other;
- a leader that has not renewed for `renew_deadline_s` (< `lease_duration_s`) stops acting at
  once, before anyone else may take over; a leader that shuts down cleanly releases the Lease
  (empty holder), so the standby takes over on its next retry instead of after a lease period.

The leader also writes the management API identity its writes carry (`updatedBy`) into an
annotation, so a standby that takes over knows the leader's writes were Governor's own and not a
person's.

**The ledger watermark.** After every tick the leader publishes its ledger's state (per endpoint:
billed-through time, replicas, billed minutes) in the annotation `ledger-watermark` (zlib and
base64, at most `election.watermark_max_bytes`), with the same GET and `resourceVersion` PUT as a
renewal. A replica that wins the Lease records in `ledger-handover` whom it took it from and which
watermark it resumes from, in the same write: the loser of a kill -9 reads that when it comes
back and takes back any spend it recorded after that watermark (`LedgerHandoff`). So a hand-over
neither loses nor double-counts a minute, wherever the kill lands.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import math
import os
import ssl
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import structlog

from controller.clock import Clock, WallClock
from controller.errors import ConfigError

if TYPE_CHECKING:
    from controller.cost.ledger import Ledger
    from controller.daemon.exporter import Metrics
    from controller.daemon.loop import Governor
    from controller.settings import ElectionSettings

__all__ = [
    "API_IDENTITY_ANNOTATION",
    "LeaseConfig",
    "LeaseElector",
    "LedgerHandoff",
    "Takeover",
    "lease_config",
    "wire_election",
]

log = structlog.get_logger("governor.election")

API_IDENTITY_ANNOTATION = "governor.huggingface.co/api-identity"
WATERMARK_ANNOTATION = "governor.huggingface.co/ledger-watermark"
HANDOVER_ANNOTATION = "governor.huggingface.co/ledger-handover"
_SA_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")


@dataclass(frozen=True, slots=True)
class LeaseConfig:
    """Everything the elector needs, resolved from settings and the pod's environment."""

    api_url: str
    namespace: str
    name: str
    identity: str
    token_file: Path | None
    ca_file: Path | None
    lease_duration_s: float
    renew_deadline_s: float
    retry_period_s: float
    timeout_s: float
    watermark_max_bytes: int = 200_000


@dataclass(frozen=True, slots=True)
class Takeover:
    """What the Lease said when this replica won it: the ledger resumes from it."""

    previous_holder: str | None
    watermark: dict[str, Any] | None  # the decoded `ledger-watermark` (holder, at, endpoints)
    handover: dict[str, Any] | None  # the `ledger-handover` written before this one


def encode_watermark(doc: dict[str, Any], max_bytes: int) -> tuple[str, int]:
    """The annotation value, and how many endpoints had to be left out to fit `max_bytes`
    (Kubernetes caps an object's annotations at 256 KiB)."""
    eps = dict(doc.get("endpoints") or {})
    keys = sorted(eps)
    keep = len(keys)
    while True:
        body = {**doc, "endpoints": {k: eps[k] for k in keys[:keep]}, "complete": keep == len(keys)}
        raw = json.dumps(body, separators=(",", ":")).encode()
        text = base64.b64encode(zlib.compress(raw, 6)).decode("ascii")
        if len(text) <= max_bytes or keep == 0:
            return text, len(keys) - keep
        keep = min(keep - 1, int(keep * max_bytes / len(text) * 0.95))


def decode_watermark(text: str) -> dict[str, Any] | None:
    try:
        doc = json.loads(zlib.decompress(base64.b64decode(text, validate=True)))
    except (ValueError, zlib.error, TypeError):
        return None
    if not isinstance(doc, dict) or not isinstance(doc.get("endpoints"), dict):
        return None
    at = doc.get("at")
    if not isinstance(at, int | float) or not math.isfinite(at):
        return None
    return doc


def _read(path: Path, what: str) -> str:
    try:
        text = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"election.{what}: cannot read {path}: {exc}") from None
    if not text:
        raise ConfigError(f"election.{what}: {path} is empty")
    return text


def lease_config(es: ElectionSettings, env: dict[str, str] | None = None) -> LeaseConfig:
    """Fill what the settings leave unset from the pod (service account, env); ConfigError if
    something needed cannot be found."""
    env = dict(os.environ) if env is None else env
    api_url = es.api_url
    if api_url is None:
        host, port = env.get("KUBERNETES_SERVICE_HOST"), env.get("KUBERNETES_SERVICE_PORT", "443")
        if not host:
            raise ConfigError(
                "election.api_url: not set and KUBERNETES_SERVICE_HOST is unset (not in a pod)"
            )
        api_url = f"https://[{host}]:{port}" if ":" in host else f"https://{host}:{port}"
    namespace = es.namespace
    if namespace is None:
        namespace = _read(_SA_DIR / "namespace", "namespace")
    identity = es.identity or env.get("POD_NAME") or env.get("HOSTNAME") or os.uname().nodename
    token_file = es.token_file
    if token_file is not None and not token_file.exists():
        raise ConfigError(f"election.token_file: {token_file} does not exist")
    ca_file = es.ca_file
    if ca_file is not None and not ca_file.exists():
        raise ConfigError(f"election.ca_file: {ca_file} does not exist")
    return LeaseConfig(
        api_url=api_url.rstrip("/"),
        namespace=namespace,
        name=es.lease_name,
        identity=identity,
        token_file=token_file,
        ca_file=ca_file,
        lease_duration_s=es.lease_duration_s,
        renew_deadline_s=es.renew_deadline_s,
        retry_period_s=es.retry_period_s,
        timeout_s=es.timeout_s,
        watermark_max_bytes=es.watermark_max_bytes,
    )


def _micro_time(t: float) -> str:
    """Kubernetes MicroTime (RFC 3339, microseconds, UTC)."""
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class LeaseElector:
    """One replica's side of the election. `is_leader()` is what the loop asks before any write."""

    def __init__(
        self,
        cfg: LeaseConfig,
        *,
        clock: Clock | None = None,
        monotonic: Callable[[], float] | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        on_change: Callable[[LeaseElector], None] | None = None,
    ) -> None:
        self.cfg = cfg
        self.identity = cfg.identity
        self.clock = clock or WallClock()
        self._mono = monotonic or _monotonic
        self.on_change = on_change
        verify: ssl.SSLContext | bool = True
        if cfg.api_url.startswith("https://") and cfg.ca_file is not None:
            verify = ssl.create_default_context(cafile=str(cfg.ca_file))
        self._http = httpx.AsyncClient(
            base_url=cfg.api_url,
            timeout=httpx.Timeout(cfg.timeout_s),
            verify=verify,
            transport=transport,
            follow_redirects=False,
        )
        self._path = f"/apis/coordination.k8s.io/v1/namespaces/{cfg.namespace}/leases/{cfg.name}"
        # Who holds the Lease as last read (None: nobody / unknown), and its transitions count.
        self.holder: str | None = None
        self.transitions = 0
        # The API identity the leader published (what `updatedBy` says on Governor's writes).
        self.observed_api_identity: str | None = None
        # What this replica publishes when it leads.
        self.api_identity: str | None = None
        self._observed: dict[str, Any] | None = None
        self._observed_at: float = 0.0
        self._renewed_at: float | None = None
        self._leading = False
        self.errors = 0
        # Rounds, publishes and the release each GET then PUT: one at a time, or they would
        # answer each other's writes with 409s.
        self._lock = asyncio.Lock()
        # The ledger annotations as last read, and what the Lease said when this replica won it
        # (taken by the loop at its next tick).
        self._watermark_text: str | None = None
        self.watermark: dict[str, Any] | None = None
        self.handover: dict[str, Any] | None = None
        self.takeover: Takeover | None = None
        # This replica's ledger state as a watermark document (set by LedgerHandoff).
        self.own_watermark: Callable[[], dict[str, Any]] | None = None
        self._left_out_logged = False
        # Set once the first round is over (won, lost or failed): the loop's first tick waits
        # for it, so a replica that will lead does not bill its first interval as a standby.
        self.first_round = asyncio.Event()

    def __repr__(self) -> str:
        lease = f"{self.cfg.namespace}/{self.cfg.name}"
        return f"LeaseElector(identity={self.identity!r}, lease={lease})"

    # -- what the loop asks -----------------------------------------------------------------------

    def is_leader(self) -> bool:
        """True only while the last renewal is younger than the renew deadline."""
        if not self._leading or self._renewed_at is None:
            return False
        if self._mono() - self._renewed_at >= self.cfg.renew_deadline_s:
            self._set_leading(False, "renew deadline passed")
            return False
        return True

    # -- the protocol -----------------------------------------------------------------------------

    def _headers(self) -> dict[str, str]:
        h = {"accept": "application/json", "content-type": "application/json"}
        if self.cfg.token_file is not None:
            # Re-read every time: projected service-account tokens are rotated by the kubelet.
            h["authorization"] = f"Bearer {_read(self.cfg.token_file, 'token_file')}"
        return h

    def _record(self, lease: dict[str, Any]) -> dict[str, Any]:
        spec = lease.get("spec") or {}
        return {
            "holderIdentity": spec.get("holderIdentity"),
            "leaseDurationSeconds": spec.get("leaseDurationSeconds"),
            "acquireTime": spec.get("acquireTime"),
            "renewTime": spec.get("renewTime"),
            "leaseTransitions": spec.get("leaseTransitions"),
        }

    def _spec(self, prev: dict[str, Any] | None) -> dict[str, Any]:
        now = _micro_time(self.clock.now())
        prev_spec = (prev or {}).get("spec") or {}
        mine = prev_spec.get("holderIdentity") == self.identity
        transitions = int(prev_spec.get("leaseTransitions") or 0)
        if prev is not None and not mine:
            transitions += 1
        return {
            "holderIdentity": self.identity,
            "leaseDurationSeconds": max(1, round(self.cfg.lease_duration_s)),
            "acquireTime": prev_spec.get("acquireTime") if mine else now,
            "renewTime": now,
            "leaseTransitions": transitions,
        }

    def _metadata(self, prev: dict[str, Any] | None) -> dict[str, Any]:
        meta: dict[str, Any] = {"name": self.cfg.name, "namespace": self.cfg.namespace}
        annotations = dict(((prev or {}).get("metadata") or {}).get("annotations") or {})
        if self.api_identity:
            annotations[API_IDENTITY_ANNOTATION] = self.api_identity
        if annotations:
            meta["annotations"] = annotations
        if prev is not None:
            meta["resourceVersion"] = (prev.get("metadata") or {}).get("resourceVersion")
        return meta

    async def try_acquire_or_renew(self) -> bool:
        """One round of client-go's `tryAcquireOrRenew`; True when this replica leads after it.

        The whole round (GET and PUT) has one deadline, `timeout_s`: a slow API server must not
        keep a leader believing it still leads."""
        async with self._lock:
            try:
                async with asyncio.timeout(self.cfg.timeout_s):
                    return await self._round()
            except TimeoutError:
                return self._failed(f"lease round took longer than {self.cfg.timeout_s:g}s")

    async def _round(self) -> bool:
        try:
            resp = await self._http.get(self._path, headers=self._headers())
            if resp.status_code == 404:
                body = {
                    "apiVersion": "coordination.k8s.io/v1",
                    "kind": "Lease",
                    "metadata": self._with_own_watermark(self._metadata(None)),
                    "spec": self._spec(None),
                }
                created = await self._http.post(
                    self._path.rsplit("/", 1)[0], json=body, headers=self._headers()
                )
                ok = self._after_write(created, None)
                if ok:
                    self.takeover = Takeover(None, None, None)
                return ok
            if resp.status_code != 200:
                return self._failed(f"GET lease: HTTP {resp.status_code}")
            lease = resp.json()
            self._observe(lease)
            holder = self._record(lease)["holderIdentity"]
            if (
                holder
                and holder != self.identity
                and self._mono() - self._observed_at < self.cfg.lease_duration_s
            ):
                self._set_leading(False, f"held by {holder}")
                return False
            meta = self._metadata(lease)
            taking = holder != self.identity or not self.is_leader()
            if taking and self.watermark is None:
                meta = self._with_own_watermark(meta)
            if holder != self.identity:
                # Whom the Lease is taken from and which watermark the ledger resumes from, in
                # the same write that takes it: the old holder reads it when it comes back.
                w = self.watermark
                mark = {
                    "from": holder or None,
                    "w_holder": None if w is None else w.get("holder"),
                    "at": None if w is None else w.get("at"),
                }
                meta.setdefault("annotations", {})[HANDOVER_ANNOTATION] = json.dumps(mark)
            body = {
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": meta,
                "spec": self._spec(lease),
            }
            won = Takeover(holder or None, self.watermark, self.handover) if taking else None
            put = await self._http.put(self._path, json=body, headers=self._headers())
            ok = self._after_write(put, lease)
            if ok and won is not None:
                self.takeover = won
            return ok
        except (httpx.HTTPError, ValueError) as exc:
            return self._failed(f"{type(exc).__name__}: {exc}")

    def _observe(self, lease: dict[str, Any]) -> None:
        rec = self._record(lease)
        if rec != self._observed:
            self._observed = rec
            self._observed_at = self._mono()
        holder = rec["holderIdentity"] or None
        changed = holder != self.holder
        self.holder = holder
        self.transitions = int(rec["leaseTransitions"] or 0)
        if changed and self.on_change is not None:
            self.on_change(self)
        ann = (lease.get("metadata") or {}).get("annotations") or {}
        if ann.get(API_IDENTITY_ANNOTATION):
            self.observed_api_identity = ann[API_IDENTITY_ANNOTATION]
        text = ann.get(WATERMARK_ANNOTATION)
        if text != self._watermark_text:
            self._watermark_text = text
            self.watermark = decode_watermark(text) if isinstance(text, str) else None
            if text and self.watermark is None:
                log.warning("ledger_watermark_unreadable", lease=self.cfg.name)
        self.handover = _handover(ann.get(HANDOVER_ANNOTATION))

    def _after_write(self, resp: httpx.Response, prev: dict[str, Any] | None) -> bool:
        if resp.status_code == 409:
            # Someone else wrote first (a race for an expired Lease, or a create race).
            self._set_leading(False, "conflict: another replica wrote the Lease first")
            return False
        if resp.status_code not in (200, 201):
            return self._failed(f"write lease: HTTP {resp.status_code}")
        self._observe(resp.json())
        self._renewed_at = self._mono()
        self._set_leading(True, "acquired" if prev is None else "renewed")
        return True

    def _failed(self, why: str) -> bool:
        self.errors += 1
        log.warning("lease_call_failed", lease=self.cfg.name, error=why)
        # A leader keeps leading through a failed renewal until the renew deadline (is_leader).
        return self.is_leader()

    def _set_leading(self, leading: bool, why: str) -> None:
        if leading != self._leading:
            self._leading = leading
            if leading:
                self.holder = self.identity
            log.warning(
                "leadership_gained" if leading else "leadership_lost",
                identity=self.identity,
                lease=f"{self.cfg.namespace}/{self.cfg.name}",
                detail=why,
            )
            if self.on_change is not None:
                self.on_change(self)

    def _with_own_watermark(self, meta: dict[str, Any]) -> dict[str, Any]:
        """A Lease won with no watermark gets this replica's own ledger state in the same write:
        if it is killed before its first tick, the successor resumes from there instead of from
        nothing (a fault soak lost the minutes of a leader that never finished a tick)."""
        if self.own_watermark is None:
            return meta
        doc = self.own_watermark()
        text, _ = encode_watermark(doc, self.cfg.watermark_max_bytes)
        meta.setdefault("annotations", {})[WATERMARK_ANNOTATION] = text
        return meta

    async def publish(self, doc: dict[str, Any]) -> bool:
        """Write the ledger watermark `doc` into the Lease (a renewal too); True once the API
        server has it. Only while leading, and only onto a Lease this replica holds."""
        text, left_out = encode_watermark(doc, self.cfg.watermark_max_bytes)
        if left_out and not self._left_out_logged:
            self._left_out_logged = True
            log.error(
                "ledger_watermark_truncated",
                endpoints_left_out=left_out,
                limit_bytes=self.cfg.watermark_max_bytes,
                detail="a take-over bills these endpoints from the standby's listings only",
            )
        async with self._lock:
            if not self.is_leader():
                return False
            try:
                async with asyncio.timeout(self.cfg.timeout_s):
                    resp = await self._http.get(self._path, headers=self._headers())
                    if resp.status_code != 200:
                        return False
                    lease = resp.json()
                    if self._record(lease)["holderIdentity"] != self.identity:
                        return False
                    meta = self._metadata(lease)
                    meta.setdefault("annotations", {})[WATERMARK_ANNOTATION] = text
                    body = {
                        "apiVersion": "coordination.k8s.io/v1",
                        "kind": "Lease",
                        "metadata": meta,
                        "spec": self._spec(lease),
                    }
                    put = await self._http.put(self._path, json=body, headers=self._headers())
            except (TimeoutError, httpx.HTTPError, ValueError) as exc:
                log.warning("ledger_watermark_not_published", error=f"{type(exc).__name__}")
                return False
            if put.status_code != 200:
                log.warning("ledger_watermark_not_published", error=f"HTTP {put.status_code}")
                return False
            with contextlib.suppress(ValueError):
                self._observe(put.json())
            self._renewed_at = self._mono()
            return True

    async def release(self) -> None:
        """On a clean shutdown: give the Lease up (empty holder) so a standby takes it at once."""
        async with self._lock:
            await self._release()

    async def _release(self) -> None:
        if not self.is_leader():
            return
        self._set_leading(False, "released")
        try:
            resp = await self._http.get(self._path, headers=self._headers())
            if resp.status_code != 200:
                return
            lease = resp.json()
            if self._record(lease)["holderIdentity"] != self.identity:
                return
            spec = dict(lease.get("spec") or {})
            spec["holderIdentity"] = None
            spec["leaseDurationSeconds"] = 1
            spec["renewTime"] = _micro_time(self.clock.now())
            lease["spec"] = spec
            await self._http.put(self._path, json=lease, headers=self._headers())
        except (httpx.HTTPError, ValueError) as exc:
            log.warning("lease_release_failed", error=str(exc))

    async def run(self, stop: asyncio.Event) -> None:
        """Try to acquire, then renew, every `retry_period_s` until `stop`; then release."""
        try:
            while not stop.is_set():
                try:
                    await self.try_acquire_or_renew()
                finally:
                    self.first_round.set()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self.cfg.retry_period_s)
        finally:
            await self.release()

    async def settled(self) -> None:
        """Wait for the first round, at most one round's deadline (and a little): the loop must
        start even when the Kubernetes API does not answer."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.first_round.wait(), self.cfg.timeout_s + 1.0)

    async def aclose(self) -> None:
        await self._http.aclose()


def _monotonic() -> float:
    return time.monotonic()


def _handover(text: Any) -> dict[str, Any] | None:
    if not isinstance(text, str):
        return None
    try:
        mark = json.loads(text)
    except ValueError:
        return None
    return mark if isinstance(mark, dict) else None


class LedgerHandoff:
    """The ledger's side of the election, run by the loop around each tick's billing.

    Leading: on the first tick after winning the Lease, take back this replica's own spend that
    the watermark it resumes from does not carry, adopt that watermark and bill the listings seen
    as a standby after it (`Ledger.take_over`); after each tick, publish the watermark and mark
    the tick's spend as carried. Standby: when the Lease says a successor resumed from a
    watermark of this replica's, take back what this replica recorded after it (it was killed
    between a commit and a publish); forget the listings the leader has billed."""

    def __init__(self, elector: LeaseElector, ledger: Ledger) -> None:
        self.elector = elector
        self.ledger = ledger
        ledger.track_unpublished = True
        elector.own_watermark = self._own

    def _own(self) -> dict[str, Any]:
        eps = self.ledger.watermark()
        at = max((float(d["last_observed"]) for d in eps.values()), default=None)
        if at is None:
            at = self.elector.clock.now()
        return {"v": 1, "holder": self.elector.identity, "at": at, "endpoints": eps}

    def _resolve_against(self, handover: dict[str, Any] | None) -> None:
        if handover is None or handover.get("from") != self.elector.identity:
            return
        at = handover.get("at")
        if isinstance(at, int | float):
            self.ledger.undo_after(at)
        else:
            # The successor found no watermark and followed the account without billing it,
            # trusting this replica's record: keep it.
            self.ledger.confirm_through(math.inf)

    def before_billing(self) -> None:
        t = self.elector.takeover
        if t is None:
            return
        self.elector.takeover = None
        self._resolve_against(t.handover)
        w = t.watermark
        if w is not None:
            at = float(w["at"])
            self.ledger.undo_after(at)
            n = self.ledger.take_over(
                w["endpoints"], since=at, complete=bool(w.get("complete", True))
            )
        else:
            # No watermark was there: this replica wrote its own into the Lease as it won it
            # (`_with_own_watermark`), so it resumes from its own record.
            self.ledger.confirm_through(math.inf)
            n = self.ledger.take_over(None, since=None)
        log.info(
            "ledger_take_over",
            previous_holder=t.previous_holder,
            watermark_of=None if w is None else w.get("holder"),
            watermark_at=None if w is None else w.get("at"),
            listings_replayed=n,
        )

    async def after_billing(self, now: float) -> None:
        doc = {"v": 1, "holder": self.elector.identity, "at": now}
        doc["endpoints"] = self.ledger.watermark()
        if await self.elector.publish(doc):
            self.ledger.confirm_through(now)

    def as_standby(self) -> None:
        self._resolve_against(self.elector.handover)
        w = self.elector.watermark
        if w is not None and w.get("holder") == self.elector.holder:
            self.ledger.prune_buffer(float(w["at"]))


def wire_election(gov: Governor, elector: LeaseElector, metrics: Metrics) -> None:
    """Connect a Governor to the elector: leadership to the metrics, the API identity both ways
    (the leader publishes what its writes carry, a standby learns it before it ever writes), and
    the ledger's watermark and take-over."""
    elector.api_identity = gov.identity

    def changed(e: LeaseElector) -> None:
        metrics.set_leader(e.identity, e.is_leader(), e.holder)

    def publish(identity: str) -> None:
        elector.api_identity = identity

    elector.on_change = changed
    gov.learn_identity = lambda: elector.observed_api_identity
    gov.on_identity = publish
    if gov.cost is not None:
        gov.handoff = LedgerHandoff(elector, gov.cost.ledger)
    metrics.set_leader(elector.identity, False, None)
