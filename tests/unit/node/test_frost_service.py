"""The daemon's FROST signing in the round (node/frost_service.py) with the real executor: n production
:class:`~pmoracle.node.executor.ProtocolExecutor` members, each with a
:class:`~pmoracle.node.frost_service.FrostRoundService`, a :class:`~pmoracle.node.frost_signer.FrostSigner` and a
real SQLite protection file, on the in-memory network under virtual time (tests/unit/consensus/simulation.py).
The simulated chain accepts a FROST signature under the group key (the contract's rule) or an ECDSA certificate.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib

import pytest
import trio
import trio.testing

from pmoracle.consensus import frost_round as fr
from pmoracle.node.frost_service import FrostRoundService
from pmoracle.node.frost_signer import FrostSigner
from pmoracle.node.metrics import create_node_metrics
from pmoracle.p2p.codec import FrostCommitmentMessage, FrostShareMessage, decode_message
from pmoracle.p2p.memory import MemoryNetwork
from pmoracle.p2p.reports import ReportGossip
from pmoracle.p2p.validator import ReportValidator
from pmoracle.storage.frost_nonces import FrostNonceDB
from pmoracle.testing.frost import make_frost_test_committee
from tests.unit.consensus.simulation import (
    NETWORK,
    STAGE_DELAY,
    TX_DELAY,
    Scenario,
    SimResult,
    run_simulation,
)

DURATION = 45.0  # virtual seconds: rounds 100..140


def _check_rounds(result: SimResult) -> None:
    attested = [a.block for a in result.chain.attestations]
    assert attested, "no round attested"
    assert attested == sorted(set(attested))
    for a in result.chain.attestations:
        assert a.digest == result.honest_digest(a.block)


@pytest.mark.parametrize("n", [4, 7])
async def test_every_round_is_attested_with_frost(
    n: int, tmp_path: pathlib.Path, autojump_clock: trio.testing.MockClock
) -> None:
    result = await run_simulation(Scenario(n=n, seed=600 + n, frost=True, duration=DURATION), tmp_path)
    _check_rounds(result)
    assert len(result.chain.attestations) >= 4
    assert [a.scheme for a in result.chain.attestations] == ["frost"] * len(result.chain.attestations)
    assert result.chain.refused["invalid-frost"] == 0
    # the first transmitter posts it as soon as the shares aggregate: well inside the first stage
    for a in result.chain.attestations:
        assert a.at - result.ready_time(a.block) < STAGE_DELAY + TX_DELAY + 1.0
    # from the second round on (its commitments went out a round ahead), the first set signs with its reports:
    # no share after a certificate, so FROST adds no message after the quorum
    rounds = len(result.chain.attestations)
    assert sum(result.frost_shares[i]["report"] for i in range(n)) >= (rounds - 1) * result.committee.quorum
    assert sum(result.frost_shares[i]["certificate"] for i in range(n)) <= result.committee.quorum


async def test_without_frost_the_executor_transmits_ecdsa(
    tmp_path: pathlib.Path, autojump_clock: trio.testing.MockClock
) -> None:
    result = await run_simulation(Scenario(n=4, seed=610, duration=DURATION), tmp_path)
    _check_rounds(result)
    assert {a.scheme for a in result.chain.attestations} == {"ecdsa"}


@pytest.mark.parametrize(
    ("n", "faulty", "schemes"),
    [
        (4, {3: "frost-withhold"}, {"frost"}),  # the withholder is outside S_0 = {1, 2, 3} of 3-of-4
        (4, {0: "frost-withhold"}, {"frost"}),  # inside S_0: left out of S_1, FROST half a stage later
        (7, {1: "frost-withhold"}, {"frost"}),
        (4, {0: "silent"}, {"frost"}),  # never commits: never chosen
        (4, {0: "frost-withhold", 1: "frost-withhold"}, {"ecdsa"}),  # below t: ECDSA one stage later
    ],
)
async def test_a_withholding_or_silent_member_still_gets_every_round_attested(
    n: int, faulty: dict[int, str], schemes: set[str], tmp_path: pathlib.Path, autojump_clock: trio.testing.MockClock
) -> None:
    result = await run_simulation(Scenario(n=n, seed=620 + n, behaviours=faulty, frost=True, duration=DURATION),
                                  tmp_path)  # fmt: skip
    _check_rounds(result)
    attested = {a.block for a in result.chain.attestations}
    first, last = min(attested), max(attested)
    assert attested == set(range(first, last + 1, 10)), "a round was skipped"
    assert len(attested) >= 3
    assert {a.scheme for a in result.chain.attestations} == schemes
    for a in result.chain.attestations:  # at most one stage later than the ECDSA path would take
        assert a.at - result.ready_time(a.block) <= 2 * STAGE_DELAY + TX_DELAY + 1.0


async def test_a_member_whose_own_report_is_late_does_not_hold_up_the_round(
    tmp_path: pathlib.Path, autojump_clock: trio.testing.MockClock
) -> None:
    """Member 1 (in S_0) releases its ECDSA report 3 s late (recorded by slashing protection at once, released
    late): the certificate that forms meanwhile is held only half an attempt, then member 1 signs its share in
    attempt 0, so the round does not wait for attempt 1."""
    result = await run_simulation(Scenario(n=4, seed=660, behaviours={0: "slow"}, frost=True, duration=DURATION),
                                  tmp_path)  # fmt: skip
    _check_rounds(result)
    assert {a.scheme for a in result.chain.attestations} == {"frost"}
    assert all(not result.frost_rejected[i]["sign_refused"] for i in range(4))
    # attempt 1 starts one attempt (STAGE_DELAY / 2 = 1 s) after a certificate that forms >= 0.3 s after the round
    # is ready, then needs the shares and TX_DELAY: >= 1.8 s (1.85-2.06 s with a withholder in S_0, same seed)
    for a in result.chain.attestations:
        assert a.at - result.ready_time(a.block) < STAGE_DELAY / 2 + TX_DELAY + 0.25


async def test_an_invalid_share_is_archived_as_evidence_by_every_honest_member(
    tmp_path: pathlib.Path, autojump_clock: trio.testing.MockClock
) -> None:
    result = await run_simulation(Scenario(n=4, seed=640, behaviours={0: "frost-tamper"}, frost=True,
                                           duration=DURATION), tmp_path)  # fmt: skip
    _check_rounds(result)
    assert {a.scheme for a in result.chain.attestations} == {"frost"}  # S_1 leaves the cheater out
    committee = result.committee
    for index in (1, 2, 3):
        files = sorted((tmp_path / f"evidence-{index}").glob("*.json"))
        assert files, f"member {index} archived no evidence"
        for path in files:
            evidence = json.loads(path.read_text())
            assert evidence["identifier"] == 1 and evidence["signer"] == "0x" + committee.members[0].hex()
            share = decode_message(bytes.fromhex(evidence["share"][2:]))
            commitments = [decode_message(bytes.fromhex(c[2:])) for c in evidence["commitments"]]
            assert isinstance(share, FrostShareMessage)
            assert all(isinstance(c, FrostCommitmentMessage) for c in commitments)
            invalid = fr.InvalidFrostShare(share.signed, tuple(c.signed for c in commitments))  # type: ignore[union-attr]
            assert fr.is_invalid_frost_share(result.frost_contexts[index], invalid)
    assert all(result.frost_evidence[i] >= 1 for i in (1, 2, 3))


async def test_frost_messages_the_machine_refuses_are_counted_never_raised(
    tmp_path: pathlib.Path, autojump_clock: trio.testing.MockClock
) -> None:
    """Copies, another network's messages, a block that is no anchor, a forged envelope: each dropped and counted
    (the participant's counter and ``pmoracle_frost_rejected_total{reason}``), the service keeps running."""
    committee = make_frost_test_committee(4)
    network = committee.committee.network
    async with MemoryNetwork(1) as net:
        services = []
        for index in (0, 1):
            nonces = FrostNonceDB(tmp_path / f"protection-{index}.sqlite")
            signer = FrostSigner(committee.results[index + 1], nonces)
            endpoint = net.create_endpoint(f"node-{index}", ReportValidator(network, committee.committee.config))
            service = FrostRoundService(committee.context(index + 1), network,
                                        committee.committee.signing_keys[index], signer,
                                        ReportGossip(endpoint, network), create_node_metrics(),
                                        evidence_dir=tmp_path / f"evidence-{index}")  # fmt: skip
            services.append((service, nonces))
        me, other = services[0][0], services[1][0]
        block = 1000
        for service, _ in services:
            await service.on_head(block)
        await other.on_round_triggered(block)
        rnd = other.participant.state.get_round(block)
        assert rnd is not None
        signed = rnd.commitments[(0, 2)]
        await me.participant.receive(FrostCommitmentMessage(network, signed))
        bad = [
            FrostCommitmentMessage(network, signed),  # duplicate
            FrostCommitmentMessage(NETWORK, signed),  # another network
            FrostCommitmentMessage(network, dataclasses.replace(signed, block_number=block + 1)),  # not an anchor
            FrostCommitmentMessage(network, dataclasses.replace(signed, attempt=1)),  # envelope signed for attempt 0
        ]
        for message in bad:
            await me._guarded(me.participant.receive(message))
        assert dict(me.participant.rejected) == {"duplicate": 1, "wrong_network": 1, "not_anchor_block": 1,
                                                 "bad_signature": 1}  # fmt: skip
        for reason in ("duplicate", "wrong_network", "not_anchor_block", "bad_signature"):
            assert me.metrics.registry.get_sample_value("pmoracle_frost_rejected_total", {"reason": reason}) == 1
        # the valid commitment was kept
        kept = me.participant.state.get_round(block)
        assert kept is not None and kept.commitments[(0, 2)] == signed
        for _, nonces in services:
            nonces.close()
