"""Config reload (controller/daemon/reload.py): a new file is taken between ticks on request or
when the watched file changes; a bad one, or one that changes a restart-only setting, is refused
with the running config kept, in one log line and in /metrics. Governor runs against the emulator
over loopback; the config files are real files (a ConfigMap's symlink layout included)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml
from structlog.testing import capture_logs

from controller.daemon.exporter import Metrics
from controller.daemon.reload import (
    LIVE,
    RESTART_ONLY,
    ConfigReloader,
    _leaves,
    _under,
    config_digest,
    in_configmap_volume,
)
from controller.emulator.load import Constant
from controller.settings import Settings, load_settings
from tests.conftest import NS, TOKEN, World, metric


def test_every_setting_is_either_live_or_restart_only():
    """A new setting must be classified: a reload either applies it or refuses to change it."""
    keys = _leaves(Settings().model_dump(mode="json"))
    unclassified = [k for k in keys if not (_under(k, LIVE) or _under(k, RESTART_ONLY))]
    both = [k for k in keys if _under(k, LIVE) and _under(k, RESTART_ONLY)]
    assert unclassified == []
    assert both == []


def _cfg(world: World, **over: Any) -> dict[str, Any]:
    cfg: dict[str, Any] = {
        "api": {"base_url": world.server.base_url},
        "namespaces": [NS],
        "manage": {"tags": ["managed"]},
        "loop": {"tick_interval_s": 15, "dry_run": True},
        "state": {"path": str(world.tmp / "state.sqlite")},
        "defaults": {
            "floor": 1,
            "ceiling": 4,
            "scale_down_stabilization_s": 0,
            "policies": {"pending_requests": {"target_per_replica": 3.0}},
        },
    }
    for k, v in over.items():
        cfg[k] = {**cfg[k], **v} if isinstance(cfg.get(k), dict) else v
    return cfg


def _write(path: Path, cfg: dict[str, Any] | str) -> None:
    path.write_text(cfg if isinstance(cfg, str) else yaml.safe_dump(cfg))


async def _reloading_governor(world: World, path: Path):
    def load() -> Settings:
        return load_settings(path, env={"HF_TOKEN": TOKEN})

    settings = load()
    metrics = Metrics()
    client = world.client(settings, metrics)
    gov = world.governor(settings, client, metrics=metrics)
    reloader = ConfigReloader(
        path,
        load=load,
        apply=gov.reconfigure,
        running=settings,
        metrics=metrics,
        clock=world.clock,
    )
    return gov, client, reloader


async def test_reload_applies_dry_run_off_then_refuses_a_broken_file(world, tmp_path):
    world.add("chat", load=Constant(30.0), tags=["managed"])
    path = tmp_path / "governor.yaml"
    _write(path, _cfg(world))
    gov, client, reloader = await _reloading_governor(world, path)
    async with client:
        await world.run_ticks(gov, 2)
        assert await world.writes("chat") == []  # dry-run: decided, not sent
        assert world.entries("chat")[-1].decision.desired > 1

        _write(path, _cfg(world, loop={"tick_interval_s": 15, "dry_run": False}))
        assert reloader.poll() is False  # not watched (no ConfigMap), not asked
        reloader.request()
        with capture_logs() as logs:
            assert reloader.poll() is True
        assert gov.settings.loop.dry_run is False
        assert gov.actuator.dry_run is False
        ok = [e for e in logs if e["event"] == "config_reloaded"]
        assert ok
        assert ok[0]["changed"] == ["loop.dry_run"]
        assert ok[0]["trigger"] == "signal"
        await world.run_ticks(gov, 1)
        assert await world.writes("chat"), "after the reload the scale-up was sent"
        good = config_digest(path)

        _write(path, _cfg(world, loop={"tick_interval_s": -5}))
        reloader.request()
        with capture_logs() as logs:
            assert reloader.poll() is False
        assert gov.settings.loop.tick_interval_s == 15
        assert gov.settings.loop.dry_run is False
        (failed,) = [e for e in logs if e["event"] == "config_reload_failed"]
        assert "loop.tick_interval_s" in failed["error"]
        assert "\n" not in failed["error"]
        assert good in failed["detail"]
        await world.run_ticks(gov, 1)  # the loop goes on with the old config
        scraped = await world.scrape_metrics(gov)
    assert metric(scraped, "governor_config_reloads_total", result="success") == 1
    assert metric(scraped, "governor_config_reloads_total", result="failure") == 1
    assert metric(scraped, "governor_config_last_reload_successful") == 0
    assert metric(scraped, "governor_config_info", sha256=good) == 1
    assert metric(scraped, "governor_dry_run") == 0


async def test_restart_only_change_is_refused_whole(world, tmp_path):
    world.add("chat", load=Constant(30.0), tags=["managed"])
    path = tmp_path / "governor.yaml"
    _write(path, _cfg(world))
    gov, client, reloader = await _reloading_governor(world, path)
    async with client:
        changed = _cfg(world, server={"listen": "127.0.0.1:9999"}, loop={"dry_run": False})
        _write(path, changed)
        reloader.request()
        with capture_logs() as logs:
            assert reloader.poll() is False
    (failed,) = [e for e in logs if e["event"] == "config_reload_failed"]
    assert "server.listen (127.0.0.1:9108 -> 127.0.0.1:9999)" in failed["error"]
    assert "restart" in failed["error"]
    # Refused whole: the live change in the same file did not slip through.
    assert gov.settings.loop.dry_run is True
    assert gov.actuator.dry_run is True


def _configmap_dir(root: Path, version: str, cfg: dict[str, Any] | str) -> None:
    """The kubelet's atomic-writer layout: governor.yaml -> ..data/governor.yaml, and ..data ->
    ..<version>; an update writes a new version directory and swaps ..data with a rename."""
    vdir = root / f"..{version}"
    vdir.mkdir()
    _write(vdir / "governor.yaml", cfg)
    tmp_link = root / "..data_tmp"
    os.symlink(vdir.name, tmp_link)
    os.replace(tmp_link, root / "..data")
    if not (root / "governor.yaml").is_symlink():
        os.symlink("..data/governor.yaml", root / "governor.yaml")


async def test_a_configmap_swap_is_seen_without_a_signal(world, tmp_path):
    world.add("chat", load=Constant(30.0), tags=["managed"])
    mount = tmp_path / "etc-governor"
    mount.mkdir()
    _configmap_dir(mount, "v1", _cfg(world))
    path = mount / "governor.yaml"
    assert in_configmap_volume(path)
    gov, client, reloader = await _reloading_governor(world, path)
    async with client:
        assert reloader.watching()  # loop.watch_config unset: on for a ConfigMap volume
        assert reloader.poll() is False  # nothing changed
        stricter = _cfg(world, defaults={"ceiling": 2})
        _configmap_dir(mount, "v2", stricter)
        with capture_logs() as logs:
            assert reloader.poll() is True
        assert gov.settings.defaults.ceiling == 2
        assert [e["trigger"] for e in logs if e["event"] == "config_reloaded"] == ["file"]
        # The same content again under a new version directory: no reload.
        _configmap_dir(mount, "v3", stricter)
        assert reloader.poll() is False
        # A broken version is refused once, not at every tick.
        _configmap_dir(mount, "v4", "loop: [unclosed\n")
        with capture_logs() as logs:
            assert reloader.poll() is False
            assert reloader.poll() is False
        assert len([e for e in logs if e["event"] == "config_reload_failed"]) == 1
        assert gov.settings.defaults.ceiling == 2
        await world.run_ticks(gov, 1)
        assert world.entries("chat")[-1].decision.desired <= 2


async def test_a_plain_file_is_not_watched_unless_asked(world, tmp_path):
    path = tmp_path / "governor.yaml"
    _write(path, _cfg(world))
    gov, client, reloader = await _reloading_governor(world, path)
    async with client:
        assert not in_configmap_volume(path)
        assert not reloader.watching()
        _write(path, _cfg(world, loop={"watch_config": True}))
        assert reloader.poll() is False
        reloader.request()
        assert reloader.poll() is True
        assert reloader.watching()
        _write(path, _cfg(world, loop={"watch_config": True, "dry_run": False}))
        assert reloader.poll() is True
        assert gov.actuator.dry_run is False


# --- end to end: a real `governor run` process, SIGHUP, /metrics over loopback ---------------


async def _metrics(port: int) -> dict[tuple[str, frozenset[Any]], float]:
    import httpx
    from prometheus_client.parser import text_string_to_metric_families

    async with httpx.AsyncClient(timeout=5) as c:
        text = (await c.get(f"http://127.0.0.1:{port}/metrics")).text
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for fam in text_string_to_metric_families(text)
        for s in fam.samples
    }


async def _until(port: int, pred, proc, *, what: str, timeout_s: float = 180.0):
    """Poll /metrics until `pred` holds. The limit is generous: on a loaded machine the daemon's
    imports alone can take a minute. On a timeout, say what was last seen."""
    import asyncio

    import httpx

    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    last: str = "nothing: /metrics never answered"
    while loop.time() < deadline:
        assert proc.returncode is None, f"governor exited {proc.returncode} waiting for {what}"
        try:
            m = await _metrics(port)
            if pred(m):
                return m
            last = "; ".join(
                f"{name}{dict(labels)}={v}"
                for (name, labels), v in sorted(m.items(), key=lambda kv: kv[0][0])
                if name in ("governor_actions_total", "governor_ticks_total")
            )
        except (OSError, httpx.TransportError):
            pass  # not listening yet, or slow to answer
        await asyncio.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}; last seen: {last}")


async def test_sighup_reloads_a_running_daemon(tmp_path):
    """`governor run` in dry-run: the file turns dry-run off and SIGHUP makes the daemon scale
    the endpoint; a broken file and SIGHUP leave it running on the old config, which /metrics and
    one log line say."""
    import asyncio
    import signal

    from tests.deploy_support import free_port, governor_config, spawn_governor, start_emulator

    srv = await start_emulator()  # `chat` under a load far above its ceiling of 2
    port = free_port()
    state = tmp_path / "state.sqlite"
    cfg = governor_config(srv.base_url, port, state)
    cfg["loop"] = {"tick_interval_s": 0.5, "dry_run": True}
    cfg["defaults"] = {**cfg["defaults"], "scale_up_stabilization_s": 0}
    path = tmp_path / "governor.yaml"
    _write(path, cfg)
    proc = await spawn_governor(str(path))
    try:

        def acted(m):
            labels = {"action": "scale_up", "result": "dry_run", "error": "none"}
            return metric(m, "governor_actions_total", **labels) or 0

        await _until(port, lambda m: acted(m) >= 1, proc, what="a dry-run scale-up")
        chat = srv.platform.snapshot()["endpoints"][f"{NS}/chat"]
        assert chat["max_replica"] == 4  # untouched in dry-run (endpoint_body's max)

        cfg["loop"] = {"tick_interval_s": 0.5, "dry_run": False}
        _write(path, cfg)
        proc.send_signal(signal.SIGHUP)
        m = await _until(
            port,
            lambda m: metric(m, "governor_config_reloads_total", result="success") == 1,
            proc,
            what="the reload",
        )
        assert metric(m, "governor_config_info", sha256=config_digest(path)) == 1

        def applied(m):
            labels = {"action": "scale_up", "result": "applied", "error": "none"}
            return metric(m, "governor_actions_total", **labels) or 0

        await _until(port, lambda m: applied(m) >= 1, proc, what="an applied scale-up")
        assert metric(await _metrics(port), "governor_dry_run") == 0
        chat = srv.platform.snapshot()["endpoints"][f"{NS}/chat"]
        assert chat["max_replica"] == 2  # pinned at the ceiling by the live daemon
        good = config_digest(path)

        path.write_text("loop: {tick_interval_s: 0.5, dry_run: maybe}\n")
        proc.send_signal(signal.SIGHUP)
        m = await _until(
            port,
            lambda m: metric(m, "governor_config_reloads_total", result="failure") == 1,
            proc,
            what="the refused reload",
        )
        assert metric(m, "governor_config_last_reload_successful") == 0
        assert metric(m, "governor_config_info", sha256=good) == 1
        ticks = metric(m, "governor_ticks_total", result="ok")
        await _until(
            port,
            lambda m: metric(m, "governor_ticks_total", result="ok") > ticks + 2,
            proc,
            what="ticks after the refused reload",
        )
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
        _out, err = await asyncio.wait_for(proc.communicate(), 30)
        await srv.stop()
    assert proc.returncode == 0, err.decode()[-3000:]
    lines = err.decode().splitlines()
    failed = [ln for ln in lines if '"config_reload_failed"' in ln]
    assert len(failed) == 1, failed
    assert "loop.dry_run" in failed[0]
    assert len([ln for ln in lines if '"config_reloaded"' in ln]) == 1
