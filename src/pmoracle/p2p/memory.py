"""An in-memory gossip network for trio: the test tool the protocol simulations run on (virtual time friendly).

Every publish is offered to each other endpoint over a directed link with its own loss probability and delay
(uniform in ``[min_delay, max_delay]``, slept with ``trio.sleep`` so ``trio.testing.MockClock`` skips it).
Partitions cut links between groups, a crashed endpoint neither sends nor receives, and each endpoint's queue is
bounded and drops when full, as libp2p's does. Each directed link draws its loss and delay from its own
``random.Random`` seeded by (seed, src, dst) when a message is published, so the outcome depends only on what each
sender publishes in which order, not on how trio happens to interleave the senders (its scheduler shuffles ready
tasks on purpose).

It models the gossip *service* (validated, deduplicated, best-effort broadcast to the peers one is connected to),
not gossipsub's mesh: there is no multi-hop forwarding, so a partition is exactly what the groups say.
"""

from __future__ import annotations

import math
import random
from collections import Counter
from collections.abc import Iterable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from types import TracebackType

import trio

from pmoracle.errors import InputError
from pmoracle.p2p.abc import GossipEndpoint, Received, Validator, Verdict, accept_all
from pmoracle.p2p.errors import GossipError

DEFAULT_QUEUE_SIZE = 64


@dataclass(frozen=True, slots=True)
class LinkConditions:
    """What happens to a message on one directed link."""

    loss: float = 0.0  # probability that a message is lost
    min_delay: float = 0.0  # seconds (virtual under MockClock)
    max_delay: float = 0.0

    def __post_init__(self) -> None:
        if not (isinstance(self.loss, int | float) and 0.0 <= self.loss <= 1.0):
            raise InputError("loss", f"must be a probability in [0, 1], got {self.loss!r}")
        for name in ("min_delay", "max_delay"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and math.isfinite(value) and value >= 0):
                raise InputError(name, f"must be a finite number >= 0, got {value!r}")
        if self.max_delay < self.min_delay:
            raise InputError("max_delay", f"{self.max_delay} is below min_delay {self.min_delay}")


class MemoryEndpoint(GossipEndpoint):
    """One endpoint of a :class:`MemoryNetwork` (create it with :meth:`MemoryNetwork.create_endpoint`)."""

    def __init__(self, network: MemoryNetwork, peer_id: str, validator: Validator, queue_size: int) -> None:
        self._network = network
        self._peer_id = peer_id
        self._validator = validator
        self._send, self._receive = trio.open_memory_channel[Received](queue_size)
        self.rejections: Counter[str] = Counter()
        self.closed = False

    @property
    def peer_id(self) -> str:
        """This endpoint's peer id."""
        return self._peer_id

    async def publish(self, payload: bytes) -> None:
        """Offer ``payload`` to every other endpoint (subject to links, partitions and crashes).

        Args:
            payload: the encoded message.

        Errors:
            GossipError: the endpoint was closed.
        """
        if self.closed:
            raise GossipError(f"endpoint {self._peer_id} is closed")
        if not isinstance(payload, bytes):
            raise InputError("payload", f"expected bytes, got {type(payload).__name__}")
        self._network._broadcast(self._peer_id, payload)
        await trio.lowlevel.checkpoint()

    def messages(self) -> trio.abc.ReceiveChannel[Received]:
        """Return the channel of validated payloads from other endpoints."""
        return self._receive

    def peers(self) -> set[str]:
        """Return the endpoints this one can currently reach (up, same partition group)."""
        return self._network._reachable_from(self._peer_id)

    async def aclose(self) -> None:
        """Leave the network for good; the consumer's ``messages()`` iteration ends."""
        self._network._remove(self._peer_id)
        self.closed = True
        await self._send.aclose()

    def _drain(self) -> None:
        while True:
            try:
                self._receive.receive_nowait()
            except (trio.WouldBlock, trio.EndOfChannel, trio.ClosedResourceError):
                return

    def _deliver(self, message: Received) -> str:
        try:
            verdict = self._validator(message.payload)
        except Exception:  # a validator must not raise; a bug in one must not take the network down
            verdict = Verdict.reject("validator-error")
        if not verdict.accepted:
            self.rejections[verdict.reason] += 1
            return "rejected"
        try:
            self._send.send_nowait(message)
        except trio.WouldBlock:
            self.rejections["queue-full"] += 1
            return "queue-full"
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            return "consumer-closed"
        return "delivered"


class MemoryNetwork:
    """A seeded in-memory network of :class:`MemoryEndpoint` s with loss, delay, partitions and crashes.

    Use it as ``async with MemoryNetwork(seed=1) as net:`` (delayed deliveries run in its nursery); without the
    ``async with`` only zero-delay links work.
    """

    def __init__(
        self,
        seed: int,
        *,
        loss: float = 0.0,
        min_delay: float = 0.0,
        max_delay: float = 0.0,
        queue_size: int = DEFAULT_QUEUE_SIZE,
    ) -> None:
        if not isinstance(queue_size, int) or queue_size < 1:
            raise InputError("queue_size", f"must be an integer >= 1, got {queue_size!r}")
        self._seed = seed
        self._randoms: dict[tuple[str, str], random.Random] = {}  # one stream per directed link
        self._default = LinkConditions(loss, min_delay, max_delay)
        self._links: dict[tuple[str, str], LinkConditions] = {}
        self._queue_size = queue_size
        self._endpoints: dict[str, MemoryEndpoint] = {}
        self._group_of: dict[str, int] | None = None  # None: no partition
        self._down: set[str] = set()
        self._nursery: trio.Nursery | None = None
        self._nursery_manager: AbstractAsyncContextManager[trio.Nursery] | None = None
        # Counts per outcome: published, delivered, lost, partitioned, down, rejected, queue-full, consumer-closed.
        self.stats: Counter[str] = Counter()
        # Payload bytes put on the wire per sending peer id (one count per link a message is offered to).
        self.bytes_sent: Counter[str] = Counter()

    async def __aenter__(self) -> MemoryNetwork:
        if self._nursery_manager is not None:
            raise GossipError("the memory network is already open")
        self._nursery_manager = trio.open_nursery()
        self._nursery = await self._nursery_manager.__aenter__()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> bool | None:
        nursery = self._nursery
        self._nursery = None
        if nursery is not None:
            nursery.cancel_scope.cancel()  # messages still in flight are lost with the network
        manager, self._nursery_manager = self._nursery_manager, None
        if manager is None:
            return None
        return await manager.__aexit__(exc_type, exc, tb)

    def create_endpoint(self, peer_id: str | None = None, validator: Validator = accept_all) -> MemoryEndpoint:
        """Return a new endpoint joined to the network.

        Args:
            peer_id: its peer id; ``mem-<k>`` (k = number of endpoints so far) when omitted.
            validator: the synchronous topic validator run on every payload it receives.

        Errors:
            InputError: the peer id is already taken.
        """
        if peer_id is None:
            peer_id = f"mem-{len(self._endpoints)}"
        if peer_id in self._endpoints:
            raise InputError("peer_id", f"{peer_id!r} is already on the network")
        endpoint = MemoryEndpoint(self, peer_id, validator, self._queue_size)
        self._endpoints[peer_id] = endpoint
        return endpoint

    def endpoint(self, peer_id: str) -> MemoryEndpoint:
        """Return the endpoint with ``peer_id`` (errors: GossipError if there is none)."""
        try:
            return self._endpoints[peer_id]
        except KeyError:
            raise GossipError(f"no endpoint {peer_id!r} on the network") from None

    def set_link(
        self, src: str, dst: str, *, loss: float = 0.0, min_delay: float = 0.0, max_delay: float = 0.0
    ) -> None:
        """Set the conditions of the directed link ``src -> dst`` (overrides the network defaults)."""
        self._links[(src, dst)] = LinkConditions(loss, min_delay, max_delay)

    def partition(self, groups: Iterable[Iterable[str]]) -> None:
        """Cut every link between different groups; an endpoint named in no group is alone in its own.

        Messages already in flight across a cut are lost when they arrive.
        """
        group_of: dict[str, int] = {}
        for index, group in enumerate(groups):
            for peer_id in group:
                if peer_id in group_of:
                    raise InputError("groups", f"{peer_id!r} is in two groups")
                group_of[peer_id] = index
        self._group_of = group_of

    def heal(self) -> None:
        """Remove the partition: every up endpoint reaches every other again."""
        self._group_of = None

    def crash(self, peer_id: str) -> None:
        """Take an endpoint down: it sends and receives nothing, and its undelivered queue is lost."""
        endpoint = self.endpoint(peer_id)
        self._down.add(peer_id)
        endpoint._drain()

    def restart(self, peer_id: str) -> None:
        """Bring a crashed endpoint back (its owner keeps the same ``messages()`` channel, now empty)."""
        self.endpoint(peer_id)
        self._down.discard(peer_id)

    def is_up(self, peer_id: str) -> bool:
        """Check if the endpoint is on the network and not crashed."""
        return peer_id in self._endpoints and peer_id not in self._down

    def _connected(self, src: str, dst: str) -> bool:
        return self.is_up(src) and self._linked(src, dst)

    def _linked(self, src: str, dst: str) -> bool:
        if src == dst or not self.is_up(dst):
            return False
        if self._group_of is None:
            return True
        # An endpoint named in no group is alone: give it a group of its own.
        return self._group_of.get(src, ("alone", src)) == self._group_of.get(dst, ("alone", dst))

    def _reachable_from(self, peer_id: str) -> set[str]:
        return {other for other in self._endpoints if self._connected(peer_id, other)}

    def _remove(self, peer_id: str) -> None:
        self._endpoints.pop(peer_id, None)
        self._down.discard(peer_id)

    def _broadcast(self, src: str, payload: bytes) -> None:
        if not self.is_up(src):
            self.stats["sender-down"] += 1
            return
        self.stats["published"] += 1
        message = Received(sender=src, payload=payload)
        for dst in list(self._endpoints):
            if dst == src:
                continue
            if not self._connected(src, dst):
                self.stats["down" if not self.is_up(dst) else "partitioned"] += 1
                continue
            self.bytes_sent[src] += len(payload)
            link = self._links.get((src, dst), self._default)
            draw = self._link_random(src, dst)
            if link.loss > 0 and draw.random() < link.loss:
                self.stats["lost"] += 1
                continue
            delay = link.min_delay
            if link.max_delay > link.min_delay:
                delay = draw.uniform(link.min_delay, link.max_delay)
            if delay <= 0:
                self._arrive(dst, message)
            elif self._nursery is None:
                raise GossipError("links with a delay need the network opened with `async with MemoryNetwork(...)`")
            else:
                self._nursery.start_soon(self._arrive_later, delay, dst, message)

    def _link_random(self, src: str, dst: str) -> random.Random:
        draw = self._randoms.get((src, dst))
        if draw is None:
            # A str seed is hashed with SHA-512: the same stream in every process, whatever PYTHONHASHSEED is.
            draw = self._randoms[(src, dst)] = random.Random(f"{self._seed}:{src}->{dst}")
        return draw

    async def _arrive_later(self, delay: float, dst: str, message: Received) -> None:
        await trio.sleep(delay)
        self._arrive(dst, message)

    def _arrive(self, dst: str, message: Received) -> None:
        # Re-checked on arrival: a partition that started, or a receiver that crashed, while the message was in
        # flight loses it (a sender crashing after the send does not recall it).
        if not self._linked(message.sender, dst):
            self.stats["down" if not self.is_up(dst) else "partitioned"] += 1
            return
        self.stats[self._endpoints[dst]._deliver(message)] += 1
