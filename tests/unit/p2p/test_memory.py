"""The in-memory gossip network: delivery, validation, loss, delay, partitions, crashes, bounded queues."""

from __future__ import annotations

import pytest
import trio
import trio.testing

import pmoracle.p2p as p2p
from pmoracle.errors import InputError
from pmoracle.p2p import GossipError, MemoryNetwork, Received, Verdict


def _drain(endpoint: p2p.MemoryEndpoint) -> list[Received]:
    out = []
    while True:
        try:
            out.append(endpoint.messages().receive_nowait())
        except trio.WouldBlock:
            return out


def _reject_odd(payload: bytes) -> Verdict:
    return Verdict.reject("odd") if payload[0] % 2 else Verdict.accept()


def test_public_api_is_curated() -> None:
    assert sorted(p2p.__all__) == sorted(name for name in p2p.__all__ if hasattr(p2p, name))
    assert {"GossipEndpoint", "MemoryNetwork", "Verdict", "Received"} <= set(p2p.__all__)


async def test_publish_reaches_every_other_endpoint_not_itself() -> None:
    net = MemoryNetwork(seed=1)
    a, b, c = (net.create_endpoint() for _ in range(3))
    await a.publish(b"hello")
    assert _drain(a) == []
    assert _drain(b) == [Received("mem-0", b"hello")]
    assert _drain(c) == [Received("mem-0", b"hello")]
    assert a.peers() == {"mem-1", "mem-2"}


async def test_validator_rejects_before_delivery_and_counts_reason() -> None:
    net = MemoryNetwork(seed=1)
    a = net.create_endpoint("a")
    b = net.create_endpoint("b", validator=_reject_odd)
    await a.publish(b"\x01")
    await a.publish(b"\x02")
    assert [m.payload for m in _drain(b)] == [b"\x02"]
    assert b.rejections == {"odd": 1}


async def test_raising_validator_is_a_rejection_not_a_crash() -> None:
    def broken(payload: bytes) -> Verdict:
        raise ValueError("bug")

    net = MemoryNetwork(seed=1)
    a, b = net.create_endpoint("a"), net.create_endpoint("b", validator=broken)
    await a.publish(b"x")
    assert _drain(b) == [] and b.rejections == {"validator-error": 1}


async def test_bounded_queue_drops_when_full() -> None:
    net = MemoryNetwork(seed=1, queue_size=2)
    a, b = net.create_endpoint(), net.create_endpoint()
    for i in range(5):
        await a.publish(bytes([i]))
    assert [m.payload for m in _drain(b)] == [b"\x00", b"\x01"]
    assert b.rejections["queue-full"] == 3


def _loss_pattern(seed: int) -> list[bool]:
    async def main() -> list[bool]:
        net = MemoryNetwork(seed=seed, loss=0.5)
        a, b = net.create_endpoint(), net.create_endpoint()
        got = []
        for i in range(40):
            await a.publish(bytes([i]))
            got.append(bool(_drain(b)))
        return got

    return trio.run(main)


def test_loss_is_seeded_and_reproducible() -> None:
    first, again, other = _loss_pattern(7), _loss_pattern(7), _loss_pattern(8)
    assert first == again
    assert first != other
    assert 5 < sum(first) < 35  # about half the messages arrive


def _concurrent_outcome(seed: int) -> list[list[bytes]]:
    # Four senders publish at once from sibling tasks, whose order trio's scheduler shuffles on purpose.
    async def main() -> list[list[bytes]]:
        net = MemoryNetwork(seed=seed, loss=0.5)
        endpoints = [net.create_endpoint() for _ in range(4)]

        async def send(k: int) -> None:
            for i in range(10):
                await endpoints[k].publish(bytes([k, i]))
                await trio.sleep(0)

        async with trio.open_nursery() as nursery:
            for k in range(4):
                nursery.start_soon(send, k)
        return [sorted(m.payload for m in _drain(e)) for e in endpoints]

    return trio.run(main)


def test_loss_does_not_depend_on_how_trio_interleaves_senders() -> None:
    outcomes = {repr(_concurrent_outcome(11)) for _ in range(30)}
    assert len(outcomes) == 1


async def test_delay_uses_virtual_time(autojump_clock: trio.testing.MockClock) -> None:
    async with MemoryNetwork(seed=3, min_delay=2.0, max_delay=4.0) as net:
        a, b = net.create_endpoint(), net.create_endpoint()
        start = trio.current_time()
        await a.publish(b"late")
        assert _drain(b) == []
        message = await b.messages().receive()
        assert message.payload == b"late"
        assert 2.0 <= trio.current_time() - start <= 4.0


def test_delay_without_nursery_is_refused() -> None:
    async def main() -> None:
        net = MemoryNetwork(seed=3)
        a, _ = net.create_endpoint("a"), net.create_endpoint("b")
        net.set_link("a", "b", min_delay=1.0, max_delay=1.0)
        await a.publish(b"x")

    with pytest.raises(GossipError, match="async with"):
        trio.run(main)


async def test_per_link_loss_is_directional() -> None:
    net = MemoryNetwork(seed=1)
    a, b = net.create_endpoint("a"), net.create_endpoint("b")
    net.set_link("a", "b", loss=1.0)
    await a.publish(b"x")
    await b.publish(b"y")
    assert _drain(b) == [] and [m.payload for m in _drain(a)] == [b"y"]
    assert net.stats["lost"] == 1


async def test_partition_cuts_groups_and_heal_restores() -> None:
    net = MemoryNetwork(seed=1)
    a, b, c, d = (net.create_endpoint(name) for name in "abcd")
    net.partition([["a", "b"], ["c"]])  # d is in no group: alone
    assert a.peers() == {"b"} and c.peers() == set() and d.peers() == set()
    await a.publish(b"1")
    assert len(_drain(b)) == 1 and _drain(c) == [] and _drain(d) == []
    net.heal()
    await a.publish(b"2")
    assert all(len(_drain(e)) == 1 for e in (b, c, d))


async def test_partition_loses_messages_in_flight(autojump_clock: trio.testing.MockClock) -> None:
    async with MemoryNetwork(seed=1, min_delay=1.0, max_delay=1.0) as net:
        a, b = net.create_endpoint("a"), net.create_endpoint("b")
        await a.publish(b"x")
        net.partition([["a"], ["b"]])
        await trio.sleep(2.0)
        assert _drain(b) == [] and net.stats["partitioned"] == 1


def test_partition_rejects_peer_in_two_groups() -> None:
    net = MemoryNetwork(seed=1)
    with pytest.raises(InputError, match="two groups"):
        net.partition([["a"], ["a", "b"]])


async def test_crash_drops_queue_and_isolates_until_restart() -> None:
    net = MemoryNetwork(seed=1)
    a, b = net.create_endpoint("a"), net.create_endpoint("b")
    await a.publish(b"before")
    net.crash("b")
    assert _drain(b) == []  # the queue died with the process
    await a.publish(b"while-down")
    await b.publish(b"from-the-dead")
    assert _drain(b) == [] and _drain(a) == [] and a.peers() == set()
    net.restart("b")
    await a.publish(b"after")
    assert [m.payload for m in _drain(b)] == [b"after"]
    assert net.stats["sender-down"] == 1


async def test_closed_endpoint_refuses_publish_and_ends_iteration() -> None:
    net = MemoryNetwork(seed=1)
    a, b = net.create_endpoint("a"), net.create_endpoint("b")
    await a.aclose()
    with pytest.raises(GossipError, match="closed"):
        await a.publish(b"x")
    assert b.peers() == set()
    assert [m async for m in a.messages()] == []


def test_bad_arguments_name_the_field() -> None:
    with pytest.raises(InputError, match="loss"):
        MemoryNetwork(seed=1, loss=1.5)
    with pytest.raises(InputError, match="max_delay"):
        MemoryNetwork(seed=1, min_delay=2.0, max_delay=1.0)
    with pytest.raises(InputError, match="queue_size"):
        MemoryNetwork(seed=1, queue_size=0)
    net = MemoryNetwork(seed=1)
    net.create_endpoint("a")
    with pytest.raises(InputError, match="already"):
        net.create_endpoint("a")
