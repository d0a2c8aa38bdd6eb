"""IPortfolioMarginOracle on a real anvil: MarginOracle's reads for consuming protocols, the parameters document
published in a log, and the example consumer MarginGatedLender borrowing against attested free margin."""

from __future__ import annotations

import pathlib
from typing import Any

import pytest
from eth_utils import keccak, to_checksum_address
from web3 import Web3

from pmoracle.chain.contracts import load_artifact
from pmoracle.chain.deploy import deploy_contract, open_transmitter, set_committee, transact_fn
from pmoracle.config.params import default_params
from pmoracle.consensus.merkle import MerkleTree
from pmoracle.devnet.devchain import Devchain
from pmoracle.risk.params import parse_params
from pmoracle.risk.version import ENGINE_VERSION
from tests.integration.chain.contracts_support import (
    FINALITY_DEPTH,
    PARAMS_HASH,
    ROUND_PERIOD,
    USD,
    System,
    attest,
    deploy_system,
    dev_key,
    margin_of,
    revert_of,
)

ROOT = pathlib.Path(__file__).resolve().parents[3]
MAX_ROUND_AGE = 30
# dave: an MM no int256 equity reaches (liquidatable whatever his equity)
ALICE, BOB, CAROL, DAVE = (to_checksum_address(bytes([byte]) * 20) for byte in (0xA1, 0xB0, 0xC0, 0xD0))
DEFAULT = default_params()


@pytest.fixture(scope="module")
def system(anvil: Devchain) -> System:
    return deploy_system(anvil, n=4, params_hash=DEFAULT.params_hash, history_blocks=64, max_round_age=MAX_ROUND_AGE)


@pytest.fixture(scope="module")
def borrower(system: System) -> Any:
    """A funded dev account whose leaf is in the round (the lender proves the caller's own leaf)."""
    return open_transmitter(system.chain.url, dev_key(10))


@pytest.fixture(scope="module")
def round_(system: System, borrower: Any) -> tuple[int, MerkleTree]:
    """Attest one round: the borrower, alice, bob and carol."""
    leaves = [
        (borrower.address, 4_000 * USD, 2_500 * USD, 10_000 * USD),
        (ALICE, 4_000 * USD, 2_500 * USD, 10_000 * USD),
        (BOB, 3_000 * USD, 2_000 * USD, 1_999 * USD),
        (CAROL, 3_000 * USD, 2_000 * USD, 2_000 * USD),
        (DAVE, 2**256 - 1, 2**255, 2**255 - 1),
    ]
    block = system.anchor()
    return block, attest(system, block, leaves)


def deploy_lender(system: System, trusted_params_hash: bytes) -> Any:
    """Deploy the example consumer against the system's oracle, trusting ``trusted_params_hash``."""
    address = deploy_contract(
        system.owner, "MarginGatedLender", system.deployment.contracts["MarginOracle"], trusted_params_hash
    )
    return system.w3.eth.contract(address=address, abi=list(load_artifact("MarginGatedLender").abi))


@pytest.fixture(scope="module")
def lender(system: System) -> Any:
    return deploy_lender(system, DEFAULT.params_hash)


def test_before_any_round_the_latest_root_is_refused(system: System) -> None:
    oracle = system.oracle.functions
    assert revert_of(oracle.latestRoot(), system.owner.address) == ("NoAttestedRound", ())
    margin = (1, 1, 1)
    assert revert_of(oracle.marginOf(ALICE, margin, []), system.owner.address) == ("NoAttestedRound", ())
    assert oracle.paramsHash().call() == DEFAULT.params_hash
    assert oracle.paramsPublishedAt(DEFAULT.params_hash).call() == 0


def test_latest_root_is_the_attested_round(system: System, round_: tuple[int, MerkleTree]) -> None:
    block, tree = round_
    attested_in = system.w3.eth.get_block("latest")
    assert system.oracle.functions.latestRoot().call() == [block, attested_in["timestamp"], tree.root]


def test_margin_of_returns_the_proven_values_and_refuses_others(system: System, round_: tuple[int, MerkleTree]) -> None:
    block, tree = round_
    oracle = system.oracle.functions
    margin, proof = margin_of(tree, ALICE)
    assert oracle.marginOf(ALICE, margin, proof).call() == [*margin, block]
    forged = (margin[0], margin[1], margin[2] + 1)
    assert revert_of(oracle.marginOf(ALICE, forged, proof), ALICE) == ("InvalidMarginProof", (ALICE, block, tree.root))
    assert revert_of(oracle.isLiquidatable(BOB, forged, proof), ALICE)[0] == "InvalidMarginProof"


def test_is_liquidatable_is_equity_below_maintenance_margin(system: System, round_: tuple[int, MerkleTree]) -> None:
    _, tree = round_
    oracle = system.oracle.functions
    verdicts = [oracle.isLiquidatable(a, *margin_of(tree, a)).call() for a in (ALICE, BOB, CAROL, DAVE)]
    assert verdicts == [False, True, False, True]


def test_lender_lends_up_to_the_attested_free_margin(
    system: System, round_: tuple[int, MerkleTree], lender: Any, borrower: Any
) -> None:
    block, tree = round_
    margin, proof = margin_of(tree, borrower.address)
    receipt = transact_fn(borrower, lender.functions.borrow(5_000 * USD, margin, proof), label="borrow")
    (event,) = lender.events.Borrowed().process_receipt(system.w3.eth.get_transaction_receipt(receipt.tx_hash))
    assert dict(event["args"]) == {
        "account": borrower.address,
        "amount": 5_000 * USD,
        "debt": 5_000 * USD,
        "roundBlock": block,
    }
    transact_fn(borrower, lender.functions.borrow(1_000 * USD, margin, proof), label="borrow to the limit")
    assert lender.functions.debtOf(borrower.address).call() == 6_000 * USD
    # one more wei of debt than equity - IM covers is refused, naming the free margin and the debt it would reach
    assert revert_of(lender.functions.borrow(1, margin, proof), borrower.address) == (
        "InsufficientFreeMargin",
        (borrower.address, 6_000 * USD, 6_000 * USD + 1),
    )
    transact_fn(borrower, lender.functions.repay(2_000 * USD), label="repay")
    assert lender.functions.debtOf(borrower.address).call() == 4_000 * USD
    assert revert_of(lender.functions.repay(5_000 * USD), borrower.address) == (
        "RepayExceedsDebt",
        (borrower.address, 5_000 * USD, 4_000 * USD),
    )


def test_lender_refuses_a_liquidatable_account_a_forged_leaf_and_untrusted_params(
    system: System, round_: tuple[int, MerkleTree], lender: Any
) -> None:
    block, tree = round_
    bob_margin, bob_proof = margin_of(tree, BOB)
    assert revert_of(lender.functions.borrow(1, bob_margin, bob_proof), BOB) == ("AccountLiquidatable", (BOB,))
    # a leaf proven for another account is not the caller's
    alice_margin, alice_proof = margin_of(tree, ALICE)
    assert revert_of(lender.functions.borrow(1, alice_margin, alice_proof), BOB) == (
        "InvalidMarginProof",
        (BOB, block, tree.root),
    )
    wary = deploy_lender(system, PARAMS_HASH)
    assert revert_of(wary.functions.borrow(1, alice_margin, alice_proof), ALICE) == (
        "UntrustedParams",
        (DEFAULT.params_hash, PARAMS_HASH),
    )


def test_publish_params_emits_the_canonical_document_for_anyone_to_read(system: System) -> None:
    publisher = open_transmitter(system.chain.url, dev_key(11))
    oracle = system.oracle
    receipt = transact_fn(publisher, oracle.functions.publishParams(DEFAULT.canonical_bytes), label="publish")
    assert oracle.functions.paramsPublishedAt(DEFAULT.params_hash).call() == receipt.block_number
    # what a consuming protocol does: find the log by its indexed hash at the recorded block, check the hash
    topic = Web3.keccak(text="ParamsPublished(bytes32,bytes)")
    logs = system.w3.eth.get_logs(
        {
            "address": oracle.address,
            "topics": [topic, DEFAULT.params_hash],
            "fromBlock": receipt.block_number,
            "toBlock": receipt.block_number,
        }
    )
    (event,) = (oracle.events.ParamsPublished().process_log(log) for log in logs)
    assert event["args"]["paramsHash"] == DEFAULT.params_hash
    assert event["args"]["document"] == DEFAULT.canonical_bytes
    assert keccak(event["args"]["document"]) == DEFAULT.params_hash


@pytest.mark.parametrize(
    "document",
    [DEFAULT.canonical_bytes + b"\n", DEFAULT.canonical_bytes.replace(b":", b": ", 1), b""],
    ids=["trailing-newline", "not-compact", "empty"],
)
def test_publish_params_refuses_other_bytes_naming_their_hash(system: System, document: bytes) -> None:
    assert revert_of(system.oracle.functions.publishParams(document), system.owner.address) == (
        "UnknownParams",
        (keccak(document),),
    )


def test_a_round_older_than_the_max_age_is_refused(system: System, round_: tuple[int, MerkleTree], lender: Any) -> None:
    """Last in the module: it mines past the round's age."""
    block, tree = round_
    system.chain.rpc("anvil_mine", hex(MAX_ROUND_AGE + 1))
    margin, proof = margin_of(tree, ALICE)
    name, args = revert_of(system.oracle.functions.marginOf(ALICE, margin, proof), ALICE)
    assert (name, args[0], args[2]) == ("RoundTooOld", block, MAX_ROUND_AGE)
    assert revert_of(system.oracle.functions.isLiquidatable(ALICE, margin, proof), ALICE)[0] == "RoundTooOld"
    assert revert_of(lender.functions.borrow(1, margin, proof), ALICE)[0] == "RoundTooOld"
    # the round itself stays readable
    assert system.oracle.functions.latestRoot().call()[0] == block


def test_after_a_new_committee_every_installed_document_stays_publishable(
    system: System, round_: tuple[int, MerkleTree], lender: Any
) -> None:
    """Last in the module: it installs a committee under another document (CME SPAN's 16 scenarios)."""
    span16 = parse_params((ROOT / "examples" / "params" / "span16.toml").read_text())
    set_committee(
        system.owner,
        system.deployment,
        [to_checksum_address(m) for m in system.config.members],
        quorum=system.config.quorum,
        round_period=ROUND_PERIOD,
        finality_depth=FINALITY_DEPTH,
        params_hash=span16.params_hash,
        engine_version=ENGINE_VERSION,
    )
    oracle = system.oracle.functions
    assert oracle.paramsHash().call() == span16.params_hash
    for document in (span16.canonical_bytes, DEFAULT.canonical_bytes):  # the current config's, and a past one's
        receipt = transact_fn(system.owner, oracle.publishParams(document), label="publish")
        assert oracle.paramsPublishedAt(keccak(document)).call() == receipt.block_number
    # the lender trusts the default document only
    margin, proof = margin_of(round_[1], ALICE)
    assert revert_of(lender.functions.borrow(1, margin, proof), ALICE) == (
        "UntrustedParams",
        (span16.params_hash, DEFAULT.params_hash),
    )
