"""The fault soak: real `governor run` processes against the emulator through the fault proxy.

    nice python benchmarks/fault_soak.py --minutes 5 --seed 18     # ~5 min wall, 2.5 h virtual

The emulator (in this process) and every daemon share one sped-up clock (`--speed` virtual
seconds per second; `governor run --virtual-clock`). For the first part of the run one daemon
acts and is killed with SIGKILL at random points and restarted on the same state; for the rest
two replicas elect a leader through a Lease (`controller/emulator/kube.py`), each behind its own
proxy, and the leader is killed with SIGKILL and restarted as a standby. Meanwhile faults of the
kinds issue 18 found are injected at random (seeded): 401s, API outages, 503s, trickled bodies,
lost responses after applied writes, `targetReplica` 1000 and -3, `updatedAt` in 2099, feeds whose
samples carry hour-old timestamps, and `Retry-After`. Nobody else touches the endpoints.

What it counts (every figure but the first must be 0):

- faults injected (by kind);
- crashes: a daemon that exited without being told to, exited non-zero on SIGTERM, or logged a
  traceback;
- actions on stale data: a write to an endpoint whose feed had been stale (old timestamps, or
  failing) for longer than `scrape.max_age_s` plus a tick;
- out-of-bounds settings: a write, or an endpoint's replica bounds sampled every second, outside
  floor..ceiling or min > max;
- lost and double-counted ledger minutes: the daemons' ledgers summed, per endpoint, against the
  emulator's bill as of the ledgers' last look (kill -9 hand-overs included: the new leader
  resumes from the ledger watermark in the Lease, docs/operations.md);
- self-mistaken-for-person events: any `human_override`/`human_pause` decision (no person acts);
- calls inside a `Retry-After` (a listing sent by the same process before the wait ended);
- token leaks: the HF token or the Kubernetes token in any log line, output or result file.

Results: `benchmarks/results/fault_soak.json` and `.md` (with the command, machine, versions).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform as pyplatform
import random
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.harness import ROOT, cpu_model, versions
from controller.clock import ScaledClock
from controller.emulator.faults import Fault, FaultProxy
from controller.emulator.kube import LeaseApi, LeaseServer
from controller.emulator.load import Burst, Constant, Diurnal, LoadPattern
from controller.emulator.platform import Platform, SimParams
from controller.emulator.schema import EmulatorError
from controller.emulator.server import EmulatorServer
from controller.platform.models import UserRef

NS = "soak"
TOKEN = "hf_soak_secret_token_7f3a9c2e1b"
KUBE_TOKEN = "kube-soak-sa-token-4d8e"
BOT = UserRef(id="u-governor", name="governor-soak")
FLOOR, CEILING = 1, 6
TICK_S = 15.0  # virtual
MAX_AGE_S = 45.0  # virtual
LEASE_S, RENEW_S, RETRY_S = 3.0, 2.0, 0.5  # wall: the elector's timers are wall-clock
API_TIMEOUT_S = 2.0  # wall
LIST = rf"^/v2/endpoint/{NS}$"
ENDPOINTS: dict[str, LoadPattern] = {
    "chat": Diurnal(base=2.0, peak=18.0, period_s=7200.0),
    "code": Burst(base=1.0, peak=14.0, start_s=600.0, duration_s=900.0, period_s=2400.0),
    "batch": Constant(5.0),
}


async def _wait(proc: subprocess.Popen, limit_s: float) -> int | None:
    """The exit code, or None if still running after `limit_s`; the event loop keeps going."""
    try:
        return await asyncio.to_thread(proc.wait, limit_s)
    except subprocess.TimeoutExpired:
        return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def body(name: str) -> dict[str, Any]:
    return {
        "name": name,
        "type": "protected",
        "tags": ["managed"],
        "provider": {"vendor": "aws", "region": "us-east-1"},
        "compute": {
            "accelerator": "gpu",
            "instanceType": "nvidia-l4",
            "instanceSize": "x1",
            "scaling": {"minReplica": 1, "maxReplica": 1},
        },
        "model": {"repository": "gpt2", "framework": "pytorch", "task": "text-generation"},
    }


@dataclass
class Replica:
    """One daemon's files and process."""

    name: str
    dir: Path
    port: int
    proxy: FaultProxy
    proc: subprocess.Popen | None = None
    logs: list[Path] = field(default_factory=list)
    started_at: list[float] = field(default_factory=list)  # wall times of (re)starts


@dataclass
class Soak:
    args: argparse.Namespace
    clock: ScaledClock
    wall0: float
    platform: Platform
    rng: random.Random
    replicas: list[Replica] = field(default_factory=list)
    lease_url: str = ""
    crashes: list[str] = field(default_factory=list)
    kills: list[dict[str, Any]] = field(default_factory=list)
    stale: list[tuple[str, float, float]] = field(default_factory=list)  # (endpoint, from, to)
    holds: list[tuple[str, Fault, float]] = field(default_factory=list)  # (replica, 429, wait)
    bounds_seen: list[tuple[float, str, int, int]] = field(default_factory=list)
    faults_added: dict[str, int] = field(default_factory=dict)
    solo_ledger: dict[str, dict[str, int]] = field(default_factory=dict)
    lease_api: LeaseApi | None = None
    timeline: list[dict[str, Any]] = field(default_factory=list)

    # -- daemons --------------------------------------------------------------------------------

    def config(self, r: Replica, *, election: bool) -> Path:
        cfg: dict[str, Any] = {
            "api": {
                "base_url": r.proxy.url + "/v2",
                "timeout_s": API_TIMEOUT_S,
                "call_deadline_s": 3 * API_TIMEOUT_S,
                "backoff_initial_s": 0.05,
                "backoff_max_s": 0.3,
                "max_attempts": 3,
            },
            "namespaces": [NS],
            "manage": {"tags": ["managed"]},
            "loop": {"tick_interval_s": TICK_S, "unready_after_failed_ticks": 3},
            "scrape": {"max_age_s": MAX_AGE_S},
            "server": {"listen": f"127.0.0.1:{r.port}"},
            "state": {"path": str(r.dir / "state.sqlite")},
            # The endpoints are created running (`ready=True`: replicas from their creation, no
            # pending phase); the ledger's default 10 s of pending billed each one's first
            # replica that much late, a minute per endpoint lost in ~1 run of 6.
            "ledger": {"pending_s": 0.0},
            "log": {"format": "json", "level": "info"},
            "defaults": {
                "floor": FLOOR,
                "ceiling": CEILING,
                "policies": {"pending_requests": {"target_per_replica": 2.0}},
            },
        }
        if election:
            (r.dir / "sa-token").write_text(KUBE_TOKEN + "\n")
            cfg["election"] = {
                "enabled": True,
                "namespace": "governor",
                "identity": r.name,
                "api_url": self.lease_url,
                "token_file": str(r.dir / "sa-token"),
                "ca_file": None,
                "lease_duration_s": LEASE_S,
                "renew_deadline_s": RENEW_S,
                "retry_period_s": RETRY_S,
                "timeout_s": 1.0,
            }
        p = r.dir / ("governor-ha.yaml" if election else "governor.yaml")
        p.write_text(yaml.safe_dump(cfg))
        return p

    def start(self, r: Replica, *, election: bool) -> None:
        cfg = self.config(r, election=election)
        log = r.dir / f"daemon-{len(r.logs)}.log"
        r.logs.append(log)
        clock = f"{self.args.speed},{self.clock.origin},{self.wall0}"
        cmd = [sys.executable, "-m", "controller.cli", "run", "-c", str(cfg)]
        cmd += ["--virtual-clock", clock]
        env = {**os.environ, "HF_TOKEN": TOKEN, "PYTHONPATH": str(ROOT)}
        with log.open("w") as fh:
            r.proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
        r.started_at.append(time.time())

    def check_alive(self) -> None:
        for r in self.replicas:
            if r.proc is not None and r.proc.poll() is not None:
                self.crashes.append(f"{r.name} exited on its own with {r.proc.returncode}")
                r.proc = None

    async def kill9(self, r: Replica, why: str) -> None:
        assert r.proc is not None
        r.proc.send_signal(signal.SIGKILL)
        await _wait(r.proc, 15.0)
        r.proc = None
        self.kills.append({"replica": r.name, "at": time.time(), "why": why})

    async def stop(self, r: Replica) -> None:
        """SIGTERM, and wait without blocking the loop: the emulator it finishes its tick
        against runs in this process."""
        if r.proc is None:
            return
        # A process that has not set up its handlers yet dies of SIGTERM's default action; a
        # service manager would not stop a starting unit this way either.
        await self.serving(r)
        r.proc.send_signal(signal.SIGTERM)
        code = await _wait(r.proc, 60.0)
        if code is None:
            r.proc.kill()
            code = await _wait(r.proc, 15.0)
            self.crashes.append(f"{r.name} did not stop within 60 s of SIGTERM")
        elif code != 0:
            self.crashes.append(f"{r.name} exited {code} on SIGTERM")
        r.proc = None

    async def serving(self, r: Replica, limit_s: float = 30.0) -> bool:
        """Wait until `r` answers /healthz (its loop and handlers are up)."""
        async with httpx.AsyncClient(timeout=1) as c:
            for _ in range(int(limit_s / 0.1)):
                with contextlib.suppress(httpx.HTTPError):
                    if (await c.get(f"http://127.0.0.1:{r.port}/healthz")).status_code == 200:
                        return True
                if r.proc is None or r.proc.poll() is not None:
                    return False
                await asyncio.sleep(0.1)
        return False

    async def leader(self) -> Replica | None:
        for r in self.replicas:
            if r.proc is None:
                continue
            with contextlib.suppress(httpx.HTTPError):
                async with httpx.AsyncClient(timeout=1) as c:
                    text = (await c.get(f"http://127.0.0.1:{r.port}/metrics")).text
                if f'governor_leader{{identity="{r.name}"}} 1.0' in text:
                    return r
        return None

    # -- faults ---------------------------------------------------------------------------------

    def inject(self, proxy: FaultProxy, rname: str) -> None:
        """One random fault of the issue's kinds, for a few (wall) seconds."""
        rng = self.rng
        ep = rng.choice(list(ENDPOINTS))
        kind = rng.choice(
            [
                "401",
                "outage",
                "flaky_503",
                "slow_listing",
                "slow_feed",
                "lost_write_response",
                "target_1000",
                "target_minus_3",
                "updated_at_2099",
                "old_samples",
                "feed_down",
                "retry_after",
            ]
        )
        dur = rng.uniform(1.5, 5.0)
        now = time.time()
        if kind == "401":
            f = Fault("status", path=LIST, status=401, body='{"error": "Invalid token"}')
        elif kind == "outage":
            f = Fault("disconnect", path=r"^/v2/")
        elif kind == "flaky_503":
            f = Fault("status", path=r"^/v2/", status=503, probability=0.4)
        elif kind == "slow_listing":
            f = Fault("slow_body", path=LIST, chunk_bytes=64, chunk_interval_s=0.5)
        elif kind == "slow_feed":
            f = Fault("slow_body", path=f"{ep}/open-metrics", chunk_bytes=16, chunk_interval_s=0.5)
        elif kind == "lost_write_response":
            f = Fault("lose_response", method=rng.choice(["PUT", "POST"]), count=1)
            dur = 30.0
        elif kind in ("target_1000", "target_minus_3"):
            n = 1000 if kind == "target_1000" else -3
            st = {"status.targetReplica": n, "status.readyReplica": n}
            f = Fault("mutate", path=r"^/v2/endpoint/", endpoint=ep, set=st)
        elif kind == "updated_at_2099":
            st = {"status.updatedAt": "2099-01-01T00:00:00.000Z"}
            f = Fault("mutate", path=r"^/v2/endpoint/", endpoint=ep, set=st)
        elif kind == "old_samples":
            f = Fault("stamp", path=f"{ep}/open-metrics", age_s=3600.0)
            dur = rng.uniform(3.0, 8.0)
            self.stale.append((ep, now, now + dur))
        elif kind == "feed_down":
            f = Fault("status", path=f"{ep}/open-metrics", status=503)
            dur = rng.uniform(3.0, 8.0)
            self.stale.append((ep, now, now + dur))
        else:  # retry_after
            wait = rng.uniform(3.0, 6.0)
            f = Fault("status", path=LIST, status=429, retry_after=wait, count=1)
            self.holds.append((rname, f, wait))
            dur = 30.0
        f.duration_s = dur
        proxy.add(f)
        self.faults_added[kind] = self.faults_added.get(kind, 0) + 1

    def holder(self) -> str | None:
        lease = (self.lease_api.leases if self.lease_api else {}).get(("governor", "governor"))
        return ((lease or {}).get("spec") or {}).get("holderIdentity") or None

    def snapshot(self, why: str) -> None:
        """Each replica's ledger and the emulator's bill per endpoint, now: where a ledger
        starts to drift from the bill (which hand-over, which tick) shows in the timeline."""
        if not self.args.timeline:
            return
        now = self.clock.now()
        row: dict[str, Any] = {"wall": round(time.time() - self.wall0, 2), "why": why}
        row["virtual"] = round(now - self.wall0, 1)
        row["holder"] = self.holder()
        per: dict[str, Any] = {}
        ledgers = {r.name: _ledger(r.dir / "state.sqlite") for r in self.replicas}
        for name in ENDPOINTS:
            key = f"{NS}/{name}"
            try:
                billed_now = sum(self.platform.billed_minutes(NS, name).values())
            except EmulatorError:
                continue
            ent: dict[str, Any] = {"bill": billed_now}
            for rname, (mins, seen) in ledgers.items():
                t = seen.get(key)
                at = sum(self.platform.billed_minutes(NS, name, at=t).values()) if t else 0
                ent[rname] = [mins.get(key, 0), None if t is None else round(t - self.wall0, 1), at]
            per[key] = ent
        row["endpoints"] = per
        self.timeline.append(row)

    async def sample_timeline(self, stop: asyncio.Event, every_s: float = 1.0) -> None:
        while not stop.is_set():
            with contextlib.suppress(sqlite3.Error):
                self.snapshot("interval")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), every_s)

    async def sample_bounds(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            for name in ENDPOINTS:
                try:
                    ep = self.platform.get(NS, name)
                except EmulatorError:  # not created yet
                    continue
                sc = ep["compute"]["scaling"]
                self.bounds_seen.append((time.time(), name, sc["minReplica"], sc["maxReplica"]))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 1.0)


async def run(args: argparse.Namespace) -> dict[str, Any]:
    wall0 = time.time()
    clock = ScaledClock(speed=args.speed, origin=wall0, started_at=wall0)
    plat = Platform(start=clock.now(), seed=args.seed)
    sim = SimParams(cold_start_s=120.0, concurrency=4, service_time_s=1.0)
    emu = EmulatorServer(plat, clock=clock, tokens={TOKEN: BOT})
    await emu.start()
    lease = LeaseServer(LeaseApi(tokens={KUBE_TOKEN}))
    await lease.start()
    work = Path(args.workdir or tempfile.mkdtemp(prefix="fault-soak-"))
    soak = Soak(args, clock, wall0, plat, random.Random(args.seed), lease_url=lease.url)
    soak.lease_api = lease.api
    for i, name in enumerate(("a", "b")):
        proxy = FaultProxy(emu.root_url, seed=args.seed + i, now=clock.now)
        await proxy.start()
        d = work / name
        d.mkdir(parents=True, exist_ok=True)
        soak.replicas.append(Replica(name, d, free_port(), proxy))
    a, b = soak.replicas
    stop_sampling = asyncio.Event()
    sampler = asyncio.create_task(soak.sample_bounds(stop_sampling))
    timeline = asyncio.create_task(soak.sample_timeline(stop_sampling)) if args.timeline else None
    total = args.minutes * 60.0
    solo_until = wall0 + total * 0.55
    end = wall0 + total
    handovers: list[dict[str, Any]] = []
    try:
        # -- part 1: one daemon, killed and restarted at random points ----------------------------
        soak.start(a, election=False)
        # the endpoints appear once Governor runs, so its ledger sees them from their creation
        await soak.serving(a)
        for name, load in ENDPOINTS.items():
            plat.create(NS, body(name), by=BOT, sim=sim, load=load, ready=True)
        first = args.first_kill_s
        next_kill = time.time() + (first if first is not None else soak.rng.uniform(8.0, 25.0))
        # A loaded machine can take most of a short run to start the daemon: the solo part
        # lasts at least until its first kill (and a restart) has happened.
        solo_until = max(solo_until, next_kill + 2.0)
        next_fault = time.time() + soak.rng.uniform(1.0, 3.0)
        while time.time() < solo_until:
            await asyncio.sleep(0.2)
            soak.check_alive()
            if time.time() >= next_fault:
                soak.inject(a.proxy, a.name)
                next_fault = time.time() + soak.rng.uniform(1.0, 4.0)
            if time.time() >= next_kill and a.proc is not None:
                await soak.kill9(a, "solo")
                await asyncio.sleep(soak.rng.uniform(0.5, 4.0))  # down for 15-120 virtual s
                soak.start(a, election=False)
                next_kill = time.time() + soak.rng.uniform(8.0, 30.0)
            if a.proc is None:
                soak.start(a, election=False)
        await soak.stop(a)
        soak.solo_ledger = ledger_vs_bill(soak, [a])
        soak.snapshot("solo part over")
        # -- part 2: two replicas with leader election --------------------------------------------
        soak.start(a, election=True)
        # a leads first and resumes from its own ledger. b has no record and the new Lease no
        # watermark, so a b leading first bills from its first sighting, by design; the 1 s
        # head start alone was not enough on a loaded machine (136 minutes nobody billed).
        for _ in range(300):  # 30 s at most
            if await soak.leader() is a:
                break
            await asyncio.sleep(0.1)
        soak.start(b, election=True)
        end = max(end, time.time() + total * 0.45)  # part 2 gets its share even after a late part 1
        next_kill = time.time() + max(6.0, (end - time.time()) * soak.rng.uniform(0.3, 0.5))
        next_fault = time.time() + soak.rng.uniform(1.0, 3.0)
        kills_left = 2
        while time.time() < end - 2.0:
            await asyncio.sleep(0.2)
            soak.check_alive()
            if time.time() >= next_fault:
                r = soak.rng.choice(soak.replicas)
                soak.inject(r.proxy, r.name)
                next_fault = time.time() + soak.rng.uniform(1.0, 4.0)
            if kills_left and time.time() >= next_kill:
                lead = await soak.leader()
                if lead is not None:
                    running = {n: plat.get(NS, n)["status"]["targetReplica"] for n in ENDPOINTS}
                    soak.snapshot(f"before kill -9 of {lead.name}")
                    await soak.kill9(lead, "leader")
                    t_kill = time.time()
                    other = b if lead is a else a
                    for _ in range(600):  # 30 s at most
                        if await soak.leader() is other:
                            break
                        await asyncio.sleep(0.05)
                    soak.snapshot(f"{other.name} took over")
                    handovers.append(
                        {
                            "killed": lead.name,
                            "took_over": other.name,
                            "handover_s": round(time.time() - t_kill, 2),
                            "replicas_running": running,
                        }
                    )
                    soak.start(lead, election=True)  # back as the standby
                    kills_left -= 1
                    next_kill = time.time() + max(LEASE_S * 3, soak.rng.uniform(8.0, 20.0))
            for r in soak.replicas:
                if r.proc is None:
                    soak.start(r, election=True)
        # stop the standby first, so the last ledger to look is the leader's
        lead = await soak.leader()
        for r in sorted(soak.replicas, key=lambda r: r is lead):
            await soak.stop(r)
        stop_sampling.set()
        await sampler
        if timeline is not None:
            await timeline
        soak.snapshot("end")
        virtual_s = clock.now() - wall0
    finally:
        for r in soak.replicas:
            if r.proc is not None:
                r.proc.kill()
                r.proc.wait()
            await r.proxy.stop()
        await lease.stop()
        await emu.stop()
    return figures(soak, handovers, virtual_s, work)


# -- the figures -----------------------------------------------------------------------------


def _ledger(path: Path) -> tuple[dict[str, int], dict[str, float]]:
    """Replica-minutes per endpoint key, and each key's last look (virtual epoch seconds)."""
    if not path.exists():
        return {}, {}
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        minutes: dict[str, int] = {}
        for key, m in db.execute("SELECT key, minutes FROM ledger_spend"):
            minutes[key] = minutes.get(key, 0) + int(m)
        seen = dict(db.execute("SELECT key, last_observed FROM ledger_endpoint").fetchall())
    finally:
        db.close()
    return minutes, seen


def ledger_vs_bill(soak: Soak, replicas: list[Replica]) -> dict[str, dict[str, int]]:
    """Per endpoint: the replicas' ledgers summed, and the emulator's bill as of their last look
    (the bill runs on; the ledger stops with the daemons)."""
    ledger_min: dict[str, int] = {}
    last_look: dict[str, float] = {}
    for r in replicas:
        mins, seen = _ledger(r.dir / "state.sqlite")
        for k, m in mins.items():
            ledger_min[k] = ledger_min.get(k, 0) + m
        for k, t in seen.items():
            last_look[k] = max(last_look.get(k, 0.0), t)
    out = {}
    for name in ENDPOINTS:
        key = f"{NS}/{name}"
        billed = sum(soak.platform.billed_minutes(NS, name, at=last_look.get(key)).values())
        out[key] = {"ledger_min": ledger_min.get(key, 0), "billed_min": billed}
    return out


def _log_events(paths: list[Path]) -> tuple[list[dict[str, Any]], int]:
    events, tracebacks = [], 0
    for p in paths:
        for line in p.read_text(errors="replace").splitlines():
            if "Traceback" in line:
                tracebacks += 1
            with contextlib.suppress(ValueError):
                obj = json.loads(line)
                if isinstance(obj, dict):
                    events.append(obj)
    return events, tracebacks


def _write_min_max(bodyobj: Any) -> tuple[int | None, int | None]:
    sc = (bodyobj or {}).get("compute", {}).get("scaling", {}) if isinstance(bodyobj, dict) else {}
    return sc.get("minReplica"), sc.get("maxReplica")


def figures(
    soak: Soak, handovers: list[dict[str, Any]], virtual_s: float, work: Path
) -> dict[str, Any]:
    # the drift timeline (each replica's ledger against the bill, every second and at each
    # hand-over) is for finding where minutes go; it stays beside the logs
    if soak.args.timeline:
        (work / "timeline.json").write_text(json.dumps(soak.timeline, indent=1) + "\n")
    logs = [p for r in soak.replicas for p in r.logs]
    events, tracebacks = _log_events(logs)
    crashes = len(soak.crashes) + tracebacks
    # writes through either proxy: (wall time, method, path, body)
    writes = sorted(w for r in soak.replicas for w in r.proxy.writes)
    stale_actions = []
    grace = MAX_AGE_S / soak.args.speed + 2 * TICK_S / soak.args.speed
    for t, method, path, _b in writes:
        for ep, t0, t1 in soak.stale:
            if f"/{NS}/{ep}" in path and t0 + grace <= t <= t1:
                stale_actions.append({"at": t, "method": method, "path": path})
    out_of_bounds = []
    for t, method, path, b in writes:
        lo, hi = _write_min_max(b)
        written = method == "PUT" and lo is not None and hi is not None
        if written and not (FLOOR <= lo <= hi <= CEILING):
            out_of_bounds.append({"at": t, "path": path, "min": lo, "max": hi})
    for t, name, lo, hi in soak.bounds_seen:
        if not (FLOOR <= lo <= hi <= CEILING):
            out_of_bounds.append({"at": t, "endpoint": name, "min": lo, "max": hi})
    mistaken = [
        e
        for e in events
        if e.get("event") == "decision" and e.get("reason") in ("human_override", "human_pause")
    ]
    # Retry-After: listings the same process sent before the wait was over
    retry_violations: list[dict[str, Any]] = []
    for rname, fault, wait in soak.holds:
        if not fault.applied_at:
            continue  # the 429 was never served (another fault, or the run ended)
        r = next(x for x in soak.replicas if x.name == rname)
        t429 = fault.applied_at[0]
        if any(t429 < s < t429 + wait for s in r.started_at):
            continue  # a restarted process does not know the wait: kill -9 forgets it
        inside = [t for t, _m, p in r.proxy.requests if re.search(LIST, p)]
        inside = [t for t in inside if t429 + 0.05 < t < t429 + wait - 0.25]
        if inside:
            retry_violations.append({"replica": rname, "at": t429, "wait": wait, "sent": inside})
    per_endpoint = ledger_vs_bill(soak, soak.replicas)
    lost = sum(max(0, v["billed_min"] - v["ledger_min"]) for v in per_endpoint.values())
    double = sum(max(0, v["ledger_min"] - v["billed_min"]) for v in per_endpoint.values())
    solo = soak.solo_ledger
    solo_lost = sum(max(0, v["billed_min"] - v["ledger_min"]) for v in solo.values())
    solo_double = sum(max(0, v["ledger_min"] - v["billed_min"]) for v in solo.values())
    text = "".join(p.read_text(errors="replace") for p in logs)
    leaks = text.count(TOKEN) + text.count(KUBE_TOKEN)
    injected: dict[str, int] = {}
    for r in soak.replicas:
        for k, v in r.proxy.injected.items():
            injected[k] = injected.get(k, 0) + v
    decisions = [e for e in events if e.get("event") == "decision"]
    return {
        "virtual_hours": round(virtual_s / 3600.0, 2),
        "faults_injected": sum(injected.values()),
        "faults_by_proxy_kind": injected,
        "faults_scheduled_by_kind": soak.faults_added,
        "crashes": crashes,
        "crash_detail": soak.crashes,
        "kill_9": len(soak.kills),
        "kill_9_of_the_leader": len(handovers),
        "handovers": handovers,
        "actions_on_stale_data": len(stale_actions),
        "stale_action_detail": stale_actions[:20],
        "stale_windows": len(soak.stale),
        "out_of_bounds_settings": len(out_of_bounds),
        "out_of_bounds_detail": out_of_bounds[:20],
        "ledger_lost_minutes": lost,
        "ledger_double_counted_minutes": double,
        "ledger_per_endpoint": per_endpoint,
        "ledger_solo_part_lost_minutes": solo_lost,
        "ledger_solo_part_double_counted_minutes": solo_double,
        "ledger_solo_part_per_endpoint": solo,
        "self_mistaken_for_person": len(mistaken),
        "retry_after_violations": sum(len(v["sent"]) for v in retry_violations),
        "retry_after_violation_detail": retry_violations[:10],
        "retry_after_faults": len(soak.holds),
        "token_leaks": leaks,
        "writes": len(writes),
        "decisions_logged": len(decisions),
        "log_lines": sum(1 for _ in events),
        "workdir": str(work),
    }


MUST_BE_ZERO = (
    "crashes",
    "actions_on_stale_data",
    "out_of_bounds_settings",
    "ledger_lost_minutes",
    "ledger_double_counted_minutes",
    "self_mistaken_for_person",
    "retry_after_violations",
    "token_leaks",
)


def machine() -> dict[str, Any]:
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
    ).stdout.strip()
    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "platform": pyplatform.platform(),
        "python": sys.version.split()[0],
        "commit": commit or "unknown",
        "versions": versions(["governor", "httpx", "aiohttp", "uvicorn", "starlette"]),
    }


def report_md(res: dict[str, Any]) -> str:
    f = res["figures"]
    rows = [
        ("faults injected", f["faults_injected"]),
        ("crashes", f["crashes"]),
        ("actions on stale data", f["actions_on_stale_data"]),
        ("out-of-bounds settings", f["out_of_bounds_settings"]),
        ("lost ledger minutes", f["ledger_lost_minutes"]),
        ("double-counted ledger minutes", f["ledger_double_counted_minutes"]),
        ("self-mistaken-for-person events", f["self_mistaken_for_person"]),
        ("calls inside a Retry-After", f["retry_after_violations"]),
        ("token leaks", f["token_leaks"]),
    ]
    lines = [
        "# Fault soak",
        "",
        f"`{res['command']}`",
        "",
        f"{res['wall_s']:.0f} s wall, {f['virtual_hours']} virtual hours at {res['speed']:g}x; "
        f"seed {res['seed']}; {f['kill_9']} kill -9 ({f['kill_9_of_the_leader']} of the "
        f"leader), {f['writes']} writes, {f['decisions_logged']} decisions logged.",
        "",
        "| figure | value |",
        "|---|---:|",
        *[f"| {k} | {v} |" for k, v in rows],
        "",
        f"Faults by kind (as applied by the proxies): {json.dumps(f['faults_by_proxy_kind'])}; "
        f"scheduled: {json.dumps(f['faults_scheduled_by_kind'])}.",
        "",
        "Kill -9 of the leader, hand-overs (killed, took over, seconds): "
        f"{json.dumps([(h['killed'], h['took_over'], h['handover_s']) for h in f['handovers']])}; "
        "the new leader resumes from the Lease's ledger watermark (docs/operations.md).",
        "",
        "Ledger vs the emulator's bill (replica-minutes): "
        + ", ".join(
            f"{k} {v['ledger_min']} / {v['billed_min']}"
            for k, v in f["ledger_per_endpoint"].items()
        )
        + ".",
        "",
        f"Machine: {res['machine']['cpu']}, {res['machine']['cores']} cores, load average "
        f"{res['machine']['load_average']}; {res['machine']['platform']}; Python "
        f"{res['machine']['python']}; commit {res['machine']['commit']}; "
        f"{json.dumps(res['machine']['versions'])}.",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--minutes", type=float, default=5.0, help="wall-clock minutes to run")
    p.add_argument("--seed", type=int, default=18)
    p.add_argument("--speed", type=float, default=30.0, help="virtual seconds per second")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "fault_soak"))
    p.add_argument(
        "--first-kill-s",
        type=float,
        help="kill the lone daemon this many seconds in (default: random)",
    )
    p.add_argument(
        "--timeline",
        action="store_true",
        help="write timeline.json to the workdir: each ledger against the bill every second "
        "and at each hand-over (reads the daemons' SQLite files while they run)",
    )
    p.add_argument("--workdir", help="where the daemons' state and logs go (default: a temp dir)")
    args = p.parse_args(argv)
    t0 = time.time()
    figs = asyncio.run(run(args))
    res = {
        "command": "python benchmarks/fault_soak.py " + " ".join(argv or sys.argv[1:]),
        "seed": args.seed,
        "speed": args.speed,
        "minutes": args.minutes,
        "wall_s": round(time.time() - t0, 1),
        "machine": machine(),
        "figures": figs,
        "must_be_zero": {k: figs[k] for k in MUST_BE_ZERO},
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(res, indent=2) + "\n")
    md = report_md(res)
    out.with_suffix(".md").write_text(md)
    print(md)
    bad = {k: v for k, v in res["must_be_zero"].items() if v}
    # the results themselves must not carry a token either
    written = out.with_suffix(".json").read_text() + md
    if TOKEN in written or KUBE_TOKEN in written:
        bad["token_leaks_in_results"] = 1
    if bad:
        print(f"NOT ZERO: {bad}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
