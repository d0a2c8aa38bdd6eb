"""The DKG over the gossip layer (in-memory endpoints with the real topic validator, lossy links, virtual time):
a 3-of-4 run agrees on a key that signs, lost messages are re-published, a silent member is named, a dealer's
share that does not open names the dealer, and a stranger's message or one of another run never reaches a
session."""

from __future__ import annotations

import random

import trio
import trio.testing

from pmoracle.consensus import frost
from pmoracle.consensus import frost_dkg_wire as wire
from pmoracle.consensus.frost_dkg import DkgParameters, Round1Package
from pmoracle.node.frost_dkg_gossip import GossipDkgTransport, run_gossip_dkg
from pmoracle.node.frost_dkg_session import DkgOutcome
from pmoracle.p2p.codec import DkgMessage, encode_message
from pmoracle.p2p.memory import MemoryNetwork
from pmoracle.p2p.reports import ReportGossip
from pmoracle.p2p.validator import ReportValidator
from pmoracle.testing.committees import make_test_committee
from pmoracle.testing.frost import sign_in_process
from tests.unit.node.dkg_support import GarblingTransport

N = 4
TC = make_test_committee(N)
DOMAIN = TC.network.domain
IDS = tuple(range(1, N + 1))
THRESHOLD = TC.config.quorum
CONTEXT = wire.compute_dkg_context(DOMAIN, TC.config)


def _run(
    *,
    loss: float = 0.0,
    silent: frozenset[int] = frozenset(),
    garbling: frozenset[int] = frozenset(),
    seed: int = 0,
    timeout: float = 30.0,
) -> tuple[dict[int, DkgOutcome], dict[int, GossipDkgTransport], MemoryNetwork]:
    rng = random.Random(seed)
    seeds = {i: rng.randbytes(32) for i in IDS}
    outcomes: dict[int, DkgOutcome] = {}
    transports: dict[int, GossipDkgTransport] = {}
    holder: list[MemoryNetwork] = []

    async def member(net: MemoryNetwork, i: int) -> None:
        validator = ReportValidator(TC.network, TC.config)
        validator.set_dkg_context(CONTEXT)
        gossip = ReportGossip(net.create_endpoint(f"m{i}", validator), TC.network)
        kind = GarblingTransport if i in garbling else GossipDkgTransport
        transport = kind(gossip, DOMAIN, TC.config, CONTEXT, TC.signing_keys[i - 1])
        transports[i] = transport
        async with trio.open_nursery() as nursery:
            await nursery.start(gossip.run)
            if i not in silent:
                parameters = DkgParameters(CONTEXT, IDS, THRESHOLD, i)
                outcomes[i] = await run_gossip_dkg(transport, parameters, seeds[i], timeout=timeout)
            nursery.cancel_scope.cancel()

    async def main() -> None:
        async with MemoryNetwork(seed, loss=loss, min_delay=0.01, max_delay=0.2) as net:
            holder.append(net)
            async with trio.open_nursery() as nursery:
                for i in IDS:
                    nursery.start_soon(member, net, i)
                if silent:  # the silent members' gossip stays up until the others are done
                    await trio.sleep(timeout + 10)
                    nursery.cancel_scope.cancel()

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    return outcomes, transports, holder[0]


def _assert_agree_and_sign(outcomes: dict[int, DkgOutcome]) -> None:
    results = {i: o.result for i, o in outcomes.items() if o.result is not None}
    assert sorted(results) == list(IDS)
    assert len({r.group_public_key for r in results.values()}) == 1
    assert len({r.transcript_digest for r in results.values()}) == 1
    signature = sign_in_process(results, IDS[:THRESHOLD], b"margin", b"\x01" * 32)  # type: ignore[arg-type]
    assert frost.verify(results[1].group_public_key, b"margin", signature)  # type: ignore[union-attr]


def test_four_members_agree_over_gossip_and_sign() -> None:
    outcomes, _, _ = _run()
    _assert_agree_and_sign(outcomes)
    assert all(not o.rejected for o in outcomes.values())


def test_lossy_links_recover_by_republication() -> None:
    outcomes, transports, net = _run(loss=0.3, seed=3)
    assert net.stats["lost"] > 0
    _assert_agree_and_sign(outcomes)
    assert sum(t.stats["republished"] for t in transports.values()) > 0


def test_a_silent_member_is_named_by_every_other() -> None:
    outcomes, _, _ = _run(silent=frozenset({3}), timeout=20.0)
    assert sorted(outcomes) == [1, 2, 4]
    for outcome in outcomes.values():
        assert outcome.result is None and outcome.timed_out
        assert outcome.missing == (3,)
        assert outcome.excluded == (3,)


def test_a_share_that_does_not_open_names_its_dealer() -> None:
    # dealer 4 signs a share for member 1 that member 1 cannot decrypt: it passes the validator (it is dealer 4's),
    # is counted undecryptable, never reaches the session, and member 1 names dealer 4 when the run times out
    outcomes, transports, _ = _run(garbling=frozenset({4}), timeout=20.0)
    assert transports[1].stats["undecryptable"] == 1
    assert outcomes[1].result is None and outcomes[1].timed_out and outcomes[1].missing == (4,)
    for i in (2, 3, 4):  # the others finish (the transcript confirmation is what then catches member 1's view)
        assert outcomes[i].result is not None


def test_strangers_and_other_runs_are_dropped_before_the_session() -> None:
    # a non-member's package, and a member's package of another run, injected on the topic: both refused by every
    # member's validator, counted, and the run still finishes
    async def attack(net: MemoryNetwork) -> None:
        _, package = _start(2)
        outsider = wire.sign_dkg_package(DOMAIN, CONTEXT, package, b"\x42" * 32)
        other_run = wire.compute_dkg_context(DOMAIN, TC.config, run=1)
        replay = wire.sign_dkg_package(DOMAIN, other_run, package, TC.signing_keys[1])
        endpoint = net.create_endpoint("stranger")
        for _ in range(20):
            await trio.sleep(0.1)
            await endpoint.publish(encode_message(DkgMessage(TC.network, outsider)))
            await endpoint.publish(encode_message(DkgMessage(TC.network, replay)))
            await endpoint.publish(b"\x93\x02\x05garbage")

    outcomes: dict[int, DkgOutcome] = {}
    rejections: dict[int, dict[str, int]] = {}
    rng = random.Random(5)
    seeds = {i: rng.randbytes(32) for i in IDS}

    async def member(net: MemoryNetwork, i: int) -> None:
        validator = ReportValidator(TC.network, TC.config)
        validator.set_dkg_context(CONTEXT)
        endpoint = net.create_endpoint(f"m{i}", validator)
        gossip = ReportGossip(endpoint, TC.network)
        transport = GossipDkgTransport(gossip, DOMAIN, TC.config, CONTEXT, TC.signing_keys[i - 1])
        async with trio.open_nursery() as nursery:
            await nursery.start(gossip.run)
            await trio.sleep(0.5)  # the stranger is already at it
            outcomes[i] = await run_gossip_dkg(transport, DkgParameters(CONTEXT, IDS, THRESHOLD, i), seeds[i],
                                               timeout=30.0)  # fmt: skip
            rejections[i] = dict(endpoint.rejections)
            nursery.cancel_scope.cancel()

    async def main() -> None:
        async with MemoryNetwork(5) as net, trio.open_nursery() as nursery:
            for i in IDS:
                nursery.start_soon(member, net, i)
            await attack(net)

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    _assert_agree_and_sign(outcomes)
    for counts in rejections.values():
        assert counts["not-member"] > 0 and counts["wrong-dkg"] > 0 and counts["malformed"] > 0


def _start(i: int) -> tuple[object, Round1Package]:
    from pmoracle.consensus.frost_dkg import start_dkg

    return start_dkg(DkgParameters(CONTEXT, IDS, THRESHOLD, i), bytes([i]) * 32)
