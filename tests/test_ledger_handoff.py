"""The ledger's hand-over under leader election, against the emulator's platform model in virtual
time: a standby that takes over adopts the old leader's watermark and bills its own listings after
it, so the two ledgers together are the platform's bill; spend a killed leader recorded after its
last published watermark is taken back when its successor resumed from that watermark."""

from __future__ import annotations

from controller.cost.ledger import Ledger
from controller.cost.pricing import PriceBook
from controller.daemon.election import LeaseConfig, LeaseElector, LedgerHandoff
from controller.emulator.kube import LeaseApi, LeaseServer
from controller.emulator.load import Constant
from controller.emulator.platform import Platform, SimParams
from controller.platform.models import Endpoint
from tests.conftest import BOT, NS, T0, endpoint_body

TICK = 15.0


class Mono:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def _cfg(url: str, identity: str) -> LeaseConfig:
    return LeaseConfig(
        api_url=url,
        namespace="ops",
        name="governor",
        identity=identity,
        token_file=None,
        ca_file=None,
        lease_duration_s=15.0,
        renew_deadline_s=10.0,
        retry_period_s=2.0,
        timeout_s=5.0,
    )


def _world() -> Platform:
    p = Platform(start=T0, seed=3)
    sim = SimParams(cold_start_s=30.0, concurrency=4, service_time_s=1.0)
    body = endpoint_body("chat", min_replica=2, max_replica=2, tags=["managed"])
    p.create(NS, body, by=BOT, sim=sim, load=Constant(2.0), ready=True)
    return p


def _listing(p: Platform, t: float) -> list[Endpoint]:
    p.advance_to(t)
    return [Endpoint.model_validate(p.get(NS, "chat"))]


def _ledger(tmp_path, name: str) -> Ledger:
    lg = Ledger(tmp_path / f"{name}.sqlite", prices=PriceBook(), tick_interval_s=TICK)
    lg.track_unpublished = True
    return lg


def _minutes(lg: Ledger) -> int:
    return sum(c.minutes for c in lg.spend(0.0, 4e9).values())


def _bill(p: Platform, at: float) -> int:
    return sum(p.billed_minutes(NS, "chat", at=at).values())


def _scale(p: Platform, t: float, n: int) -> None:
    p.advance_to(t)
    p.update(NS, "chat", {"compute": {"scaling": {"minReplica": n, "maxReplica": n}}}, by=BOT)


def test_take_over_from_the_watermark_bills_each_minute_once(tmp_path):
    p = _world()
    a, b = _ledger(tmp_path, "a"), _ledger(tmp_path, "b")
    t = T0 + 1.0
    while t < T0 + 600:  # a leads for ten minutes; b, off by 7 s, keeps its listings
        a.observe(_listing(p, t), now=t)
        b.observe(_listing(p, t + 7.0), now=t + 7.0, record=False)
        t += TICK
    w_at = t - TICK
    doc = a.watermark()
    a.confirm_through(w_at)
    b.prune_buffer(w_at)
    # a dies; b goes on listing while nobody leads (two scale changes in the meantime)
    _scale(p, t + 3.0, 4)
    for k in range(8):
        b.observe(_listing(p, t + 7.0 + k * TICK), now=t + 7.0 + k * TICK, record=False)
    _scale(p, t + 70.0, 3)
    t_b = t + 7.0 + 8 * TICK
    replayed = b.take_over(doc, since=w_at)
    assert replayed >= 8
    b.observe(_listing(p, t_b), now=t_b)
    assert _minutes(a) > 0
    assert _minutes(b) > 0
    assert _minutes(a) + _minutes(b) == _bill(p, t_b)


def test_spend_after_the_published_watermark_is_taken_back(tmp_path):
    p = _world()
    a, b = _ledger(tmp_path, "a"), _ledger(tmp_path, "b")
    for k in range(20):
        t = T0 + 1.0 + k * TICK
        a.observe(_listing(p, t), now=t)
        b.observe(_listing(p, t + 5.0), now=t + 5.0, record=False)
    doc, w_at = a.watermark(), t
    a.confirm_through(w_at)
    b.prune_buffer(w_at)
    # a records three more ticks and is killed before it publishes them
    for k in range(1, 4):
        a.observe(_listing(p, t + k * TICK), now=t + k * TICK)
        b.observe(_listing(p, t + 5.0 + k * TICK), now=t + 5.0 + k * TICK, record=False)
    pending = a.unpublished_at()  # the ticks of those three that charged a minute
    assert pending
    assert all(w_at < at <= t + 3 * TICK for at in pending)
    before = _minutes(a)
    b.take_over(doc, since=w_at)
    t_b = t + 5.0 + 4 * TICK
    b.observe(_listing(p, t_b), now=t_b)
    assert _minutes(a) + _minutes(b) > _bill(p, t_b)  # the three ticks, twice
    # a comes back, reads that b resumed from its watermark at w_at, and takes its ticks back
    undone = a.undo_after(w_at)
    assert undone == before - _minutes(a) > 0
    assert a.unpublished_at() == []
    assert _minutes(a) + _minutes(b) == _bill(p, t_b)


def test_a_new_lease_resumes_from_the_own_record_and_bills_the_downtime(tmp_path):
    p = _world()
    a = _ledger(tmp_path, "a")
    for k in range(10):
        t = T0 + 1.0 + k * TICK
        a.observe(_listing(p, t), now=t)
    # down for five minutes, then a standby tick before it wins a new Lease
    t2 = t + 300.0
    a.observe(_listing(p, t2), now=t2, record=False)
    assert a.take_over(None, since=None) == 1
    a.observe(_listing(p, t2 + TICK), now=t2 + TICK)
    assert _minutes(a) == _bill(p, t2 + TICK)


async def test_kill_9_between_commit_and_publish_is_neither_lost_nor_double_counted(tmp_path):
    """The whole protocol over the Lease stand-in: a leads and publishes its watermark every tick;
    its last tick is committed but never published (kill -9 in between). b takes the Lease,
    resumes from a's last published watermark with its own listings; a comes back as a standby,
    reads whom b resumed from, and takes its unpublished tick back."""
    p = _world()
    mono = Mono()
    async with LeaseServer(LeaseApi()) as srv:
        ea = LeaseElector(_cfg(srv.url, "a"), monotonic=mono)
        eb = LeaseElector(_cfg(srv.url, "b"), monotonic=mono)
        a, b = _ledger(tmp_path, "a"), _ledger(tmp_path, "b")
        ha, hb = LedgerHandoff(ea, a), LedgerHandoff(eb, b)
        ea2: LeaseElector | None = None
        try:
            assert await ea.try_acquire_or_renew()
            t = T0 + 1.0
            for _ in range(20):
                mono.t += 1.0
                assert await ea.try_acquire_or_renew()
                ha.before_billing()
                a.observe(_listing(p, t), now=t)
                await ha.after_billing(t)
                assert not await eb.try_acquire_or_renew()
                b.observe(_listing(p, t + 4.0), now=t + 4.0, record=False)
                hb.as_standby()
                t += TICK
            assert len(b._buffer) <= 1  # pruned to what a has not published yet
            for k in range(5):  # a's publishes fail (the Lease API is away), then a is killed
                a.observe(_listing(p, t + k * TICK), now=t + k * TICK)
                b.observe(_listing(p, t + 4.0 + k * TICK), now=t + 4.0 + k * TICK, record=False)
            assert a.unpublished_at()
            t += 5 * TICK
            for k in range(6):  # b keeps listing while the Lease runs out
                b.observe(_listing(p, t + 4.0 + k * TICK), now=t + 4.0 + k * TICK, record=False)
                hb.as_standby()
            mono.t += 16.0  # a's record unchanged for a lease period
            assert await eb.try_acquire_or_renew()
            t_b = t + 4.0 + 6 * TICK
            hb.before_billing()
            b.observe(_listing(p, t_b), now=t_b)
            await hb.after_billing(t_b)
            assert b.unpublished_at() == []
            # a restarts on its own ledger file as a standby
            a.close()
            a = _ledger(tmp_path, "a")
            ea2 = LeaseElector(_cfg(srv.url, "a"), monotonic=mono)
            ha2 = LedgerHandoff(ea2, a)
            assert not await ea2.try_acquire_or_renew()
            a.observe(_listing(p, t_b + 5.0), now=t_b + 5.0, record=False)
            ha2.as_standby()
            assert a.unpublished_at() == []
            assert _minutes(a) > 0
            assert _minutes(a) + _minutes(b) == _bill(p, t_b)
        finally:
            for e in (ea, eb, ea2):
                if e is not None:
                    await e.aclose()
            a.close()
            b.close()


async def test_a_leader_killed_before_its_first_tick_leaves_its_record_to_the_successor(tmp_path):
    """a has billed alone (no election), wins a new Lease and is killed before its first tick
    as leader; b resumes from the ledger state a wrote into the Lease as it won it. Before, b
    found no watermark and the minutes since a's last record were in no ledger."""
    p = _world()
    mono = Mono()
    a, b = _ledger(tmp_path, "a"), _ledger(tmp_path, "b")
    for k in range(12):
        t = T0 + 1.0 + k * TICK
        a.observe(_listing(p, t), now=t)
    async with LeaseServer(LeaseApi()) as srv:
        ea = LeaseElector(_cfg(srv.url, "a"), monotonic=mono)
        eb = LeaseElector(_cfg(srv.url, "b"), monotonic=mono)
        LedgerHandoff(ea, a)
        hb = LedgerHandoff(eb, b)
        try:
            assert await ea.try_acquire_or_renew()
            for k in range(8, 16):  # b lists from two minutes on (it started later)
                if k == 10:
                    _scale(p, t + 9 * TICK + 10.0, 3)  # while nobody bills
                mono.t += 1.0
                assert not await eb.try_acquire_or_renew()
                b.observe(_listing(p, t + k * TICK), now=t + k * TICK, record=False)
                hb.as_standby()
            mono.t += 16.0  # a is gone: its record unchanged for a lease period
            assert await eb.try_acquire_or_renew()
            t_b = t + 16 * TICK
            hb.before_billing()
            b.observe(_listing(p, t_b), now=t_b)
            await hb.after_billing(t_b)
        finally:
            await ea.aclose()
            await eb.aclose()
    assert _minutes(b) > 0
    assert _minutes(a) + _minutes(b) == _bill(p, t_b)
    a.close()
    b.close()
