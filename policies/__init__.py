"""Governor's policies: small, pure classes that read an endpoint view and propose what to do.

See `policies.base` for the protocol and `policies.registry` for how names map to classes
(built-ins and third-party plug-ins alike come through the `governor.policies` entry-point group).
"""

from policies.base import EndpointView, Policy, Proposal, ProposalKind
from policies.registry import get_policy_class, policy_names

__all__ = [
    "EndpointView",
    "Policy",
    "Proposal",
    "ProposalKind",
    "get_policy_class",
    "policy_names",
]
