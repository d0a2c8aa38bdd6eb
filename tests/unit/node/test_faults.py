"""The test-only fault injector: its pieces that need no running node, and that production cannot reach it."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from pmoracle.commands.devnet import parse_faulty
from pmoracle.consensus.committee import CommitteeConfig
from pmoracle.consensus.merkle import AccountLeaf, MerkleTree
from pmoracle.consensus.report import Domain, Report
from pmoracle.devnet.cluster import DevnetOptions
from pmoracle.devnet.faults import FAULT_MODES, compute_perturbed_report, compute_spam_batch
from pmoracle.errors import InputError
from pmoracle.node.round import RoundOutput
from pmoracle.p2p.codec import NetworkId
from pmoracle.p2p.validator import ReportValidator
from pmoracle.risk.version import ENGINE_VERSION

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
    report = Report(committee().digest(), 10, b"\x01" * 32, b"\x22" * 32, tree.root, len(tree))
    output = RoundOutput(report=report, tree=tree, book=None)  # type: ignore[arg-type]
    wrong = compute_perturbed_report(output)
    assert wrong.accounts_root != report.accounts_root
    assert wrong.round_key == report.round_key and wrong.account_count == report.account_count
    assert compute_perturbed_report(output) == wrong  # consistently wrong: one digest per round
    assert Domain(31337, b"\x33" * 20)  # the domain type is untouched by the fault module


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
