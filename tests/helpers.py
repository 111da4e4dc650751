"""Small builders shared by the decision tests: endpoints and metric windows from plain numbers."""

from __future__ import annotations

from controller.platform.models import Endpoint
from controller.platform.signals import FeedSample
from controller.platform.windows import EndpointWindow

T0 = 1_800_000_000.0


def endpoint(
    *,
    state: str = "running",
    target: int = 2,
    ready: int | None = None,
    min_replica: int | None = None,
    max_replica: int | None = None,
    name: str = "chat",
    namespace: str = "org",
    tags: list[str] | None = None,
) -> Endpoint:
    ready = target if ready is None else ready
    ep = Endpoint.model_validate(
        {
            "name": name,
            "type": "protected",
            "accountId": None,
            "healthRoute": "/health",
            "tags": tags or [],
            "provider": {"vendor": "aws", "region": "us-east-1"},
            "compute": {
                "accelerator": "gpu",
                "instanceType": "nvidia-l4",
                "instanceSize": "x1",
                "scaling": {
                    "minReplica": target if min_replica is None else min_replica,
                    "maxReplica": target if max_replica is None else max_replica,
                    "scaleToZeroTimeout": 15,
                },
            },
            "model": {"repository": "gpt2", "framework": "pytorch", "task": "text-generation"},
            "status": {
                "createdAt": "2026-01-01T00:00:00.000000000Z",
                "updatedAt": "2026-01-01T00:00:00Z",
                "state": state,
                "readyReplica": ready,
                "targetReplica": target,
            },
        }
    )
    ep.namespace = namespace
    return ep


def sample(at: float, pending: float | None) -> FeedSample:
    return FeedSample(
        at=at,
        pending=pending,
        requests={},
        requests_by_replica={},
        latency={},
        latency_count=None,
        latency_sum=None,
        cpu={},
        gpu={},
        memory={},
        gpu_memory={},
        replicas_seen=frozenset(),
    )


def window(
    points: list[tuple[float, float | None]], *, retention_s: float = 3600
) -> EndpointWindow:
    """A window holding pending-request samples at (absolute time, value)."""
    w = EndpointWindow(retention_s=retention_s)
    for at, pending in points:
        w.add(sample(at, pending))
    return w
