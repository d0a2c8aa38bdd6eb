"""FROST signing in the round over the in-memory network, under trio's virtual clock.

Each member is the node's :class:`FrostParticipant` (the pure signing machine behind its shell) with the production
msgpack codec and the committee's topic validator on its in-memory endpoint, a real SQLite nonce store in its own
slashing-protection file (which also holds its ECDSA record of the round) and the production :class:`FrostSigner`
(withholding and tampering members are subclasses that keep or change the share after it was recorded), so every
share leaves the node only after its nonce is recorded used. The ECDSA quorum is given (each member's collector forms
the certificate at a seeded time); the chain accepts the first valid FROST signature (checked with the contract's
rule) or ECDSA certificate of the round.

Scenarios at n = 4 and 7: all honest -> the first set signs with its reports and every member aggregates at its
certificate (FROST with no message after the quorum); one member withholding its share -> still FROST
(t others sign in the second attempt); too few signers -> the ECDSA certificate exactly one stage late; a member
sending an invalid share -> every honest member names it with evidence anyone re-checks, and the round is FROST; a
member whose own report has another digest -> its early share is never aggregated, the second attempt signs.
"""

from __future__ import annotations

import math
import pathlib
import random
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import pytest
import trio
import trio.testing

from pmoracle.consensus import frost
from pmoracle.consensus import frost_round as fr
from pmoracle.consensus.certificate import is_valid_certificate
from pmoracle.consensus.collector import get_committee_position
from pmoracle.consensus.frost_evm import EvmSignature, is_valid_evm_signature
from pmoracle.consensus.rounds import RoundKey
from pmoracle.node.frost_participant import FrostParticipant
from pmoracle.node.frost_signer import FrostSigner
from pmoracle.p2p.codec import FrostCommitmentMessage, FrostShareMessage, decode_message, encode_message
from pmoracle.p2p.errors import CodecError
from pmoracle.p2p.memory import MemoryEndpoint, MemoryNetwork
from pmoracle.p2p.validator import ReportValidator
from pmoracle.storage.frost_nonces import FrostNonceDB
from pmoracle.storage.protection_db import ProtectionDB
from pmoracle.testing.frost import FrostTestCommittee, make_frost_test_committee
from tests.unit.consensus.frost_round_harness import BLOCK, HEAD, make_certificate, report_digest
from tests.unit.consensus.simulation import TamperingFrostSigner, WithholdingFrostSigner

STAGE = 2.0
TICK = 0.05
TX_DELAY = 0.5
REPORTED_FROM, REPORTED_TO = 0.4, 0.6  # when the members sign their own ECDSA report (commitments are in by then)
CERTIFIED_FROM, CERTIFIED_TO = 1.0, 1.4  # when the members' collectors form the ECDSA certificate
DURATION = 12.0
COMMITTEES = {n: make_frost_test_committee(n) for n in (4, 7)}


@dataclass
class Chain:
    """The oracle: the first valid attestation of the round wins; later ones are refused."""

    fc: FrostTestCommittee
    attested: list[tuple[str, float, int]] = field(default_factory=list)  # (scheme, at, transmitter)
    refused: Counter[str] = field(default_factory=Counter)
    closed: trio.Event = field(default_factory=trio.Event)

    def submit(self, effect: fr.TransmitFrost | fr.TransmitEcdsa, transmitter: int, at: float) -> None:
        """Attest the round if the signature or certificate is valid and the round is open."""
        domain, config = self.fc.committee.network.domain, self.fc.committee.config
        certificate = effect.certificate
        if isinstance(effect, fr.TransmitFrost):
            digest = report_digest(self.fc, certificate.report)
            evm = EvmSignature.from_signature(effect.signature)
            valid = config.group_key is not None and is_valid_evm_signature(config.group_key, digest, evm)
            scheme = "frost"
        else:
            valid, scheme = is_valid_certificate(domain, config, certificate), "ecdsa"
        if not valid:
            self.refused["invalid"] += 1
        elif self.attested:
            self.refused["stale"] += 1
        else:
            self.attested.append((scheme, at, transmitter))
            self.closed.set()


class RecordingSigner(FrostSigner):
    """The production signer, noting its own commitments (for the checks after the run)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.issued: list[frost.SigningCommitment] = []

    def commit(self, round_key: RoundKey) -> frost.SigningCommitment:
        commitment = super().commit(round_key)
        self.issued.append(commitment)
        return commitment


class WithholdingSigner(RecordingSigner, WithholdingFrostSigner):
    """Records the nonce use and signs, then keeps the share (a member withholding its share)."""


class TamperingSigner(RecordingSigner, TamperingFrostSigner):
    """Releases a share that does not verify (its signer recorded the true one)."""


SIGNERS = {
    "honest": RecordingSigner,
    "withhold": WithholdingSigner,
    "bad": TamperingSigner,
    "silent": RecordingSigner,
    "minority": RecordingSigner,  # its own report has another digest (the only one its store lets it sign)
}


@dataclass
class Node:
    """One member: its participant, nonce store and endpoint, and what it did."""

    identifier: int
    behaviour: str
    participant: FrostParticipant
    endpoint: MemoryEndpoint
    store: FrostNonceDB
    reported: bytes
    reported_at: float
    certified_at: float = math.inf
    evidence: list[fr.InvalidFrostShare] = field(default_factory=list)
    formed: list[fr.FrostSignatureFormed] = field(default_factory=list)
    formed_at: list[float] = field(default_factory=list)
    published_shares: list[fr.SignedFrostShare] = field(default_factory=list)

    @property
    def issued(self) -> dict[int, frost.SigningCommitment]:
        """Return the own commitments by attempt (issued in attempt order)."""
        signer = self.participant.signer
        return dict(enumerate(signer.issued)) if isinstance(signer, RecordingSigner) else {}


class Simulation:
    """n members signing round BLOCK, each a FrostParticipant on the in-memory network."""

    def __init__(self, fc: FrostTestCommittee, behaviours: dict[int, str], seed: int, tmp: pathlib.Path) -> None:
        self.fc = fc
        self.behaviours = behaviours
        self.seed = seed
        self.tmp = tmp
        self.chain = Chain(fc)
        self.certificate = make_certificate(fc)
        self.digest = report_digest(fc, self.certificate.report)
        self.other_digest = report_digest(fc, fc.committee.report(BLOCK, accounts_root=b"\x07" * 32))
        self.nodes: dict[int, Node] = {}
        self.start = 0.0

    def now(self) -> float:
        """Return the virtual time since the start."""
        return trio.current_time() - self.start

    async def run(self) -> None:
        """Run every member until DURATION."""
        self.start = trio.current_time()
        config = self.fc.committee.config
        draw = random.Random(self.seed)
        async with MemoryNetwork(seed=self.seed, min_delay=0.05, max_delay=0.3) as net, trio.open_nursery() as nursery:
            for identifier in range(1, config.n + 1):
                reported_at = draw.uniform(REPORTED_FROM, REPORTED_TO)
                certified_at = draw.uniform(CERTIFIED_FROM, CERTIFIED_TO)
                self.nodes[identifier] = self._create_node(net, identifier, reported_at, certified_at)
            for node in self.nodes.values():
                nursery.start_soon(self._run_node, node)
            await trio.sleep(DURATION)
            nursery.cancel_scope.cancel()
        for node in self.nodes.values():
            node.store.close()

    def _create_node(self, net: MemoryNetwork, identifier: int, reported_at: float, certified_at: float) -> Node:
        config, network_id = self.fc.committee.config, self.fc.committee.network
        path = self.tmp / f"member-{identifier}" / "protection.sqlite"
        path.parent.mkdir()
        behaviour = self.behaviours.get(identifier, "honest")
        reported = self.other_digest if behaviour == "minority" else self.digest
        with ProtectionDB(path) as protection:  # the member signs the round's report with ECDSA
            protection.record_and_check((config.digest(), BLOCK), reported)
        store = FrostNonceDB(path)
        signer = SIGNERS[behaviour](
            self.fc.results[identifier], store, random_bytes=random.Random(self.seed * 100 + identifier).randbytes
        )
        endpoint = net.create_endpoint(f"member-{identifier}", ReportValidator(network_id, config))
        node: Node

        async def publish(message: FrostCommitmentMessage | FrostShareMessage) -> None:
            if isinstance(message, FrostShareMessage):
                node.published_shares.append(message.signed)
            await endpoint.publish(encode_message(message))

        async def transmit(effect: fr.TransmitFrost | fr.TransmitEcdsa) -> None:
            at = self.now()
            await trio.sleep(TX_DELAY)
            self.chain.submit(effect, identifier, at)

        participant = FrostParticipant(
            self.fc.context(identifier, stage_delay=STAGE), network_id, self.fc.committee.signing_keys[identifier - 1],
            signer, publish=publish, transmit=transmit, archive=lambda e: node.evidence.append(e),
            on_signature=lambda f: (node.formed.append(f), node.formed_at.append(self.now())), head=HEAD,
        )  # fmt: skip
        node = Node(identifier, behaviour, participant, endpoint, store, reported, reported_at, certified_at)
        return node

    async def _run_node(self, node: Node) -> None:
        participant = node.participant
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._receive, node)
            # the round opens: commitments for every attempt go out ahead of the quorum
            if node.behaviour != "silent":
                await participant.open_round(BLOCK)
                # its own report signed: a member of the first set signs its share right behind it
                await trio.sleep_until(self.start + node.reported_at)
                await participant.report_signed(BLOCK, node.reported)
            await trio.sleep_until(self.start + node.certified_at)
            await participant.certify(self.certificate)
            while True:
                if self.chain.closed.is_set():
                    await participant.attested((self.fc.committee.config.digest(), BLOCK))
                await participant.tick()
                await trio.sleep(TICK)

    async def _receive(self, node: Node) -> None:
        async for received in node.endpoint.messages():
            try:
                message = decode_message(received.payload)
            except CodecError:  # the validator refused these already
                continue
            if isinstance(message, FrostCommitmentMessage | FrostShareMessage):
                await node.participant.receive(message)


def _simulate(n: int, behaviours: dict[int, str], seed: int, tmp: pathlib.Path) -> Simulation:
    sim = Simulation(COMMITTEES[n], behaviours, seed, tmp)
    trio.run(sim.run, clock=trio.testing.MockClock(autojump_threshold=0))
    return sim


def _assert_nonces_persisted_before_release(sim: Simulation) -> None:
    """Every share that left a node is recorded, with its message and value, as its commitment's one use."""
    for node in sim.nodes.values():
        reopened = FrostNonceDB(sim.tmp / f"member-{node.identifier}" / "protection.sqlite")
        try:
            for share in node.published_shares:
                record = reopened.get(node.issued[share.attempt])
                assert record is not None and record.is_used
                assert record.message == share.message
                if node.behaviour != "bad":  # the bad member tampers after its signer recorded the true share
                    assert record.share == share.share.share
        finally:
            reopened.close()


def _certified_at(sim: Simulation) -> float:
    return min(node.certified_at for node in sim.nodes.values())


@pytest.mark.parametrize("n", [4, 7])
@pytest.mark.parametrize("seed", [1, 2])
def test_all_honest_the_round_is_attested_with_frost_within_the_stage(
    n: int, seed: int, tmp_path: pathlib.Path
) -> None:
    sim = _simulate(n, {}, seed, tmp_path)
    assert [scheme for scheme, _, _ in sim.chain.attested] == ["frost"]
    _, at, transmitter = sim.chain.attested[0]
    # the first set signed with its reports: every member aggregates at its certificate, no message after it
    for node in sim.nodes.values():
        assert [(f.attempt, f.signers) for f in node.formed] == [(0, (1 << sim.fc.committee.config.quorum) - 1)]
        assert node.formed_at == [node.certified_at]
    assert at == sim.nodes[transmitter].certified_at  # the first transmitter posts at once
    assert all(node.evidence == [] for node in sim.nodes.values())
    assert sim.chain.refused["invalid"] == 0
    _assert_nonces_persisted_before_release(sim)


@pytest.mark.parametrize(("n", "withholding"), [(4, (1,)), (7, (1,)), (7, (2, 4))])
def test_members_withholding_shares_still_give_frost_when_t_others_sign(
    n: int, withholding: tuple[int, ...], tmp_path: pathlib.Path
) -> None:
    sim = _simulate(n, dict.fromkeys(withholding, "withhold"), 3, tmp_path)
    assert [scheme for scheme, _, _ in sim.chain.attested] == ["frost"]
    _, at, _ = sim.chain.attested[0]
    # the withholders cost the first attempt: at most one stage after the quorum
    assert _certified_at(sim) + STAGE / 2 <= at < max(n.certified_at for n in sim.nodes.values()) + STAGE
    _assert_nonces_persisted_before_release(sim)


@pytest.mark.parametrize(("n", "withholding"), [(4, (1, 3)), (7, (1, 2, 6))])
def test_too_few_signers_fall_back_to_the_ecdsa_certificate_after_one_stage(
    n: int, withholding: tuple[int, ...], tmp_path: pathlib.Path
) -> None:
    sim = _simulate(n, dict.fromkeys(withholding, "withhold"), 4, tmp_path)
    assert [scheme for scheme, _, _ in sim.chain.attested] == ["ecdsa"]
    _, at, transmitter = sim.chain.attested[0]
    node = sim.nodes[transmitter]
    config = COMMITTEES[n].committee.config
    assert get_committee_position(config, (config.digest(), BLOCK), config.members[transmitter - 1]) == 0
    # the first transmitter of the schedule posts the certificate one stage after its own quorum (one tick late)
    assert node.certified_at + STAGE <= at <= node.certified_at + STAGE + TICK
    assert all(n.formed == [] for n in sim.nodes.values())


@pytest.mark.parametrize(("n", "cheater"), [(4, 2), (7, 1)])
def test_an_invalid_share_is_identified_archived_and_the_round_still_certified(
    n: int, cheater: int, tmp_path: pathlib.Path
) -> None:
    sim = _simulate(n, {cheater: "bad"}, 5, tmp_path)
    context = COMMITTEES[n].context(None)
    for node in sim.nodes.values():
        if node.identifier == cheater:
            continue
        assert [e.share.share.identifier for e in node.evidence] == [cheater]
        assert fr.is_invalid_frost_share(context, node.evidence[0])
    assert [scheme for scheme, _, _ in sim.chain.attested] == ["frost"]
    _, at, _ = sim.chain.attested[0]
    assert at < max(n.certified_at for n in sim.nodes.values()) + STAGE
    _assert_nonces_persisted_before_release(sim)


def test_members_without_a_commitment_are_left_out_from_the_start(tmp_path: pathlib.Path) -> None:
    sim = _simulate(7, {1: "silent", 3: "silent"}, 6, tmp_path)
    assert [scheme for scheme, _, _ in sim.chain.attested] == ["frost"]
    for node in sim.nodes.values():
        if node.behaviour == "honest":
            assert [(f.attempt, f.signers) for f in node.formed] == [(0, 0b1111010)]


def test_a_member_whose_report_differs_spends_the_first_attempt_and_the_second_signs(tmp_path: pathlib.Path) -> None:
    sim = _simulate(7, {2: "minority"}, 7, tmp_path)
    minority = sim.nodes[2]
    # its early share is of its own report's digest: recorded, released, never part of an aggregate
    assert [(s.attempt, s.message) for s in minority.published_shares] == [(0, sim.other_digest)]
    assert [scheme for scheme, _, _ in sim.chain.attested] == ["frost"]
    for node in sim.nodes.values():
        if node.identifier != 2:
            assert [(f.attempt, f.signers) for f in node.formed] == [(1, 0b0111101)]
    _, at, _ = sim.chain.attested[0]
    assert _certified_at(sim) + STAGE / 2 <= at < max(n.certified_at for n in sim.nodes.values()) + STAGE
    assert minority.participant.rejected["sign_refused"] == 0  # never asked for the certified digest
    _assert_nonces_persisted_before_release(sim)
