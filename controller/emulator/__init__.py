"""A local emulator of the Inference Endpoints platform: management API, metrics feed and endpoints.

- `platform`: the pure simulation (states, replicas, queueing, own autoscaler, billing, quota).
- `load`: request-rate patterns driving the simulated traffic.
- `app`: the Starlette app serving the `/v2` API, the inference plane and `/_emulator` admin routes.
- `server`: `EmulatorServer` (uvicorn on loopback, in the current event loop) and `serve_forever`.
- `scenario`: the demo scenario and `build_platform`.
"""

from controller.emulator.load import (
    Burst,
    Constant,
    Diurnal,
    LoadPattern,
    Piecewise,
    Ramp,
    Trace,
    pattern_from_json,
    pattern_to_json,
)
from controller.emulator.platform import (
    EmulatorError,
    Platform,
    PlatformConfig,
    RequestTicket,
    SimParams,
)

__all__ = [
    "Burst",
    "Constant",
    "Diurnal",
    "EmulatorError",
    "LoadPattern",
    "Piecewise",
    "Platform",
    "PlatformConfig",
    "Ramp",
    "RequestTicket",
    "SimParams",
    "Trace",
    "pattern_from_json",
    "pattern_to_json",
]
