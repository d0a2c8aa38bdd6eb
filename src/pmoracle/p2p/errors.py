"""Errors raised by the p2p layer."""

from __future__ import annotations

from pmoracle.errors import PmoracleError


class GossipError(PmoracleError):
    """Raised when a gossip endpoint cannot do what was asked (closed, not started, unknown peer)."""


class CodecError(PmoracleError):
    """Raised when bytes received from the network are not a valid message; ``reason`` is a metric label."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail
