"""The caches on the decision path (issue 16) never serve a stale answer: merged per-endpoint
settings are cached per config object (a reload is a new one), the autopilot's override merge per
endpoint and override value, and the policies per settings object. Checked against fresh,
uncached results (hypothesis), and end to end against the emulator over loopback."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from controller.daemon.exporter import Metrics
from controller.emulator.load import Constant
from controller.settings import load_settings
from tests.conftest import NS

NAMES = ["chat", "chat-b", "embed", "prod-x"]
TAGS = ["a", "b", "night"]

_rule = st.fixed_dictionaries(
    {
        "match": st.one_of(
            st.fixed_dictionaries({"names": st.lists(st.sampled_from(NAMES), max_size=2)}),
            st.fixed_dictionaries(
                {"globs": st.lists(st.sampled_from(["chat*", "*x"]), max_size=1)}
            ),
            st.fixed_dictionaries({"tags": st.lists(st.sampled_from(TAGS), max_size=2)}),
        )
    },
    optional={
        "ceiling": st.integers(5, 9),
        "floor": st.integers(0, 4),
        "priority": st.integers(-3, 3),
        "policies": st.fixed_dictionaries(
            {
                "pending_requests": st.fixed_dictionaries(
                    {"target_per_replica": st.sampled_from([1.0, 2.0])}
                )
            }
        ),
    },
)
_budget = st.fixed_dictionaries(
    {
        "scope": st.just("tag"),
        "match": st.sampled_from(TAGS),
        "usd": st.just(100.0),
        "period": st.just("day"),
    }
)
_endpoint = st.tuples(
    st.sampled_from(["org", "lab"]),
    st.sampled_from(NAMES),
    st.lists(st.sampled_from(TAGS), max_size=3),
)


def _settings(rules: list[dict[str, Any]], budgets: list[dict[str, Any]]):
    return load_settings(None, overrides={"endpoints": rules, "budgets": budgets}, env={})


@settings(max_examples=40, deadline=None)
@given(
    rules=st.lists(_rule, max_size=4),
    budgets=st.lists(_budget, max_size=2),
    queries=st.lists(_endpoint, min_size=1, max_size=6),
)
def test_cached_endpoint_settings_equal_a_fresh_merge(rules, budgets, queries):
    """Asked for many endpoints in any order (repeats included), the cached answer for each is
    what a config that was never asked before gives for it alone."""
    warm = _settings(rules, budgets)
    for ns, name, tags in queries + queries[::-1]:
        cached = warm.endpoint_settings(ns, name, tags)
        fresh = _settings(rules, budgets).endpoint_settings(ns, name, tags)
        assert cached.model_dump() == fresh.model_dump()


def test_a_new_config_object_does_not_see_the_old_ones_cache():
    old = _settings([{"match": {"tags": ["a"]}, "ceiling": 7}], [])
    assert old.endpoint_settings("org", "chat", ["a"]).ceiling == 7
    new = _settings([{"match": {"tags": ["a"]}, "ceiling": 5}], [])
    assert new.endpoint_settings("org", "chat", ["a"]).ceiling == 5
    assert old.endpoint_settings("org", "chat", ["a"]).ceiling == 7
    # Changed tags are a different key: the rule no longer matches.
    assert new.endpoint_settings("org", "chat", ["b"]).ceiling == 10


async def test_reload_override_and_tags_reach_the_next_decision(world):
    """Over loopback against the emulator: a reloaded ceiling, an autopilot override (set,
    changed, removed) and a changed tag each take effect at the next tick."""
    world.add("chat", load=Constant(60.0), tags=["managed"])
    loop = {"tick_interval_s": 15, "dry_run": True}
    defaults = {"human_backoff_s": 0}
    s = world.settings(loop=loop, defaults=defaults)
    metrics = Metrics()
    client = world.client(s, metrics)
    gov = world.governor(s, client, metrics=metrics)

    async def desired() -> int | None:
        await world.run_ticks(gov, 1)
        return world.entries("chat")[-1].decision.desired

    async with client:
        await world.run_ticks(gov, 2)
        assert await desired() == 6  # far over the default ceiling 6
        gov.reconfigure(world.settings(loop=loop, defaults={**defaults, "ceiling": 4}))
        assert await desired() == 4
        gov.overrides[f"{NS}/chat"] = {"ceiling": 3}
        assert await desired() == 3
        gov.overrides[f"{NS}/chat"] = {"ceiling": 2}
        assert await desired() == 2
        del gov.overrides[f"{NS}/chat"]
        assert await desired() == 4
        rule = {"match": {"tags": ["night"]}, "ceiling": 5}
        gov.reconfigure(
            world.settings(loop=loop, defaults={**defaults, "ceiling": 4}, endpoints=[rule])
        )
        assert await desired() == 4  # not tagged yet
        await world.human("PUT", f"/endpoint/{NS}/chat", json={"tags": ["managed", "night"]})
        await world.run_ticks(gov, 1)  # the tick that sees a person's change holds
        assert await desired() == 5
