"""Leader election against the Lease stand-in (controller/emulator/kube.py): one leader, conflicts
decided by resourceVersion, takeover only after the Lease stayed unchanged for a lease period, a
leader that cannot renew stops acting before anyone may take over, and a clean release."""

from __future__ import annotations

import asyncio

import pytest

from controller.daemon.election import API_IDENTITY_ANNOTATION, LeaseConfig, LeaseElector
from controller.daemon.exporter import Metrics
from controller.emulator.kube import LeaseApi, LeaseServer
from controller.errors import ConfigError
from controller.settings import load_settings


class Mono:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def cfg(url: str, identity: str, **kw: float) -> LeaseConfig:
    return LeaseConfig(
        api_url=url,
        namespace="ops",
        name="governor",
        identity=identity,
        token_file=None,
        ca_file=None,
        lease_duration_s=kw.get("lease", 15.0),
        renew_deadline_s=kw.get("renew", 10.0),
        retry_period_s=kw.get("retry", 2.0),
        timeout_s=kw.get("timeout", 5.0),
    )


@pytest.fixture
async def lease():
    async with LeaseServer(LeaseApi()) as srv:
        yield srv


async def test_one_leader_and_a_standby(lease):
    mono = Mono()
    a = LeaseElector(cfg(lease.url, "a"), monotonic=mono)
    b = LeaseElector(cfg(lease.url, "b"), monotonic=mono)
    try:
        assert await a.try_acquire_or_renew()
        assert not await b.try_acquire_or_renew()
        assert a.is_leader()
        assert not b.is_leader()
        assert b.holder == "a"
        # renewals keep it; the standby keeps seeing a changing record, so never expiry
        for _ in range(20):
            mono.t += 2
            assert await a.try_acquire_or_renew()
            assert not await b.try_acquire_or_renew()
        spec = lease.api.leases[("ops", "governor")]["spec"]
        assert spec["holderIdentity"] == "a"
        assert spec["leaseTransitions"] == 0
    finally:
        await a.aclose()
        await b.aclose()


async def test_create_race_has_one_winner(lease):
    mono = Mono()
    els = [LeaseElector(cfg(lease.url, f"r{i}"), monotonic=mono) for i in range(4)]
    try:
        won = await asyncio.gather(*(e.try_acquire_or_renew() for e in els))
        assert sum(won) == 1
        assert lease.api.conflicts >= 1
    finally:
        for e in els:
            await e.aclose()


async def test_takeover_after_a_lease_period_and_conflict_on_a_stale_resource_version(lease):
    mono = Mono()
    a = LeaseElector(cfg(lease.url, "a"), monotonic=mono)
    b = LeaseElector(cfg(lease.url, "b"), monotonic=mono)
    c = LeaseElector(cfg(lease.url, "c"), monotonic=mono)
    try:
        assert await a.try_acquire_or_renew()
        assert not await b.try_acquire_or_renew()
        assert not await c.try_acquire_or_renew()
        # a dies (stops renewing). Before a lease period has passed nobody may take it.
        mono.t += 14.0
        assert not await b.try_acquire_or_renew()
        # the dead leader stopped acting at its renew deadline, before anyone could take over
        assert not a.is_leader()
        mono.t += 1.5
        # b and c both see it expired; both PUT with the same resourceVersion: one 409
        won = await asyncio.gather(b.try_acquire_or_renew(), c.try_acquire_or_renew())
        assert sorted(won) == [False, True]
        assert lease.api.conflicts >= 1
        leader = b if won[0] else c
        spec = lease.api.leases[("ops", "governor")]["spec"]
        assert spec["holderIdentity"] == leader.identity
        assert spec["leaseTransitions"] == 1
        # a comes back: it must not act, and it sees the new holder
        assert not await a.try_acquire_or_renew()
        assert a.holder == leader.identity
    finally:
        for e in (a, b, c):
            await e.aclose()


async def test_release_hands_over_at_the_next_round(lease):
    mono = Mono()
    a = LeaseElector(cfg(lease.url, "a"), monotonic=mono)
    b = LeaseElector(cfg(lease.url, "b"), monotonic=mono)
    try:
        assert await a.try_acquire_or_renew()
        assert not await b.try_acquire_or_renew()
        await a.release()
        assert not a.is_leader()
        mono.t += 0.1
        assert await b.try_acquire_or_renew()
    finally:
        await a.aclose()
        await b.aclose()


async def test_api_identity_is_published_to_the_standby_and_leadership_to_metrics(lease):
    mono = Mono()
    m = Metrics()
    a = LeaseElector(cfg(lease.url, "a"), monotonic=mono)
    b = LeaseElector(
        cfg(lease.url, "b"),
        monotonic=mono,
        on_change=lambda e: m.set_leader(e.identity, e.is_leader(), e.holder),
    )
    try:
        a.api_identity = "governor-bot"
        assert await a.try_acquire_or_renew()
        assert not await b.try_acquire_or_renew()
        meta = lease.api.leases[("ops", "governor")]["metadata"]
        assert meta["annotations"][API_IDENTITY_ANNOTATION] == "governor-bot"
        assert b.observed_api_identity == "governor-bot"
        assert m.registry.get_sample_value("governor_leader", {"identity": "b"}) == 0
        assert m.registry.get_sample_value("governor_lease_holder_info", {"holder": "a"}) == 1
        mono.t += 16
        assert await b.try_acquire_or_renew()
        assert m.registry.get_sample_value("governor_leader", {"identity": "b"}) == 1
        assert m.registry.get_sample_value("governor_lease_holder_info", {"holder": "b"}) == 1
        assert (
            m.registry.get_sample_value("governor_leadership_changes_total", {"change": "gained"})
            == 1
        )
    finally:
        await a.aclose()
        await b.aclose()


async def test_an_unreachable_api_server_ends_leadership_at_the_renew_deadline(lease):
    mono = Mono()
    a = LeaseElector(cfg(lease.url, "a"), monotonic=mono)
    try:
        assert await a.try_acquire_or_renew()
        await lease.stop()
        mono.t += 5
        assert await a.try_acquire_or_renew()  # failed renewal, still inside the deadline
        mono.t += 5
        assert not await a.try_acquire_or_renew()
        assert not a.is_leader()
    finally:
        await a.aclose()


@pytest.mark.parametrize(
    ("election", "needle"),
    [
        ({"enabled": True, "lease_duration_s": 10, "renew_deadline_s": 10}, "renew_deadline_s"),
        ({"retry_period_s": 9}, "retry_period_s"),
        ({"api_url": "http://[::1/x"}, "election.api_url"),
    ],
)
def test_election_settings_are_checked(election, needle):
    with pytest.raises(ConfigError) as exc:
        load_settings(None, overrides={"election": election}, env={})
    assert needle in str(exc.value)


def test_lease_config_outside_a_pod_says_what_is_missing():
    from controller.daemon.election import lease_config

    s = load_settings(None, overrides={"election": {"enabled": True, "namespace": "x"}}, env={})
    with pytest.raises(ConfigError, match="KUBERNETES_SERVICE_HOST"):
        lease_config(s.election, env={})
