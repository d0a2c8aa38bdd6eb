"""Report exchange on the in-memory network (virtual time): re-publication, catch-up after a crash, dedupe."""

from __future__ import annotations

import dataclasses

import trio
import trio.testing

from pmoracle.consensus import frost
from pmoracle.consensus.frost_round import sign_frost_commitment
from pmoracle.consensus.report import SignedReport, sign_report
from pmoracle.p2p import MemoryNetwork
from pmoracle.p2p.codec import FrostCommitmentMessage
from pmoracle.p2p.reports import ReportGossip
from pmoracle.p2p.validator import ReportValidator
from pmoracle.testing.committees import make_test_committee
from pmoracle.testing.frost import make_frost_test_committee

COMMITTEE = make_test_committee(4)
DOMAIN = COMMITTEE.network.domain
REPORT = COMMITTEE.report(200)
KEY = REPORT.round_key


def _signed(i: int, report: object = REPORT) -> SignedReport:
    return sign_report(DOMAIN, report, COMMITTEE.signing_keys[i])  # type: ignore[arg-type]


def _drain(gossip: ReportGossip) -> list[SignedReport]:
    out = []
    while True:
        try:
            out.append(gossip.reports().receive_nowait())
        except trio.WouldBlock:
            return out


async def _start(net: MemoryNetwork, nursery: trio.Nursery, n: int = 4) -> list[ReportGossip]:
    nodes = []
    for i in range(n):
        endpoint = net.create_endpoint(f"n{i}", validator=ReportValidator(COMMITTEE.network, COMMITTEE.config))
        gossip = ReportGossip(endpoint, COMMITTEE.network, republish_interval=2.0)
        await nursery.start(gossip.run)
        nodes.append(gossip)
    return nodes


async def test_lost_reports_arrive_through_republication(autojump_clock: trio.testing.MockClock) -> None:
    async with MemoryNetwork(seed=5, loss=0.5) as net, trio.open_nursery() as nursery:
        nodes = await _start(net, nursery)
        for i, node in enumerate(nodes):
            await node.publish_own(_signed(i))
        # Re-publications at 2, 6, 14, 30, 46, ... s (doubling, capped at 16 s): 14 tries per link by 200 s, so
        # each of the 12 links loses every copy with probability 2^-15 (the seed fixes the outcome either way).
        await trio.sleep(200)
        for i, node in enumerate(nodes):
            got = _drain(node)
            # each other member's report exactly once, despite repeats
            assert sorted(s.signer for s in got) == sorted(m for j, m in enumerate(COMMITTEE.config.members) if j != i)
            assert node.stats["duplicate"] > 0
        nursery.cancel_scope.cancel()


async def test_attested_round_stops_republishing(autojump_clock: trio.testing.MockClock) -> None:
    async with MemoryNetwork(seed=1) as net, trio.open_nursery() as nursery:
        a, _b, _c, _d = await _start(net, nursery)
        await a.publish_own(_signed(0))
        await trio.sleep(5)
        a.mark_attested(KEY)
        sent = net.stats["published"]
        await trio.sleep(20)
        assert net.stats["published"] == sent
        nursery.cancel_scope.cancel()


async def test_restarted_node_catches_up_after_the_round_was_attested(autojump_clock: trio.testing.MockClock) -> None:
    async with MemoryNetwork(seed=2) as net, trio.open_nursery() as nursery:
        nodes = await _start(net, nursery, n=3)
        net.create_endpoint("n3", validator=ReportValidator(COMMITTEE.network, COMMITTEE.config))
        net.crash("n3")
        for i in range(3):
            await nodes[i].publish_own(_signed(i))
        await trio.sleep(1)
        for node in nodes[:3]:
            node.mark_attested(KEY)  # nobody re-publishes any more
        net.restart("n3")
        fresh = ReportGossip(net.endpoint("n3"), COMMITTEE.network)  # the restarted process has no memory
        await nursery.start(fresh.run)
        await fresh.request_catch_up(KEY)
        await trio.sleep(0.1)
        assert sorted(s.signer for s in _drain(fresh)) == sorted(COMMITTEE.config.members[:3])
        # a second request within the cooldown is not answered again
        await fresh.request_catch_up(KEY)
        await trio.sleep(0.1)
        assert _drain(fresh) == []
        assert all(node.stats["catch-up-answered"] == 1 for node in nodes[:3])
        nursery.cancel_scope.cancel()


async def test_equivocating_signer_reaches_the_owner_twice(autojump_clock: trio.testing.MockClock) -> None:
    async with MemoryNetwork(seed=3) as net, trio.open_nursery() as nursery:
        a, b, _c, _d = await _start(net, nursery)
        await a.publish_own(_signed(0))
        await a.publish_own(_signed(0, dataclasses.replace(REPORT, account_count=1)))
        await trio.sleep(0.1)
        got = _drain(b)
        assert len(got) == 2 and {s.report.account_count for s in got} == {1000, 1}
        nursery.cancel_scope.cancel()


async def test_republication_backs_off_to_its_cap(autojump_clock: trio.testing.MockClock) -> None:
    async with MemoryNetwork(seed=4) as net, trio.open_nursery() as nursery:
        endpoint = net.create_endpoint("a")
        net.create_endpoint("b")
        gossip = ReportGossip(endpoint, COMMITTEE.network, republish_interval=2.0, max_republish_interval=16.0)
        await nursery.start(gossip.run)
        start = trio.current_time()
        await gossip.publish_own(_signed(0))
        counts = []
        for t in (1, 3, 7, 15, 31, 47, 63):  # re-publications due at 2, 6, 14, 30, 46, 62
            await trio.sleep_until(start + t)
            counts.append(net.stats["published"])
        assert counts == [1, 2, 3, 4, 5, 6, 7]
        nursery.cancel_scope.cancel()


async def test_frost_messages_go_to_their_own_channel(autojump_clock: trio.testing.MockClock) -> None:
    # a FROST commitment reaches ReportGossip (the validator accepts it) and its channel, never the reports'
    fc = make_frost_test_committee(4)
    round_key = (fc.committee.config.digest(), 200)
    commitment = frost.commit(1, fc.results[1].signing_share, b"\x01" * 32, b"\x02" * 32)[1]
    signed = sign_frost_commitment(fc.committee.network.domain, round_key, 0, commitment, fc.committee.signing_keys[0])
    async with MemoryNetwork(seed=4) as net, trio.open_nursery() as nursery:
        validator = ReportValidator(fc.committee.network, fc.committee.config)
        sender = net.create_endpoint("sender", validator=validator)
        gossip = ReportGossip(net.create_endpoint("receiver", validator=validator), fc.committee.network)
        await nursery.start(gossip.run)
        sending = ReportGossip(sender, fc.committee.network)
        await sending.publish_frost(FrostCommitmentMessage(fc.committee.network, signed))
        await trio.sleep(0.1)
        assert gossip.stats["frost-received"] == 1 and _drain(gossip) == []
        assert gossip.frost_messages().receive_nowait() == FrostCommitmentMessage(fc.committee.network, signed)
        assert sending.stats["frost-published"] == 1
        nursery.cancel_scope.cancel()
