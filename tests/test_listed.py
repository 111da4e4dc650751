"""The listing's compact records (`ListedEndpoint`) against the pydantic models they stand in for.

The client reads a listing into frozen slotted records validated from the JSON bytes; everything
downstream reads them where it read `Endpoint` models before. These tests hold the two readings
equal: the same field names, the same values for any item the model accepts, a refusal (naming
the same first field) for any item it refuses, on generated items (valid ones and ones with a
field broken, dropped or retyped) and on the emulator's own listings.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pydantic
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from controller.emulator.platform import Platform, PlatformConfig
from controller.emulator.scenario import build_platform, default_scenario
from controller.platform.models import (
    LISTED_ITEM,
    LISTING,
    Compute,
    Endpoint,
    ListedCompute,
    ListedEndpoint,
    ListedModel,
    ListedProvider,
    ListedScaling,
    ListedStatus,
    ListedUser,
    ModelSpec,
    Provider,
    Scaling,
    Status,
    UserRef,
)

PAIRS = [
    (Endpoint, ListedEndpoint),
    (Provider, ListedProvider),
    (Compute, ListedCompute),
    (Scaling, ListedScaling),
    (ModelSpec, ListedModel),
    (Status, ListedStatus),
    (UserRef, ListedUser),
]


def _same(model: Any, record: Any, path: str = "") -> None:
    """Every field of the pydantic `model` equals the record's, recursively."""
    assert record is not None, path
    for name in type(model).model_fields:
        if name == "namespace":
            continue
        a, b = getattr(model, name), getattr(record, name)
        if isinstance(a, pydantic.BaseModel):
            _same(a, b, f"{path}{name}.")
        else:
            assert a == b, f"{path}{name}: {a!r} != {b!r}"
            assert type(a) is type(b), f"{path}{name}: {type(a)} != {type(b)}"


def _first_loc(exc: pydantic.ValidationError) -> tuple[Any, ...]:
    return exc.errors(include_url=False, include_input=False)[0]["loc"]


def _compare(item: Any) -> None:
    """The model and both record readings (one item, a whole listing) agree on `item`."""
    raw = json.dumps(item).encode()
    refused: tuple[Any, ...] | None = None
    try:
        model = Endpoint.model_validate(json.loads(raw))
    except pydantic.ValidationError as exc:
        refused = _first_loc(exc)
    if refused is not None:
        with pytest.raises(pydantic.ValidationError) as one:
            LISTED_ITEM.validate_json(raw)
        assert _first_loc(one.value) == refused
        with pytest.raises(pydantic.ValidationError) as whole:
            LISTING.validate_json(b'{"items": [' + raw + b"]}")
        assert _first_loc(whole.value) == ("items", 0, *refused)
        with pytest.raises(pydantic.ValidationError) as py:
            LISTED_ITEM.validate_python(json.loads(raw))
        assert _first_loc(py.value) == refused
        return
    _same(model, LISTED_ITEM.validate_json(raw))
    _same(model, LISTED_ITEM.validate_python(json.loads(raw)))
    (listed,) = LISTING.validate_json(b'{"items": [' + raw + b"]}").items
    _same(model, listed)
    model.namespace = "ns"
    assert listed.placed("ns").key == model.key
    assert listed.state == model.state


def test_records_have_the_models_fields_in_the_models_order():
    """A field added to a model and not to its record (or the reverse) fails here; the order
    matters because the first error of a bad item names the first bad field in it."""
    for model, record in PAIRS:
        fields = [f.name for f in dataclasses.fields(record) if f.init]
        assert fields == [n for n in model.model_fields if n != "namespace"], record.__name__


# -- generated items -----------------------------------------------------------------------------

_text = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=12)
_ts = st.sampled_from(
    [
        "2026-01-01T00:00:00Z",
        "2026-01-01T00:00:00.123456789Z",
        "2026-03-04T05:06:07.5+02:00",
        "2026-01-01 00:00:00z",
        "yesterday",
        "2026-13-01T00:00:00Z",
    ]
)
_user = st.fixed_dictionaries({"id": _text, "name": _text})
_state = st.sampled_from(
    [
        *("pending", "initializing", "updating", "updateFailed", "running", "paused", "failed"),
        *("scaledToZero", "deleting", "Running", ""),
    ]
)
_count = st.one_of(st.integers(-2, 10), st.sampled_from([1.0, 2.5, "3", True]))


def _opt(keys: dict[str, st.SearchStrategy[Any]]) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries({}, optional=keys)


_scaling = st.builds(
    lambda req, opt: {**req, **opt},
    st.fixed_dictionaries({"minReplica": _count, "maxReplica": _count}),
    _opt(
        {
            "scaleToZeroTimeout": st.one_of(st.none(), st.integers(0, 60), st.just(15.5)),
            "metric": st.one_of(st.none(), _text),
            "measure": st.one_of(
                st.none(),
                st.dictionaries(_text, st.one_of(st.none(), st.floats(allow_nan=False))),
                st.just({"pendingRequests": "x"}),
            ),
        }
    ),
)


def _item() -> st.SearchStrategy[dict[str, Any]]:
    required = st.fixed_dictionaries(
        {
            "name": _text,
            "provider": st.fixed_dictionaries({"vendor": _text, "region": _text}),
            "compute": st.builds(
                lambda req, opt: {**req, **opt},
                st.fixed_dictionaries(
                    {
                        "accelerator": st.sampled_from(["gpu", "cpu"]),
                        "instanceType": _text,
                        "instanceSize": _text,
                        "scaling": _scaling,
                    }
                ),
                _opt({"id": st.one_of(st.none(), _text)}),
            ),
            "model": st.builds(
                lambda req, opt: {**req, **opt},
                st.fixed_dictionaries({"repository": _text}),
                _opt(
                    {
                        "framework": st.one_of(st.none(), _text),
                        "revision": st.one_of(st.none(), _text),
                        "task": st.one_of(st.none(), _text),
                        "image": st.just({"custom": {"url": "x"}}),
                        "env": st.one_of(st.none(), st.dictionaries(_text, _text, max_size=2)),
                        "secrets": st.one_of(
                            st.none(), st.dictionaries(_text, st.none(), max_size=2)
                        ),
                        "unknownField": st.integers(),
                    }
                ),
            ),
            "status": st.builds(
                lambda req, opt: {**req, **opt},
                st.fixed_dictionaries({"createdAt": _ts, "updatedAt": _ts, "state": _state}),
                _opt(
                    {
                        "createdBy": st.one_of(st.none(), _user),
                        "updatedBy": st.one_of(st.none(), _user, st.just({"id": 1})),
                        "private": st.one_of(st.none(), st.just({"serviceName": "x"})),
                        "message": st.one_of(st.none(), _text),
                        "url": st.one_of(st.none(), _text),
                        "readyReplica": _count,
                        "targetReplica": _count,
                        "errorMessage": st.one_of(st.none(), _text),
                    }
                ),
            ),
        }
    )
    optional = _opt(
        {
            "type": st.sampled_from(["protected", "public", 3]),
            "accountId": st.one_of(st.none(), _text),
            "healthRoute": st.one_of(st.none(), _text),
            "tags": st.one_of(st.lists(_text, max_size=3), st.just("notalist"), st.just([1])),
            "namespace": _text,  # not the listing's to set: both ignore it
            "somethingNew": st.integers(),
        }
    )
    return st.builds(lambda a, b: {**a, **b}, required, optional)


def _paths(obj: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix] if prefix else []
    if isinstance(obj, dict):
        for k, v in obj.items():
            out.extend(_paths(v, (*prefix, k)))
    return out


@st.composite
def _broken(draw: st.DrawFn) -> dict[str, Any]:
    """A generated item with one field dropped or replaced by a value of another type."""
    item = draw(_item())
    path = draw(st.sampled_from(_paths(item)))
    parent = item
    for k in path[:-1]:
        parent = parent[k]
    if draw(st.booleans()):
        del parent[path[-1]]
    else:
        parent[path[-1]] = draw(st.sampled_from([None, -1, "x", [], {}, 1.5, True]))
    return item


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_item())
def test_generated_items_read_the_same(item):
    """Generated items (some invalid by their values): the record and the model agree."""
    _compare(item)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_broken())
def test_broken_items_are_refused_at_the_same_field(item):
    """An item with one field dropped or retyped: accepted by both or refused by both, with the
    same first field named."""
    _compare(item)


@pytest.mark.parametrize("value", [-1, None, [], {}, 1.5, True, "elsewhere"])
def test_a_bodys_own_namespace_is_read_by_neither(value: Any):
    """The path gives the namespace: a body's `namespace` of any type is ignored by the model as
    by the records (hypothesis found `namespace: -1` refused by the model, taken by the record)."""
    item = json.loads(json.dumps(_emulator_items()[0]))
    item["namespace"] = value
    _compare(item)
    assert Endpoint.model_validate(item).namespace is None


# -- the emulator's listings ---------------------------------------------------------------------


def _emulator_items() -> list[dict[str, Any]]:
    """A default-scenario platform moved through states: running, paused, scaled to zero,
    updating, initializing; every item of its listing."""
    start = 1_800_000_000.0
    p: Platform = build_platform(default_scenario(), start=start, config=PlatformConfig())
    ns = sorted(p.namespaces())[0]
    names = [e["name"] for e in p.list(ns)]
    user = UserRef(id="u-1", name="bot")
    p.advance_to(start + 600)
    p.pause(ns, names[0], by=user)
    if len(names) > 1:
        p.scale_to_zero(ns, names[1], by=user)
    if len(names) > 2:
        bounds = {"compute": {"scaling": {"minReplica": 2, "maxReplica": 3}}}
        p.update(ns, names[2], bounds, by=user)
    p.advance_to(start + 605)
    return p.list(ns)


def test_emulator_listing_reads_the_same():
    """Every item of real emulator listings, in several states, reads the same both ways."""
    items = _emulator_items()
    assert len({i["status"]["state"] for i in items}) >= 2
    for item in items:
        _compare(item)


def test_whole_listing_keeps_order_and_drops_nothing():
    """One pass over a whole emulator listing gives one record per item, in order."""
    items = _emulator_items()
    got = LISTING.validate_json(json.dumps({"items": items, "nextPage": None}).encode()).items
    assert [e.name for e in got] == [i["name"] for i in items]
    for item, rec in zip(items, got, strict=True):
        _same(Endpoint.model_validate(item), rec)


def test_records_are_read_only():
    """Code downstream (the ledger's buffer, the fast replay's cache) keeps records across ticks;
    none can be changed under it."""
    (rec,) = LISTING.validate_json(json.dumps({"items": _emulator_items()[:1]}).encode()).items
    with pytest.raises(dataclasses.FrozenInstanceError):
        rec.name = "other"  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        rec.compute.scaling.min_replica = 9  # type: ignore[misc]
