"""The HTTP server must not take SIGTERM/SIGINT from the daemon.

uvicorn installs its own handlers while it serves; a SIGTERM caught by them stops only the HTTP
server, and on the way out uvicorn restores the default handler over the daemon's and re-raises the
signal, so the daemon died without its graceful stop (seen as exit -15 under load).
"""

from __future__ import annotations

import signal

import httpx

from controller.clock import WallClock
from controller.daemon.exporter import Health, Metrics, MetricsServer, create_app


async def test_serving_leaves_the_daemons_signal_handlers_in_place():
    def daemon_handler(signum, frame):  # stands for the daemon's graceful-stop handler
        raise AssertionError("not called in this test")

    saved = {sig: signal.signal(sig, daemon_handler) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        srv = MetricsServer(
            create_app(Metrics(), Health(tick_interval_s=1.0), WallClock()),
            host="127.0.0.1",
            port=0,
        )
        await srv.start()
        async with httpx.AsyncClient() as c:
            r = await c.get(f"http://127.0.0.1:{srv.port}/healthz")
        assert r.status_code in (200, 503)
        for sig in saved:
            assert signal.getsignal(sig) is daemon_handler, f"uvicorn took {sig!r} while serving"
        await srv.stop()
        for sig in saved:
            assert signal.getsignal(sig) is daemon_handler, f"uvicorn replaced {sig!r} on stop"
    finally:
        for sig, h in saved.items():
            signal.signal(sig, h)
