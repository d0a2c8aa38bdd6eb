"""The test-only fault injector: its pieces that need no running node, and that production cannot reach it."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import trio
import trio.testing

from pmoracle.commands.devnet import parse_faulty
from pmoracle.consensus.certificate import QuorumCertificate
from pmoracle.consensus.committee import CommitteeConfig
from pmoracle.consensus.evidence import Deviation, Evidence, compute_equivocation, is_equivocation
from pmoracle.consensus.merkle import AccountLeaf, MerkleTree
from pmoracle.consensus.report import Domain, Report, SignedReport
from pmoracle.devnet.cluster import DevnetOptions
from pmoracle.devnet.faults import (
    COLLUDE_UNDERSTATEMENT,
    EQUIVOCATION_REPUBLISH,
    EQUIVOCATION_REPUBLISH_FOR,
    FAULT_MODES,
    DelayedRelease,
    EquivocatingRelease,
    SelfSparingChain,
    WithholdingRelease,
    colluding_rounds,
    compute_colluding_tree,
    compute_perturbed_report,
    compute_spam_batch,
)
from pmoracle.errors import InputError
from pmoracle.node.abc import AttestedRound, ChainPort
from pmoracle.node.round import RoundOutput
from pmoracle.p2p.codec import NetworkId, SignedReportMessage, decode_message
from pmoracle.p2p.validator import ReportValidator
from pmoracle.risk.version import ENGINE_VERSION
from tests.unit.consensus.factories import DOMAIN as FACTORY_DOMAIN
from tests.unit.consensus.factories import make_committee, make_key, make_signed

MEMBERS = tuple(bytes([i]) * 20 for i in range(1, 5))


def committee() -> CommitteeConfig:
    return CommitteeConfig(chain_id=31337, registry=b"\x11" * 20, version=1, members=MEMBERS, quorum=3,
                           round_period=5, finality_depth=2, params_hash=b"\x22" * 32,
                           engine_version=ENGINE_VERSION)  # fmt: skip


def test_every_spam_message_is_rejected_for_its_reason() -> None:
    network = NetworkId(31337, b"\x33" * 20)
    validator = ReportValidator(network, committee())
    rng = random.Random(7)
    for _ in range(50):
        for reason, payload in compute_spam_batch(rng, committee(), network, head=123):
            verdict = validator(payload)
            assert not verdict.accepted
            assert verdict.reason == reason


def test_perturbed_report_changes_only_the_root() -> None:
    leaves = [AccountLeaf(bytes([i]) * 20, 10 * i, 5 * i, 100 * i) for i in range(1, 6)]
    tree = MerkleTree(leaves)
    report = Report(
        committee().digest(), 10, b"\x01" * 32, b"\x22" * 32, tree.root, len(tree), b"\x05" * 32, b"\x06" * 32
    )
    output = RoundOutput(report=report, tree=tree, book=None, risk_tree=None)  # type: ignore[arg-type]
    wrong = compute_perturbed_report(output)
    assert wrong.accounts_root != report.accounts_root
    assert wrong.round_key == report.round_key and wrong.account_count == report.account_count
    assert compute_perturbed_report(output) == wrong  # consistently wrong: one digest per round
    assert Domain(31337, b"\x33" * 20)  # the domain type is untouched by the fault module


def test_colluding_rounds_understate_the_largest_maintenance_margin_the_same_on_every_colluder() -> None:
    leaves = [AccountLeaf(bytes([i]) * 20, 10 * i, m, 100 * i) for i, m in ((1, 50), (2, 90), (3, 90), (4, 7))]
    tree = MerkleTree(leaves)
    report = Report(
        committee().digest(), 10, b"\x01" * 32, b"\x22" * 32, tree.root, len(tree), b"\x05" * 32, b"\x06" * 32
    )
    honest = RoundOutput(report=report, tree=tree, book=None, risk_tree=None)  # type: ignore[arg-type]
    wrong = colluding_rounds(lambda *_: honest)(None, None, None, None)  # type: ignore[arg-type]
    num, den = COLLUDE_UNDERSTATEMENT
    changed = [(a, b) for a, b in zip(tree.leaves, wrong.tree.leaves, strict=True) if a != b]
    # exactly one leaf: the largest MM (the tie broken by the smaller account), only its MM, lowered
    assert changed == [(leaves[1], AccountLeaf(leaves[1].account, 20, 90 - 90 * num // den, 200))]
    # the served tree is the signed one, the round key and the risk arrays untouched
    assert wrong.report.accounts_root == wrong.tree.root != report.accounts_root
    assert wrong.report.round_key == report.round_key and wrong.report.risk_arrays_root == report.risk_arrays_root
    again = colluding_rounds(lambda *_: honest)(None, None, None, None)  # type: ignore[arg-type]
    assert again.report == wrong.report and tuple(again.tree.leaves) == tuple(wrong.tree.leaves)
    # no leaf with a positive MM: nothing to understate, the honest tree
    flat = MerkleTree([AccountLeaf(bytes([1]) * 20, 0, 0, 5)])
    assert compute_colluding_tree(flat) is flat


def test_faulty_node_lists() -> None:
    assert parse_faulty(["0,1,2:collude"], 4) == (((0, 1, 2), "collude"),)
    options = DevnetOptions(nodes=4, faulty=parse_faulty(["0,1,2:collude"], 4))
    assert [options.fault_of(i) for i in range(4)] == ["collude", "collude", "collude", None]
    # a count takes the last nodes not listed
    options = DevnetOptions(nodes=5, faulty=parse_faulty(["1,2:collude", "2:silent"], 5))
    assert [options.fault_of(i) for i in range(5)] == [None, "collude", "collude", "silent", "silent"]
    for bad in ("0,4:collude", "0,0:collude", "0,,1:collude", "a,1:collude", ",:collude"):
        with pytest.raises(InputError, match="--faulty"):
            parse_faulty([bad], 4)
    for bads in (["0,1:collude", "1:silent,"], ["0,1:collude", "1,2:silent"], ["0,1,2:collude", "2:slow"]):
        with pytest.raises(InputError, match="--faulty"):
            parse_faulty(bads, 4)


def test_faulty_option_parsing_and_assignment() -> None:
    assert parse_faulty(["1:equivocate", "2:silent"], 7) == ((1, "equivocate"), (2, "silent"))
    for bad in ("equivocate", "x:silent", "1:byzantine"):
        with pytest.raises(InputError, match="--faulty"):
            parse_faulty([bad], 4)
    with pytest.raises(InputError, match="more faulty nodes"):
        parse_faulty(["3:silent", "2:slow"], 4)
    options = DevnetOptions(nodes=4, faulty=((1, "wrong-value"),))
    assert [options.fault_of(i) for i in range(4)] == [None, None, None, "wrong-value"]


def test_fault_injection_is_unreachable_from_production_paths() -> None:
    src = Path(__file__).resolve().parents[3] / "src" / "pmoracle"
    for path in (src / "commands" / "node.py", src / "config" / "local.py", src / "node" / "daemon.py"):
        text = path.read_text()
        assert "node.faults" not in text and "FaultyNode" not in text and "--faulty" not in text
        assert not any(f'"{mode}"' in text for mode in FAULT_MODES)


def test_solver_node_has_no_test_hooks() -> None:
    import inspect

    from pmoracle.node.daemon import SolverNode, load_node

    hooks = ("make_report", "make_validator", "run_extra", "discover_peers", "release_signature", "_submit_evidence")
    assert not [name for name in hooks if hasattr(SolverNode, name)]
    assert list(inspect.signature(load_node).parameters) == ["config", "password"]


async def test_withholding_release_never_delivers() -> None:
    delivered: list[SignedReport] = []

    async def deliver(signed: SignedReport) -> None:
        delivered.append(signed)

    await WithholdingRelease().release(make_signed(4, 0, 50), deliver)
    assert delivered == []


async def test_delayed_release_delivers_late_without_blocking(autojump_clock: trio.testing.MockClock) -> None:
    delivered: list[float] = []

    async def deliver(signed: SignedReport) -> None:
        delivered.append(trio.current_time())

    slow = DelayedRelease(3.0)
    async with trio.open_nursery() as nursery:
        await nursery.start(slow.run)
        start = trio.current_time()
        await slow.release(make_signed(4, 0, 50), deliver)
        assert trio.current_time() == start and delivered == []  # the caller is not held up
        await trio.sleep(2.9)
        assert delivered == []
        await trio.sleep(0.2)
        assert delivered == [start + 3.0]
        nursery.cancel_scope.cancel()


async def test_equivocating_release_signs_a_second_digest_and_republishes_it(
    autojump_clock: trio.testing.MockClock,
) -> None:
    network = NetworkId.from_domain(FACTORY_DOMAIN)
    published: list[bytes] = []
    delivered: list[SignedReport] = []

    async def publish(payload: bytes) -> None:
        published.append(payload)

    async def deliver(signed: SignedReport) -> None:
        delivered.append(signed)

    honest = make_signed(4, 0, 50)
    equivocating = EquivocatingRelease(network, make_key(0), publish)
    async with trio.open_nursery() as nursery:
        await nursery.start(equivocating.run)
        await equivocating.release(honest, deliver)
        assert delivered == [honest]
        message = decode_message(published[0])
        assert isinstance(message, SignedReportMessage)
        second = message.signed
        # same signer and round key, another digest: evidence the registry accepts
        assert is_equivocation(FACTORY_DOMAIN, make_committee(4), compute_equivocation(FACTORY_DOMAIN, honest, second))
        await trio.sleep(EQUIVOCATION_REPUBLISH_FOR + 2 * EQUIVOCATION_REPUBLISH)
        republished = len(published)
        assert republished >= EQUIVOCATION_REPUBLISH_FOR / EQUIVOCATION_REPUBLISH and set(published) == {published[0]}
        await trio.sleep(10 * EQUIVOCATION_REPUBLISH)
        assert len(published) == republished  # given up after EQUIVOCATION_REPUBLISH_FOR
        nursery.cancel_scope.cancel()


class _Chain(ChainPort):
    def __init__(self) -> None:
        self.evidence: list[Evidence] = []

    async def transmit(self, certificate: QuorumCertificate) -> None:
        raise AssertionError("not used")

    async def submit_evidence(self, evidence: Evidence) -> None:
        self.evidence.append(evidence)

    async def read_latest_attested(self) -> AttestedRound | None:
        return None

    async def read_ejected_members(self) -> tuple[bytes, int] | None:
        return None


async def test_self_sparing_chain_submits_evidence_against_others_only() -> None:
    inner = _Chain()
    me = make_committee(4).members[0]
    chain = SelfSparingChain(inner, me)
    mine = compute_equivocation(FACTORY_DOMAIN, make_signed(4, 0, 50), make_signed(4, 0, 50, 1))
    theirs = compute_equivocation(FACTORY_DOMAIN, make_signed(4, 1, 50), make_signed(4, 1, 50, 1))
    my_deviation = Deviation(make_signed(4, 0, 60, 1), b"\x01" * 32)
    their_deviation = Deviation(make_signed(4, 2, 60, 1), b"\x01" * 32)
    for evidence in (mine, theirs, my_deviation, their_deviation):
        await chain.submit_evidence(evidence)
    assert inner.evidence == [theirs, their_deviation]
