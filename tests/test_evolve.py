"""`core.types.evolve`, the decision core's cheaper `dataclasses.replace` (issue 16), is replace:
the same copy for any subset of any field of each dataclass the core copies, the original left
as it was, and an unknown field refused."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given
from hypothesis import strategies as st

from controller.core.steps import Draft, Limits, Stale
from controller.core.types import Action, Decision, EndpointMemory, Reason, evolve

EXAMPLES = [
    Draft(current=2, desired=3, notes=("a",)),
    Limits(floor=1, ceiling=4, crossed="x"),
    Stale(reason=Reason.STALE_METRICS, message="old"),
    Decision(key="ns/a", at=5.0, action=Action.HOLD, reason=Reason.WITHIN_RANGE, message="m"),
    EndpointMemory(first_seen=1.0),
]
VALUES = st.one_of(
    st.none(), st.integers(-3, 9), st.text(max_size=3), st.tuples(st.text(max_size=2))
)


@pytest.mark.parametrize("obj", EXAMPLES, ids=lambda o: type(o).__name__)
@given(data=st.data())
def test_evolve_is_replace(obj, data):
    names = [f.name for f in dataclasses.fields(obj)]
    picked = data.draw(st.lists(st.sampled_from(names), unique=True))
    changes = {n: data.draw(VALUES) for n in picked}
    before = dataclasses.astuple(obj)
    got = evolve(obj, **changes)
    want = dataclasses.replace(obj, **changes)
    assert type(got) is type(want)
    assert all(getattr(got, n) is getattr(want, n) for n in names)
    assert dataclasses.astuple(obj) == before
    with pytest.raises(dataclasses.FrozenInstanceError):
        got.__setattr__(names[0], None)


def test_an_unknown_field_is_refused():
    with pytest.raises(TypeError, match="no field 'nope'"):
        evolve(EXAMPLES[0], nope=1)
