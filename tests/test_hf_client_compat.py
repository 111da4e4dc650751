"""The official `huggingface_hub` client, unchanged, drives the emulator: same paths, methods,
status codes and JSON shapes as the real API. Skipped when huggingface_hub is not installed."""

from __future__ import annotations

import asyncio

import pytest

from controller.clock import WallClock
from controller.emulator.load import Constant
from controller.emulator.platform import Platform
from controller.emulator.server import EmulatorServer
from tests.conftest import BOT, NS, TOKEN, endpoint_body

hf = pytest.importorskip("huggingface_hub", reason="huggingface_hub not installed")


async def test_huggingface_hub_client_against_emulator(monkeypatch):
    """list/get/update/pause/resume/scale-to-zero through HfApi work against the emulator."""
    from huggingface_hub import HfApi, constants

    clock = WallClock()
    platform = Platform(start=clock.now(), seed=2)
    platform.create(NS, endpoint_body("chat", tags=["t"]), by=BOT, load=Constant(0.1), ready=True)
    async with EmulatorServer(platform, clock=clock, tokens={TOKEN: BOT}) as srv:
        # The library hard-codes the API base in this constant; pointing it at loopback is the
        # only change a user would make.
        monkeypatch.setattr(constants, "INFERENCE_ENDPOINTS_ENDPOINT", srv.base_url)
        api = HfApi(token=TOKEN)

        def drive() -> dict:
            out: dict = {}
            eps = api.list_inference_endpoints(namespace=NS)
            out["names"] = [e.name for e in eps]
            ep = api.get_inference_endpoint("chat", namespace=NS)
            out["status"] = ep.status
            out["url"] = ep.url
            ep = api.update_inference_endpoint("chat", namespace=NS, min_replica=2, max_replica=3)
            out["scaling"] = (
                ep.raw["compute"]["scaling"]["minReplica"],
                ep.raw["compute"]["scaling"]["maxReplica"],
            )
            out["zero"] = api.scale_to_zero_inference_endpoint("chat", namespace=NS).status
            out["paused"] = api.pause_inference_endpoint("chat", namespace=NS).status
            out["resumed"] = api.resume_inference_endpoint("chat", namespace=NS).status
            return out

        got = await asyncio.to_thread(drive)
    assert got["names"] == ["chat"]
    assert got["status"] == "running"
    assert got["url"]
    assert got["scaling"] == (2, 3)
    assert got["paused"] == "paused"
    assert got["resumed"] in ("pending", "initializing", "running")
    assert got["zero"] == "scaledToZero"
