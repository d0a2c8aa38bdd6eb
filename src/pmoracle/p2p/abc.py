"""The narrow gossip interface the node talks to; the in-memory and the libp2p networks both implement it.

A gossip endpoint is one node's membership in the network's single topic: it publishes opaque payloads, hands
the owner every *validated* payload other peers published (never its own), and knows which peers it currently
reaches. Validation is a synchronous function given at construction; a payload it rejects is dropped before it is
delivered (and, on libp2p, before it is forwarded), and the rejection is counted by reason.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

import trio


@dataclass(frozen=True, slots=True)
class Verdict:
    """The validator's answer for one payload: accepted, or rejected with a short machine-readable reason."""

    accepted: bool
    reason: str = ""

    @classmethod
    def accept(cls) -> Verdict:
        """Return the accepting verdict."""
        return _ACCEPT

    @classmethod
    def reject(cls, reason: str) -> Verdict:
        """Return a rejecting verdict with ``reason`` (a metric label: lowercase, no spaces)."""
        return cls(False, reason)


_ACCEPT = Verdict(True, "")

# A synchronous topic validator: it must not block, must not raise and must not depend on the sender's history
# (libp2p caches its result per message id).
Validator = Callable[[bytes], Verdict]


def accept_all(payload: bytes) -> Verdict:
    """Return the accepting verdict for any payload (tests and tools that validate later)."""
    return _ACCEPT


@dataclass(frozen=True, slots=True)
class Received:
    """A validated payload and the peer id of the peer that published it."""

    sender: str
    payload: bytes


class GossipEndpoint(ABC):
    """One node's endpoint on the network's gossip topic."""

    #: Rejections of received payloads by reason (validator reasons, plus transport reasons such as
    #: ``queue-full``); the node exports it on /metrics.
    rejections: Counter[str]

    @property
    @abstractmethod
    def peer_id(self) -> str:
        """This endpoint's peer id (the transport identity, never the report-signing key)."""

    @abstractmethod
    async def publish(self, payload: bytes) -> None:
        """Publish ``payload`` to every reachable peer.

        Args:
            payload: the encoded message; the caller encodes and signs, the endpoint never inspects it.

        Errors:
            GossipError: the endpoint is closed or not running.
        """

    @abstractmethod
    def messages(self) -> trio.abc.ReceiveChannel[Received]:
        """Return the channel of validated payloads from other peers (one consumer; the same channel each call).

        The queue behind it is bounded: when the owner falls behind, new payloads are dropped and counted under
        ``rejections["queue-full"]`` (gossip is lossy anyway; re-publication and catch-up recover).
        """

    @abstractmethod
    def peers(self) -> set[str]:
        """Return the peer ids this endpoint currently exchanges gossip with."""
