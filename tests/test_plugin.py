"""Third-party policies load through the `governor.policies` entry-point group, like built-ins."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path

import pytest

from policies import registry

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "governor-policy-example"
BUILTINS = ("pending_requests", "hardware_utilisation", "schedule", "pause_to_free_quota")


def test_builtins_registered_in_registry_and_pyproject():
    """Every built-in policy is in `_BUILTINS` and in pyproject's entry-point group, identically."""
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["entry-points"][
        "governor.policies"
    ]
    assert declared == registry._BUILTINS
    for name in BUILTINS:
        cls = registry.get_policy_class(name)
        assert cls.name == name
        assert cls.Params.model_config.get("extra") == "forbid"


@pytest.mark.parametrize("name", BUILTINS)
def test_builtin_params_document_every_field(name):
    """Each built-in's parameters carry a description, so `check-config` and docs can show them."""
    cls = registry.get_policy_class(name)
    for field_name, info in cls.Params.model_fields.items():
        assert info.description, f"{name}.{field_name} has no description"


def _run(cmd: list[str], **kw) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False, **kw)


def test_example_plugin_installs_and_loads_unchanged_core(tmp_path):
    """The example package, built as a wheel and pip-installed, is found by name by the registry."""
    for module in ("pip", "setuptools", "wheel"):
        if importlib.util.find_spec(module) is None:
            pytest.skip(f"{module} is not installed: cannot build the example plug-in offline")
    wheels = tmp_path / "wheels"
    site = tmp_path / "site"
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input"]
    built = _run(
        [*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(wheels), str(EXAMPLE)]
    )
    if built.returncode != 0:
        pytest.skip(f"pip could not build the example wheel offline: {built.stderr[-500:]}")
    (wheel,) = wheels.glob("governor_policy_example-*.whl")
    installed = _run(
        [*pip, "install", "--no-deps", "--no-index", "--target", str(site), str(wheel)]
    )
    assert installed.returncode == 0, installed.stderr

    probe = textwrap.dedent(
        """
        import json
        from policies.base import EndpointView
        from policies.registry import build_policy, get_policy_class, policy_names
        from tests.helpers import T0, endpoint
        from controller.platform.signals import FeedSample
        from controller.platform.windows import EndpointWindow

        cls = get_policy_class("max_rps_per_replica")
        pol = build_policy("max_rps_per_replica", {"max_rps_per_replica": 5}, where="probe")
        w = EndpointWindow(retention_s=600)
        for i, total in enumerate((0, 300, 600)):
            w.add(FeedSample(at=T0 - 60 + 30 * i, requests={"2xx": total}))
        view = EndpointView(key="org/chat", endpoint=endpoint(), window=w, current=2, ready=2,
                            floor=1, ceiling=10)
        p = pol.propose(view, T0)
        print(json.dumps({"module": cls.__module__, "names": policy_names(),
                          "reason": p.reason, "replicas": p.replicas}))
        """
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(ROOT)])}
    out = _run([sys.executable, "-c", probe], env=env, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["module"] == "governor_policy_example.max_rps"
    assert "max_rps_per_replica" in got["names"]
    assert set(BUILTINS) <= set(got["names"])
    assert (got["reason"], got["replicas"]) == ("rps_target", 2)  # 10 req/s / 5 per replica


def test_unknown_and_import_path_policies():
    """An unknown name lists the known ones; a `module:Class` path loads without registration."""
    with pytest.raises(registry.ConfigError, match="unknown policy 'nope'; known: "):
        registry.get_policy_class("nope")
    cls = registry.get_policy_class("policies.schedule:SchedulePolicy")
    assert cls.name == "schedule"
