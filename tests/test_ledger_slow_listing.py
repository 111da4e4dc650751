"""The ledger against the emulator's bill when the world moves while a listing is on its way.

The fault soak lost ledger minutes on a loaded machine: the loop billed each listing as of the
tick's start, so a change the listing showed but that was made after the tick began (a slow or
trickled listing, a starved process) was dated too early or not at all. Here the clock is virtual
and jumps minutes during one listing, deterministically: a person scales an endpoint down while
the listing is on its way, and another up just after the listing was answered (so only the next
listing shows it, with an `updatedAt` before that listing's tick began). Every replica-minute is
billed once, against the emulator's own bill, over loopback HTTP.
"""

from __future__ import annotations

from typing import Any

from controller.clock import VirtualClock
from controller.cost.ledger import CostTracker
from controller.daemon.loop import Governor
from controller.emulator.platform import Platform
from controller.emulator.server import EmulatorServer
from controller.platform.client import make_client
from controller.settings import load_settings
from tests.conftest import BOT, HUMAN, HUMAN_TOKEN, NS, TOKEN, endpoint_body

T0 = 1_800_000_000.0
TICK = 60.0


def _settings(base_url: str, tmp_path: Any):
    return load_settings(
        None,
        overrides={
            "api": {"base_url": base_url},
            "namespaces": [NS],
            "manage": {"tags": ["managed"]},  # nothing is managed: only people act here
            "loop": {"tick_interval_s": TICK},
            "state": {"path": str(tmp_path / "state.sqlite")},
        },
        env={"HF_TOKEN": TOKEN},
    )


def _scale(platform: Platform, name: str, n: int) -> None:
    body = {"compute": {"scaling": {"minReplica": n, "maxReplica": n}}}
    platform.update(NS, name, body, by=HUMAN)


async def test_changes_made_while_a_listing_is_on_its_way_are_billed_once(tmp_path):
    clock = VirtualClock(T0)
    platform = Platform(start=T0, seed=3)
    for name in ("down", "up"):
        platform.create(NS, endpoint_body(name, min_replica=3, max_replica=3), by=HUMAN, ready=True)
    async with EmulatorServer(
        platform, clock=clock, tokens={TOKEN: BOT, HUMAN_TOKEN: HUMAN}, tick_s=3600
    ) as srv:
        s = _settings(srv.base_url, tmp_path)
        async with make_client(s) as client:
            tracker = CostTracker.open(s)
            gov = Governor(s, clock=clock, client=client, observers=[tracker])
            real_list = client.list_endpoints
            moves: list[str] = []

            async def slow_list(namespace: str, **kw: Any) -> Any:
                """The listing takes minutes of clock time; people act meanwhile."""
                move = moves.pop(0) if moves else ""
                if move == "down-before-answer":
                    clock.advance(150.0)  # 2.5 minutes into the listing's flight
                    platform.advance_to(clock.now())
                    _scale(platform, "down", 1)
                out = await real_list(namespace, **kw)
                if move == "up-after-answer":
                    clock.advance(100.0)  # the listing was answered; the answer is slow to arrive
                    platform.advance_to(clock.now())
                    _scale(platform, "up", 5)
                    clock.advance(50.0)
                    platform.advance_to(clock.now())
                return out

            client.list_endpoints = slow_list  # type: ignore[method-assign]
            await gov.tick()  # first sighting, at the endpoints' creation
            script = ["", "down-before-answer", "", "", "up-after-answer", "", "", ""]
            for move in script:
                clock.advance(TICK)
                platform.advance_to(clock.now())
                moves.append(move)
                await gov.tick()
    lg = tracker.ledger
    spend = lg.spend(0.0, 4e9)
    got = {}
    for name in ("down", "up"):
        key = f"{NS}/{name}"
        seen = lg.known()[key].last_observed
        billed = sum(platform.billed_minutes(NS, name, at=seen).values())
        got[name] = (spend[key].minutes, billed)
    assert got["down"][0] == got["down"][1], got
    assert got["up"][0] == got["up"][1], got
    tracker.close()
    # what happened is what the bill says: 2 replicas closed, 2 added, minutes of flight apart
    assert platform.get(NS, "down")["status"]["targetReplica"] == 1
    assert platform.get(NS, "up")["status"]["targetReplica"] == 5
