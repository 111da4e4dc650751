"""An example Governor policy plug-in (see docs/writing-a-policy.md)."""

from governor_policy_example.max_rps import MaxRpsPerReplicaParams, MaxRpsPerReplicaPolicy

__all__ = ["MaxRpsPerReplicaParams", "MaxRpsPerReplicaPolicy"]
