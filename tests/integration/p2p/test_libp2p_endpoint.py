"""Two real libp2p gossip endpoints in one trio run: the topic validator hook, rejection counts, own-message filter."""

from __future__ import annotations

import pytest
import trio

from pmoracle.consensus.report import sign_report
from pmoracle.errors import InputError
from pmoracle.p2p import GossipError, accept_all
from pmoracle.p2p.codec import SignedReportMessage, encode_message
from pmoracle.p2p.libp2p_gossip import GossipConfig, Libp2pGossip, load_peer_key, peer_id_of
from pmoracle.p2p.validator import ReportValidator
from pmoracle.testing.committees import make_test_committee

COMMITTEE = make_test_committee(4)


@pytest.mark.timeout(60)
async def test_validator_drops_invalid_messages_before_delivery() -> None:
    network = COMMITTEE.network
    valid = encode_message(
        SignedReportMessage(network, sign_report(network.domain, COMMITTEE.report(10), COMMITTEE.signing_keys[0]))
    )
    # the sender validates nothing, so its garbage reaches the wire; the receiver must refuse it
    sender = Libp2pGossip(GossipConfig(network), load_peer_key(COMMITTEE.peer_secrets[0]), accept_all)
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            await nursery.start(sender.run)
            receiver = Libp2pGossip(
                GossipConfig(network, bootstrap=tuple(sender.listen_addrs())),
                load_peer_key(COMMITTEE.peer_secrets[1]),
                ReportValidator(network, COMMITTEE.config),
            )
            await nursery.start(receiver.run)
            assert receiver.peer_id == peer_id_of(load_peer_key(COMMITTEE.peer_secrets[1]))
            while sender.peers() != {receiver.peer_id} or receiver.peers() != {sender.peer_id}:
                await trio.sleep(0.05)
            await sender.publish(b"\xc1garbage")
            await sender.publish(valid[:-1] + bytes([valid[-1] ^ 1]))  # flipped signature byte
            await sender.publish(valid)
            message = await receiver.messages().receive()
            assert (message.sender, message.payload) == (sender.peer_id, valid)
            while sum(receiver.rejections.values()) < 2:
                await trio.sleep(0.05)
            assert receiver.rejections == {"malformed": 1, "bad-signature": 1}
            assert receiver.accepted == 1
            # a node never receives its own publishes back
            with trio.move_on_after(0.5):
                await sender.messages().receive()
                pytest.fail("the sender received its own message")
            receiver.stop()
            sender.stop()
    with pytest.raises(GossipError, match="not running"):
        await sender.publish(valid)


def _muxers(gossip: Libp2pGossip) -> set[str]:
    """Return the class names of the stream muxers of ``gossip``'s open connections."""
    assert gossip._host is not None
    swarm = gossip._host.get_network()
    return {type(conn.muxed_conn).__name__ for conns in swarm.connections.values() for conn in conns}


@pytest.mark.timeout(60)
async def test_mplex_is_preferred_and_a_yamux_node_still_connects() -> None:
    """The default muxer is mplex (docs/p2p.md: yamux's window updates cost a frame per read); a node that prefers
    yamux (an older version) and a node that prefers mplex connect and exchange messages either way."""
    network = COMMITTEE.network
    payload = encode_message(
        SignedReportMessage(network, sign_report(network.domain, COMMITTEE.report(10), COMMITTEE.signing_keys[0]))
    )
    assert GossipConfig(network).muxer == "mplex"
    for dialer_muxer, expected in (("yamux", "Yamux"), ("mplex", "Mplex")):
        listener = Libp2pGossip(GossipConfig(network, muxer="mplex" if dialer_muxer == "yamux" else "yamux"),
                                load_peer_key(COMMITTEE.peer_secrets[0]), accept_all)  # fmt: skip
        with trio.fail_after(30):
            async with trio.open_nursery() as nursery:
                await nursery.start(listener.run)
                dialer = Libp2pGossip(
                    GossipConfig(network, bootstrap=tuple(listener.listen_addrs()), muxer=dialer_muxer),
                    load_peer_key(COMMITTEE.peer_secrets[1]),
                    accept_all,
                )
                await nursery.start(dialer.run)
                while dialer.peers() != {listener.peer_id} or listener.peers() != {dialer.peer_id}:
                    await trio.sleep(0.05)
                assert _muxers(dialer) == {expected}, "the dialer's preference is negotiated"
                await dialer.publish(payload)
                message = await listener.messages().receive()
                assert (message.sender, message.payload) == (dialer.peer_id, payload)
                dialer.stop()
                listener.stop()


def test_config_and_keys_are_checked() -> None:
    with pytest.raises(InputError, match="muxer"):
        GossipConfig(COMMITTEE.network, muxer="spdy")
    with pytest.raises(InputError, match="bootstrap"):
        GossipConfig(COMMITTEE.network, bootstrap=("/ip4/127.0.0.1/tcp/1",))
    with pytest.raises(InputError, match="heartbeat_interval"):
        GossipConfig(COMMITTEE.network, heartbeat_interval=0)
    with pytest.raises(InputError, match="peer_key"):
        load_peer_key(b"short")
    gossip = Libp2pGossip(GossipConfig(COMMITTEE.network), load_peer_key(COMMITTEE.peer_secrets[0]), accept_all)
    with pytest.raises(InputError, match="not a /p2p/ multiaddr"):
        gossip.add_peer("not an address")
