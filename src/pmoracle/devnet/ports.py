"""TCP ports for the servers a devnet or a test starts, each handed out at most once per process.

A port is chosen for a server that binds it later (anvil, a node's libp2p listener, whose address is registered on
chain before the node starts). Drawing at random and forgetting the draw let two calls in one process return the
same port; :func:`reserve_port` remembers every port it gave, so that cannot happen, and probes that the port is
free right now. Ports come from below the kernel's ephemeral range (32768-60999 by default), so an outgoing
connection cannot take one between the moment it is chosen and the moment its server binds it.

Servers that can report what they bound (a node's HTTP API) bind port 0 instead.
"""

from __future__ import annotations

import random
import socket
import threading

from pmoracle.errors import PmoracleError

SERVER_PORTS = range(20000, 32000)
_TRIES = 200


class PortError(PmoracleError):
    """Raised when no free, never reserved TCP port is left to hand out."""


class PortAllocator:
    """Hands out TCP ports on one host, never the same port twice, each free when handed out (thread-safe)."""

    def __init__(self, ports: range = SERVER_PORTS, *, host: str = "127.0.0.1", seed: int | None = None) -> None:
        self.ports = ports
        self.host = host
        self._rng = random.Random(seed)
        self._given: set[int] = set()
        self._lock = threading.Lock()

    def reserve(self) -> int:
        """Return a port never returned before by this allocator that nothing listens on or holds right now.

        Errors:
            PortError when ``_TRIES`` draws find no such port (the range is exhausted or taken).
        """
        with self._lock:
            left = len(self.ports) - len(self._given)
            for _ in range(min(_TRIES, max(left, 0))):
                port = self._rng.choice(self.ports)
                while port in self._given:  # walk to the next port not handed out yet (the range is not full)
                    port = self.ports.start + (port + 1 - self.ports.start) % len(self.ports)
                self._given.add(port)  # a port found busy is never retried either
                if _is_free(self.host, port):
                    return port
        raise PortError(f"no free TCP port left in {self.ports.start}-{self.ports.stop - 1} on {self.host} "
                        f"({len(self._given)} handed out or found busy)")  # fmt: skip

    @property
    def reserved(self) -> frozenset[int]:
        """Return every port handed out (or found busy) so far."""
        with self._lock:
            return frozenset(self._given)


def _is_free(host: str, port: int) -> bool:
    # A plain socket without SO_REUSEADDR/SO_REUSEPORT: libp2p listens with SO_REUSEPORT, and a probe that set it
    # would share a port another libp2p process holds.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


_ALLOCATOR = PortAllocator()


def reserve_port() -> int:
    """Return a free TCP port on 127.0.0.1 that no other call in this process ever got.

    Errors:
        PortError when none is left in :data:`SERVER_PORTS`.
    """
    return _ALLOCATOR.reserve()


def reserve_ports(count: int) -> list[int]:
    """Return ``count`` distinct ports from :func:`reserve_port`."""
    return [reserve_port() for _ in range(count)]
