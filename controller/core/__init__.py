"""The pure decision core: snapshot and clock time in, one explained decision out.

Nothing in this package does I/O or reads a clock (a test holds it to that); see
docs/architecture.md for where it sits in a tick.
"""

from controller.core.decide import decide
from controller.core.params import EndpointSettings
from controller.core.types import (
    Action,
    Actuation,
    Decision,
    EndpointMemory,
    Reason,
    defer,
    target_bounds,
)

__all__ = [
    "Action",
    "Actuation",
    "Decision",
    "EndpointMemory",
    "EndpointSettings",
    "Reason",
    "decide",
    "defer",
    "target_bounds",
]
