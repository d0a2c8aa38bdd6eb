"""The gossip layer: one libp2p gossipsub topic per network, and an in-memory network of the same interface.

The node depends only on :class:`GossipEndpoint`; ``pmoracle.p2p.libp2p_gossip`` (imported explicitly, it pulls in
libp2p) is the real transport and :class:`MemoryNetwork` the simulation one.
"""

from __future__ import annotations

from pmoracle.p2p.abc import GossipEndpoint, Received, Validator, Verdict, accept_all
from pmoracle.p2p.errors import CodecError, GossipError
from pmoracle.p2p.memory import LinkConditions, MemoryEndpoint, MemoryNetwork

__all__ = [
    "CodecError",
    "GossipEndpoint",
    "GossipError",
    "LinkConditions",
    "MemoryEndpoint",
    "MemoryNetwork",
    "Received",
    "Validator",
    "Verdict",
    "accept_all",
]
