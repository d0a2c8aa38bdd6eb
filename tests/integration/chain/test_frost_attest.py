"""MarginOracle.attestFrost on a real anvil: a committee registered with the group key of a real DKG attests a
round with one t-of-n FROST signature of the report (pure FROST code), refuses a wrong key, message or scalar with
custom errors, and keeps the ECDSA certificate as the fallback (the node's chain port falls back by itself); a
keyless committee refuses FROST."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
import trio

from pmoracle.chain.client import ChainClient
from pmoracle.chain.deploy import decode_committee_view, set_committee, transact_fn
from pmoracle.consensus.certificate import QuorumCertificate
from pmoracle.consensus.frost import ORDER
from pmoracle.consensus.frost_evm import EvmGroupKey, EvmSignature
from pmoracle.consensus.merkle import MerkleTree
from pmoracle.consensus.report import Report, compute_report_digest
from pmoracle.devnet.devchain import Devchain
from pmoracle.node.chain_port import OracleChainPort
from pmoracle.node.metrics import create_node_metrics
from pmoracle.risk.version import ENGINE_VERSION
from pmoracle.testing.frost import run_test_dkg, sign_in_process
from tests.integration.chain.contracts_support import (
    FINALITY_DEPTH,
    PARAMS_HASH,
    ROUND_PERIOD,
    System,
    deploy_system,
    make_tree,
    revert_of,
)

THRESHOLD = 3  # the committee's quorum at n = 4
SEED = b"frost-attest"
SCHEME_FROST = 1


@pytest.fixture(scope="module")
def dkg() -> dict[int, Any]:
    return run_test_dkg(THRESHOLD, 4, SEED)


@pytest.fixture(scope="module")
def system(anvil: Devchain, dkg: dict[int, Any]) -> System:
    """A 4-member committee, then the same members re-installed with their DKG's group key."""
    system = deploy_system(anvil, n=4, history_blocks=64, max_round_age=30)
    key = EvmGroupKey.from_compressed(dkg[1].group_public_key)
    set_committee(
        system.owner, system.deployment, [m.hex() for m in system.config.members], quorum=THRESHOLD,
        round_period=ROUND_PERIOD, finality_depth=FINALITY_DEPTH, params_hash=PARAMS_HASH,
        engine_version=ENGINE_VERSION, group_key=key,
    )  # fmt: skip
    config, digest = decode_committee_view(system.registry.functions.committee().call())
    assert config.group_key == key
    assert config.digest() == digest, "the registry and CommitteeConfig disagree on a keyed configDigest"
    return dataclasses.replace(system, config=config)


@pytest.fixture(scope="module")
def tree() -> MerkleTree:
    return make_tree(seed=16, count=9)


def frost_args(system: System, report: Report, signature: EvmSignature, bitmap: int = 0b0111) -> Any:
    """Return the attestFrost call of ``report`` with ``signature``."""
    return system.oracle.functions.attestFrost(report.as_frost_tuple(), bitmap, *signature.to_words())


def sign(system: System, dkg: dict[int, Any], report: Report, signers: tuple[int, ...] = (1, 2, 4)) -> EvmSignature:
    """Return the t-of-n FROST signature of the report's EIP-712 digest by DKG identifiers ``signers``."""
    message = compute_report_digest(system.domain, report)
    return EvmSignature.from_signature(sign_in_process(dkg, signers, message, SEED + bytes(signers)))


def test_a_t_of_n_frost_signature_attests_the_round(system: System, dkg: dict[int, Any], tree: MerkleTree) -> None:
    block = system.anchor()
    report = system.report(block, tree)
    receipt = transact_fn(system.owner, frost_args(system, report, sign(system, dkg, report)), label="attestFrost")
    round_ = system.oracle.functions.roundAt(block).call()
    assert round_[1] == tree.root and round_[2] == compute_report_digest(system.domain, report)
    assert round_[8] == 0b0111
    (event,) = system.oracle.events.RoundAttested().process_receipt(
        system.w3.eth.get_transaction_receipt(receipt.tx_hash)
    )
    assert event["args"]["scheme"] == SCHEME_FROST and event["args"]["signerBitmap"] == 0b0111
    assert system.oracle.functions.lastBlockNumber().call() == block


def test_wrong_key_message_or_scalar_is_refused(system: System, dkg: dict[int, Any], tree: MerkleTree) -> None:
    block = system.anchor()
    report = system.report(block, tree)
    sender = system.owner.address
    good = sign(system, dkg, report)
    other_dkg = run_test_dkg(THRESHOLD, 4, b"another committee")
    wrong_key = sign(system, other_dkg, report)
    assert revert_of(frost_args(system, report, wrong_key), sender) == ("InvalidFrostSignature", (5,))
    other = dataclasses.replace(report, accounts_root=bytes(32))
    wrong_message = sign(system, dkg, other)
    assert revert_of(frost_args(system, report, wrong_message), sender) == ("InvalidFrostSignature", (5,))
    tampered = dataclasses.replace(good, z=(good.z + 1) % ORDER)
    assert revert_of(frost_args(system, report, tampered), sender) == ("InvalidFrostSignature", (5,))
    assert revert_of(frost_args(system, report, dataclasses.replace(good, z=ORDER)), sender) == (
        "InvalidFrostSignature",
        (2,),
    )
    assert revert_of(frost_args(system, report, good, bitmap=0b0011), sender) == ("BelowQuorum", (2, THRESHOLD))
    # below the threshold the aggregate is no signature at all
    two = sign(system, dkg, report, signers=(1, 2))
    assert revert_of(frost_args(system, report, two), sender) == ("InvalidFrostSignature", (5,))
    frost_args(system, report, good).call({"from": sender}, block_identifier="pending")


def test_a_report_of_another_config_block_or_round_is_refused(
    system: System, dkg: dict[int, Any], tree: MerkleTree
) -> None:
    """attestFrost takes the config digest, parameters hash and block hash from the chain: a report signed with
    other ones is a wrong signature; an unknown block hash and a stale block are named."""
    block = system.anchor()
    report = system.report(block, tree)
    sender = system.owner.address
    for field, value in (("config_digest", b"\x01" * 32), ("params_hash", b"\x02" * 32), ("block_hash", b"\x03" * 32)):
        other = dataclasses.replace(report, **{field: value})
        assert revert_of(frost_args(system, other, sign(system, dkg, other)), sender) == ("InvalidFrostSignature", (5,))
    future = dataclasses.replace(report, block_number=block + 50)
    assert revert_of(frost_args(system, future, sign(system, dkg, future)), sender) == (
        "BlockHashUnknown",
        (block + 50,),
    )
    transact_fn(system.owner, frost_args(system, report, sign(system, dkg, report)), label="attestFrost")
    assert revert_of(frost_args(system, report, sign(system, dkg, report)), sender) == (
        "StaleBlockNumber",
        (block, block),
    )


def test_the_ecdsa_certificate_stays_the_fallback(system: System, tree: MerkleTree) -> None:
    block = system.anchor()
    args = system.certificate(system.report(block, tree), (0, 1, 3))
    receipt = transact_fn(system.owner, system.oracle.functions.attest(*args), label="attest")
    (event,) = system.oracle.events.RoundAttested().process_receipt(
        system.w3.eth.get_transaction_receipt(receipt.tx_hash)
    )
    assert event["args"]["scheme"] == 0 and event["args"]["signerBitmap"] == 0b1011


def test_a_keyless_committee_refuses_frost(anvil: Devchain, dkg: dict[int, Any], tree: MerkleTree) -> None:
    keyless = deploy_system(anvil, n=4)
    assert keyless.config.group_key is None
    assert keyless.registry.functions.groupKey().call() == [0, 0]
    report = keyless.report(keyless.anchor(), tree)
    version = keyless.config.version
    assert revert_of(frost_args(keyless, report, sign(keyless, dkg, report)), keyless.owner.address) == (
        "NoGroupKey",
        (version,),
    )


def _scheme_of(system: System, block: int) -> int:
    """Return the scheme of the RoundAttested log of ``block``."""
    (log,) = system.oracle.events.RoundAttested().get_logs(from_block=block, argument_filters={"blockNumber": block})
    return int(log["args"]["scheme"])


def test_the_chain_port_sends_frost_and_falls_back_to_ecdsa(
    system: System, dkg: dict[int, Any], tree: MerkleTree
) -> None:
    port = OracleChainPort(ChainClient([system.chain.url]), system.owner, system.deployment, create_node_metrics())

    def certificate(block: int) -> tuple[QuorumCertificate, Report]:
        report = system.report(block, tree)
        _, bitmap, signatures = system.certificate(report, (0, 1, 2))
        return QuorumCertificate(report, bitmap, tuple(signatures)), report

    first, report = certificate(system.anchor())
    trio.run(port.transmit, first, sign(system, dkg, report))
    assert _scheme_of(system, report.block_number) == SCHEME_FROST
    second, report = certificate(system.anchor())
    wrong = sign(system, dkg, dataclasses.replace(report, accounts_root=bytes(32)))
    trio.run(port.transmit, second, wrong)  # attestFrost refused (InvalidFrostSignature): the ECDSA certificate lands
    assert _scheme_of(system, report.block_number) == 0
    third, report = certificate(system.anchor())
    trio.run(port.transmit, third)  # no FROST signature: ECDSA directly
    assert _scheme_of(system, report.block_number) == 0
    assert system.oracle.functions.lastBlockNumber().call() == report.block_number
