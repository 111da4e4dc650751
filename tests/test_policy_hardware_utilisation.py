"""hardware_utilisation: the HPA formula on GPU/CPU use, with tolerance and cold replicas."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from policies.hardware_utilisation import HardwareUtilisationParams, HardwareUtilisationPolicy
from tests.policy_support import T0, feed, rich_window, view

POLICY = HardwareUtilisationPolicy(
    HardwareUtilisationParams(target_util_percent=50, tolerance=0.1, window_s=60)
)


@dataclass(frozen=True)
class Case:
    """Per-replica utilisation samples as (offset s, {replica: percent}) on one signal."""

    samples: tuple[tuple[float, dict[str, float]], ...]
    current: int = 2
    ready: int | None = None
    accelerator: str = "gpu"
    signal: str = "gpu"  # which series the samples fill


def run(c: Case, policy: HardwareUtilisationPolicy = POLICY):
    w = rich_window(feed(T0 + t, **{c.signal: values}) for t, values in c.samples)
    v = view(current=c.current, ready=c.ready, window=w, accelerator=c.accelerator)
    return policy.propose(v, T0)


def _both(pct: float) -> dict[str, float]:
    return {"a": pct, "b": pct}


@pytest.mark.parametrize(
    ("case", "reason", "replicas"),
    [
        pytest.param(Case(((-10, _both(50)),)), "within_tolerance", 2, id="on-target"),
        pytest.param(Case(((-10, _both(54)),)), "within_tolerance", 2, id="inside-tolerance"),
        pytest.param(Case(((-10, _both(56)),)), "utilisation_target", 3, id="just-over-tolerance"),
        pytest.param(Case(((-10, _both(100)),)), "utilisation_target", 4, id="double"),
        pytest.param(Case(((-10, _both(20)),)), "utilisation_target", 1, id="scale-down"),
        pytest.param(Case(((-10, _both(0)),)), "utilisation_target", 1, id="never-zero"),
        pytest.param(
            Case(((-50, _both(100)), (-20, _both(50)))),
            "utilisation_target",
            3,
            id="mean-over-window",
        ),
        pytest.param(
            Case(((-90, _both(100)), (-10, _both(50)))),
            "within_tolerance",
            2,
            id="old-sample-ignored",
        ),
        pytest.param(
            Case(((-10, {"a": 100.0, "b": 0.0, "c": 0.0}),), current=3, ready=1),
            "initializing",
            3,
            id="cold-replicas-excluded-hold-current",
        ),
        pytest.param(
            Case(((-10, {"a": 100.0, "b": 100.0, "c": 0.0}),), current=3, ready=2),
            "utilisation_target",
            4,
            id="cold-replica-excluded-scale-up",
        ),
        pytest.param(
            Case(((-10, {"a": 10.0, "b": 0.0}),), current=2, ready=1),
            "initializing",
            2,
            id="no-down-while-starting",
        ),
        pytest.param(Case((), current=2, ready=0), "initializing", 2, id="none-ready-yet"),
        pytest.param(Case((), current=0, ready=0), "no_data", None, id="at-zero"),
        pytest.param(Case(((-90, _both(50)),)), "no_data", None, id="stale-window"),
        pytest.param(
            Case(((-10, _both(100)),), accelerator="cpu", signal="cpu"),
            "utilisation_target",
            4,
            id="cpu-instance-uses-cpu",
        ),
        pytest.param(
            Case(((-10, _both(100)),), accelerator="cpu", signal="gpu"),
            "no_data",
            None,
            id="cpu-instance-ignores-gpu",
        ),
    ],
)
def test_utilisation_table(case, reason, replicas):
    """Each scenario yields exactly the expected reason and replica count."""
    p = run(case)
    assert (p.reason, p.replicas) == (reason, replicas), p.message
    assert p.kind == "demand"
    assert p.valid is (reason != "no_data")


def test_explicit_signal_overrides_accelerator():
    """`signal: cpu` tracks CPU on a GPU instance."""
    pol = HardwareUtilisationPolicy(HardwareUtilisationParams(target_util_percent=50, signal="cpu"))
    p = run(Case(((-10, _both(100)),), signal="cpu"), pol)
    assert (p.reason, p.replicas) == ("utilisation_target", 4)


@settings(max_examples=200, deadline=None)
@given(
    ready=st.integers(1, 30),
    target=st.floats(10, 95),
    tolerance=st.floats(0.01, 0.5),
    noise=st.lists(st.floats(-1, 1), min_size=1, max_size=10),
)
def test_noise_within_tolerance_never_changes_desired(ready, target, tolerance, noise):
    """A window whose mean stays within the tolerance band always proposes the current count."""
    pol = HardwareUtilisationPolicy(
        HardwareUtilisationParams(target_util_percent=target, tolerance=tolerance)
    )
    band = 0.999 * tolerance * target
    samples = [
        feed(T0 - 5 * i, gpu={f"r{j}": min(100.0, target + n * band) for j in range(ready)})
        for i, n in enumerate(noise)
    ]
    p = pol.propose(view(current=ready, window=rich_window(samples)), T0)
    assert (p.reason, p.replicas) == ("within_tolerance", ready), p.message
