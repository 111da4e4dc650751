"""deploy/docker/Dockerfile cannot be built here (no registry but PyPI, no daemon); this checks what
can be checked: it installs this pyproject's package, runs the `governor` console script as the
entrypoint, as a non-root user, with config and state as volumes, and ships no build tools."""

from __future__ import annotations

import re
import tomllib

import yaml

from tests.deploy_support import DEPLOY, ROOT

DOCKERFILE = DEPLOY / "docker" / "Dockerfile"


def stages() -> list[list[tuple[str, str]]]:
    """Instructions per stage, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    out: list[list[tuple[str, str]]] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        op, _, arg = line.partition(" ")
        if op.upper() == "FROM":
            out.append([])
        out[-1].append((op.upper(), arg.strip()))
    return out


def test_multi_stage_with_slim_python_matching_requires_python():
    st = stages()
    assert len(st) >= 2
    py = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    minimum = tuple(int(x) for x in re.search(r">=\s*([\d.]+)", py).group(1).split("."))
    for s in st:
        base = s[0][1].split()[0]
        m = re.match(r"python:(\d+)\.(\d+)-slim", base)
        assert m, f"not a slim Python base: {base}"
        assert (int(m.group(1)), int(m.group(2))) >= minimum


def test_build_stage_installs_this_pyproject():
    build = stages()[0]
    copies = " ".join(a for op, a in build if op == "COPY")
    assert "pyproject.toml" in copies
    # the packages that pyproject's setuptools config includes are copied
    find = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    for pkg in find["find"]["include"]:
        assert pkg.rstrip("*") in copies
    runs = " ".join(a for op, a in build if op == "RUN")
    assert re.search(r"pip install[^&]* \.(\s|$)", runs), runs


def test_final_stage_runs_governor_as_non_root_with_volumes_and_no_build_tools():
    final = stages()[-1]
    ops = dict(final)  # last one wins
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    entry = yaml.safe_load(ops["ENTRYPOINT"])
    cmd = yaml.safe_load(ops["CMD"])
    assert entry[0] in scripts
    assert scripts[entry[0]] == "controller.cli:main"
    assert (entry + cmd)[1] == "run"
    user = ops["USER"].split(":")[0]
    assert user not in {"root", "0"}
    vols = yaml.safe_load(ops["VOLUME"])
    assert "/etc/governor" in vols
    assert "/var/lib/governor" in vols
    runs = " ".join(a for op, a in final if op == "RUN")
    for tool in ("gcc", "build-essential", "pip install", "apt-get install", "make "):
        assert tool not in runs, f"{tool} in the final stage"
    # only the built virtualenv (and the example config) come in; no source tree
    for op, a in final:
        if op == "COPY":
            assert a.startswith("--from=") or a.startswith("examples/governor.yaml"), a
    env = ops["ENV"]
    assert "GOVERNOR_STATE__PATH=/var/lib/governor/" in env
    assert "9108" in ops["EXPOSE"]


def test_dockerignore_admits_what_the_build_copies():
    ignore = (ROOT / ".dockerignore").read_text().splitlines()
    allowed = {ln[1:].rstrip("/") for ln in ignore if ln.startswith("!")}
    for s in stages():
        for op, a in s:
            if op == "COPY" and not a.startswith("--from="):
                for src in a.split()[:-1]:
                    assert src.rstrip("/") in allowed, src
