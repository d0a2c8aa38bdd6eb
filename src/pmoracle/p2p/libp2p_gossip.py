"""The real gossip transport: one py-libp2p 0.8.1 gossipsub topic per network, behind :class:`GossipEndpoint`.

Run it as a trio service::

    gossip = Libp2pGossip(GossipConfig(network, listen="/ip4/127.0.0.1/tcp/9000", bootstrap=(...)), key, validator)
    async with trio.open_nursery() as nursery:
        await nursery.start(gossip.run)
        await gossip.publish(payload)

Workarounds for py-libp2p 0.8.1 (each is marked ``libp2p 0.8.1`` at the line it concerns):

- the default heartbeat is 120 s: we set ``heartbeat_interval`` (1 s), so meshes form and IHAVE gossip flows;
- adaptive gossip stretches the heartbeat to 30-60 s: turned off;
- spam protection drops more than 10 msg/s per forwarding peer and topic (own publishes included): raised to a
  limit sized for the committee's re-publication rate;
- eclipse protection wants 3 distinct IPs in a mesh, which a single-host test net or a small committee cannot
  give: turned off (the committee is known, we dial its members ourselves);
- ``connect()`` waits >= 250 ms per dial unless ``max_connections_per_peer == 1``: set to 1;
- yamux writes a WINDOW_UPDATE frame for most reads (each its own noise message and socket send: in a 7-node bench
  about as many frames as the messages themselves): mplex is preferred (``muxer``), which halved the latency FROST
  adds at n = 7 on a loaded 2-core machine (docs/p2p.md); py-libp2p's mplex reads into bounded channels, so a slow
  reader still pushes back through TCP;
- a failed dial blocks the peer for 60 s and the library reconnects only after ~60-70 s: we keep dialing missing
  peers ourselves every ``redial_interval`` and call ``swarm.unblock_peer`` before each retry;
- subscription queues hold 32 messages and drop silently: a task drains them at once into our own bounded queue,
  whose drops are counted (``rejections["queue-full"]``);
- disconnecting peers while pubsub shuts down can raise in a teardown race: we disconnect every peer first;
- importing libp2p resets the ``libp2p`` logger: :func:`import_libp2p` restores the level and handlers after import;
- TCP listeners use SO_REUSEPORT, so two processes can share a port without an error: give each node its own port
  (``tcp/0`` picks a free one; :meth:`Libp2pGossip.listen_addrs` reports it).
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import trio

from pmoracle.errors import InputError
from pmoracle.p2p.abc import GossipEndpoint, Received, Validator, Verdict
from pmoracle.p2p.codec import NetworkId
from pmoracle.p2p.errors import GossipError
from pmoracle.trio_types import TaskStatus

if TYPE_CHECKING:
    from libp2p.crypto.keys import KeyPair

logger = logging.getLogger(__name__)

DEFAULT_QUEUE_SIZE = 256


def import_libp2p() -> None:
    """Import libp2p once, keeping the ``libp2p`` logger as configured before (libp2p 0.8.1 resets it on import)."""
    libp2p_logger = logging.getLogger("libp2p")
    level, handlers, propagate = libp2p_logger.level, list(libp2p_logger.handlers), libp2p_logger.propagate
    import libp2p
    import libp2p.pubsub.gossipsub
    import libp2p.pubsub.pubsub  # noqa: F401

    libp2p_logger.setLevel(level)
    libp2p_logger.handlers[:] = handlers
    libp2p_logger.propagate = propagate


def load_peer_key(secret: bytes) -> KeyPair:
    """Return the ed25519 libp2p identity derived from a 32-byte secret (the peer key, never the signing key).

    Errors:
        InputError: the secret is not 32 bytes.
    """
    if not isinstance(secret, bytes) or len(secret) != 32:
        raise InputError("peer_key", "expected a 32-byte secret")
    import_libp2p()
    from libp2p.crypto.ed25519 import create_new_key_pair

    return create_new_key_pair(secret)


def peer_id_of(key_pair: KeyPair) -> str:
    """Return the base58 peer id of a libp2p key pair."""
    import_libp2p()
    from libp2p.peer.id import ID

    return ID.from_pubkey(key_pair.public_key).to_base58()


# GossipConfig.muxer -> new_host's muxer_preference
MUXERS: dict[str, Literal["MPLEX", "YAMUX"]] = {"mplex": "MPLEX", "yamux": "YAMUX"}


@dataclass(frozen=True, slots=True)
class GossipConfig:
    """Local (per node) configuration of the libp2p gossip endpoint."""

    network: NetworkId  # the topic is network.topic
    listen: str = "/ip4/127.0.0.1/tcp/0"  # tcp/0 picks a free port
    # Full multiaddrs with /p2p/<peer id> (configured bootstrap list; on-chain ones are added with add_peer).
    bootstrap: tuple[str, ...] = ()
    # Seconds between gossipsub heartbeats (mesh maintenance, IHAVE gossip); the library default is 120.
    heartbeat_interval: int = 1
    # Seconds between attempts to dial the peers we want but are not connected to.
    redial_interval: float = 2.0
    # Seconds one dial may take before we give up on it until the next round.
    dial_timeout: float = 5.0
    # Messages per second one peer may forward on the topic: each member re-publishes about once per
    # re-publication interval and answers catch-up requests; 64 members at 1 msg/s stay under it.
    max_messages_per_peer_per_second: float = 100.0
    # Mesh degree (target, low, high): all of a small committee, a sparse mesh for a big one.
    degree: int = 6
    degree_low: int = 4
    degree_high: int = 12
    queue_size: int = DEFAULT_QUEUE_SIZE
    # The stream muxer proposed first when dialing ("mplex" or "yamux"); both are offered, so peers preferring the
    # other one still connect.
    muxer: str = "mplex"

    def __post_init__(self) -> None:
        if not 1 <= self.heartbeat_interval <= 60:
            raise InputError("heartbeat_interval", f"must be in [1, 60] s, got {self.heartbeat_interval}")
        if self.redial_interval <= 0:
            raise InputError("redial_interval", f"must be > 0, got {self.redial_interval}")
        if self.dial_timeout <= 0:
            raise InputError("dial_timeout", f"must be > 0, got {self.dial_timeout}")
        if not 1 <= self.degree_low <= self.degree <= self.degree_high:
            raise InputError("degree", "need 1 <= degree_low <= degree <= degree_high")
        if self.queue_size < 1:
            raise InputError("queue_size", f"must be >= 1, got {self.queue_size}")
        if self.muxer not in MUXERS:
            raise InputError("muxer", f"must be one of {sorted(MUXERS)}, got {self.muxer!r}")
        for addr in self.bootstrap:
            if "/p2p/" not in addr:
                raise InputError("bootstrap", f"{addr!r} lacks /p2p/<peer id>")


class Libp2pGossip(GossipEndpoint):
    """A gossipsub endpoint on one topic, with a validator, a bounded inbox and its own redialing."""

    def __init__(self, config: GossipConfig, key_pair: KeyPair, validator: Validator) -> None:
        """Args:
        config: listen address, bootstrap peers and gossipsub settings.
        key_pair: the libp2p identity (see :func:`load_peer_key`).
        validator: the synchronous topic validator run before a message is delivered or forwarded.
        """
        import_libp2p()
        self.config = config
        self._key_pair = key_pair
        self._validator = validator
        self._peer_id = peer_id_of(key_pair)
        self._send, self._receive = trio.open_memory_channel[Received](config.queue_size)
        self.rejections: Counter[str] = Counter()
        self.accepted = 0
        self._wanted: dict[str, str] = {}  # peer id -> multiaddr we keep dialing
        for addr in config.bootstrap:
            self.add_peer(addr)
        self._host: Any = None
        self._pubsub: Any = None
        self._router: Any = None
        self._cancel: trio.CancelScope | None = None
        self._running = False

    @property
    def peer_id(self) -> str:
        """This node's base58 libp2p peer id."""
        return self._peer_id

    @property
    def topic(self) -> str:
        """The gossipsub topic of this network."""
        return self.config.network.topic

    def add_peer(self, multiaddr: str) -> None:
        """Keep a connection to the peer at ``multiaddr`` (``.../p2p/<peer id>``), dialing it until connected.

        Errors:
            InputError: the address is not a valid multiaddr with a peer id.
        """
        import multiaddr as multiaddr_lib
        from libp2p.peer.peerinfo import info_from_p2p_addr

        try:
            info = info_from_p2p_addr(multiaddr_lib.Multiaddr(multiaddr))
        except Exception as exc:  # multiaddr raises several types on bad text
            raise InputError("peer", f"{multiaddr!r} is not a /p2p/ multiaddr: {exc}") from None
        peer_id = info.peer_id.to_base58()
        if peer_id != self._peer_id:
            self._wanted[peer_id] = multiaddr

    def listen_addrs(self) -> list[str]:
        """Return the multiaddrs (with ``/p2p/<peer id>``) others can dial (errors: GossipError if not running)."""
        if self._host is None:
            raise GossipError("the gossip endpoint is not running")
        return [f"{addr}" if "/p2p/" in str(addr) else f"{addr}/p2p/{self._peer_id}" for addr in self._host.get_addrs()]

    def peers(self) -> set[str]:
        """Return the connected peers subscribed to our topic."""
        if self._pubsub is None:
            return set()
        subscribed = self._pubsub.peer_topics.get(self.topic, set())
        connected = set(self._host.get_connected_peers())
        return {peer.to_base58() for peer in subscribed if peer in connected}

    def connected_peers(self) -> set[str]:
        """Return every peer with an open connection (subscribed or not)."""
        if self._host is None:
            return set()
        return {peer.to_base58() for peer in self._host.get_connected_peers()}

    def messages(self) -> trio.abc.ReceiveChannel[Received]:
        """Return the channel of validated payloads from other peers."""
        return self._receive

    async def publish(self, payload: bytes) -> None:
        """Publish ``payload`` on the topic (it goes through our own validator first, as the library does).

        Errors:
            GossipError: the endpoint is not running.
        """
        if not self._running or self._pubsub is None:
            raise GossipError("the gossip endpoint is not running")
        await self._pubsub.publish(self.topic, payload)

    def stop(self) -> None:
        """Ask :meth:`run` to shut down (it disconnects peers, then stops pubsub and the host)."""
        if self._cancel is not None:
            self._cancel.cancel()

    async def run(self, *, task_status: TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Run the host, pubsub and gossipsub until cancelled or :meth:`stop`; ``started()`` once subscribed.

        Errors:
            GossipError: the listen address is invalid or cannot be bound.
        """
        import multiaddr as multiaddr_lib
        from libp2p import new_host
        from libp2p.network.config import ConnectionConfig
        from libp2p.pubsub.gossipsub import PROTOCOL_ID, PROTOCOL_ID_V11, PROTOCOL_ID_V12, GossipSub
        from libp2p.pubsub.pubsub import Pubsub
        from libp2p.tools.anyio_service import background_trio_service

        cfg = self.config
        try:
            listen = multiaddr_lib.Multiaddr(cfg.listen)
        except Exception as exc:
            raise GossipError(f"bad listen address {cfg.listen!r}: {exc}") from None
        host = new_host(
            key_pair=self._key_pair,
            listen_addrs=[listen],
            # libp2p 0.8.1: with more than one connection allowed per peer, connect() waits >= 250 ms.
            connection_config=ConnectionConfig(max_connections_per_peer=1),
            # libp2p 0.8.1: yamux sends a window update for most reads (a frame, a noise message, a send each).
            muxer_preference=MUXERS[cfg.muxer],
        )
        router = GossipSub(
            protocols=[PROTOCOL_ID_V12, PROTOCOL_ID_V11, PROTOCOL_ID],
            degree=cfg.degree,
            degree_low=cfg.degree_low,
            degree_high=cfg.degree_high,
            # libp2p 0.8.1: the default heartbeat is 120 s; meshes and IHAVE gossip need ~1 s.
            heartbeat_interval=cfg.heartbeat_interval,
            heartbeat_initial_delay=0.1,
            # libp2p 0.8.1: adaptive gossip stretches the heartbeat to 30-60 s.
            adaptive_gossip_enabled=False,
            # libp2p 0.8.1: 10 msg/s per peer and topic (own publishes included) is too low for a committee.
            spam_protection_enabled=True,
            max_messages_per_topic_per_second=cfg.max_messages_per_peer_per_second,
            # libp2p 0.8.1: wants 3 distinct IPs in the mesh; committee peers are dialed explicitly instead.
            eclipse_protection_enabled=False,
            prune_back_off=10,
        )
        pubsub = Pubsub(host, router, strict_signing=True)
        self._cancel = trio.CancelScope()
        try:
            with self._cancel:
                try:
                    async with (
                        host.run(listen_addrs=[listen]),
                        background_trio_service(pubsub),
                        background_trio_service(router),
                    ):
                        await pubsub.wait_until_ready()
                        pubsub.set_topic_validator(self.topic, self._libp2p_validator, False)
                        subscription = await pubsub.subscribe(self.topic)
                        self._host, self._pubsub, self._router = host, pubsub, router
                        self._running = True
                        try:
                            async with trio.open_nursery() as nursery:
                                nursery.start_soon(self._drain_subscription, subscription)
                                nursery.start_soon(self._redial_loop)
                                task_status.started()
                                await trio.sleep_forever()
                        finally:
                            self._running = False
                            # libp2p 0.8.1: stopping pubsub with live peers races its teardown and can raise.
                            with trio.CancelScope(shield=True), trio.move_on_after(5):
                                await self._disconnect_all()
                except OSError as exc:
                    raise GossipError(f"cannot listen on {cfg.listen}: {exc}") from None
        finally:
            self._running = False
            self._pubsub = None
            with trio.CancelScope(shield=True), trio.move_on_after(5):
                await host.close()
            self._host = None
            await self._send.aclose()

    def _libp2p_validator(self, forwarder: Any, message: Any) -> bool:
        try:
            verdict = self._validator(bytes(message.data))
        except Exception:  # a validator bug must not kill the pubsub read loop
            logger.exception("validator raised")
            verdict = Verdict.reject("validator-error")
        if not verdict.accepted:
            self.rejections[verdict.reason] += 1
            logger.debug("rejected a message from %s: %s", forwarder, verdict.reason)
            return False
        self.accepted += 1
        return True

    async def _drain_subscription(self, subscription: Any) -> None:
        # libp2p 0.8.1: the subscription queue holds 32 messages and drops silently; drain it at once.
        my_id = self._host.get_id().to_bytes()
        from libp2p.peer.id import ID

        async for message in subscription:
            if message.from_id == my_id:
                continue  # pubsub delivers our own publishes to our subscription
            received = Received(sender=ID(message.from_id).to_base58(), payload=bytes(message.data))
            try:
                self._send.send_nowait(received)
            except trio.WouldBlock:
                self.rejections["queue-full"] += 1
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                return

    async def _redial_loop(self) -> None:
        while True:
            await self.dial_missing()
            await trio.sleep(self.config.redial_interval)

    async def dial_missing(self) -> None:
        """Dial, concurrently, every wanted peer we have no connection to (failures are retried next round)."""
        connected = self.connected_peers()
        missing = [(peer, addr) for peer, addr in self._wanted.items() if peer not in connected]
        if missing:
            async with trio.open_nursery() as nursery:
                for peer, addr in missing:
                    nursery.start_soon(self._dial, peer, addr)

    async def _dial(self, peer: str, addr: str) -> None:
        import multiaddr as multiaddr_lib
        from libp2p.peer.id import ID
        from libp2p.peer.peerinfo import info_from_p2p_addr

        info = info_from_p2p_addr(multiaddr_lib.Multiaddr(addr))
        # libp2p 0.8.1: a failed dial puts the peer in a 60 s negative cache; we decide when to retry.
        self._host.get_network().unblock_peer(ID.from_base58(peer))
        with trio.move_on_after(self.config.dial_timeout):
            try:
                await self._host.connect(info)
            except Exception as exc:  # the peer is down or unreachable: try again next round
                logger.debug("dial %s failed: %s", addr, exc)

    async def _disconnect_all(self) -> None:
        if self._host is None:
            return
        for peer in list(self._host.get_connected_peers()):
            try:
                await self._host.disconnect(peer)
            except Exception as exc:  # already gone
                logger.debug("disconnect %s: %s", peer, exc)
