"""MarginOracle on a real anvil: attest a quorum-signed round, prove leaves, and refuse every bad certificate."""

from __future__ import annotations

import dataclasses
import json
import pathlib

import pytest
from coincurve import PrivateKey
from eth_utils import keccak, to_canonical_address, to_checksum_address
from hypothesis import given, settings
from hypothesis import strategies as st

from pmoracle.chain.deploy import Deployment, connect, deploy, transact_fn
from pmoracle.consensus.merkle import MerkleTree
from pmoracle.consensus.report import Domain, sign_report
from pmoracle.devnet.devchain import Devchain
from tests.integration.chain.contracts_support import System, deploy_system, dev_key, make_tree, revert_of

MAX_ROUND_AGE = 30
SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141


@pytest.fixture(scope="module")
def system(anvil: Devchain) -> System:
    return deploy_system(anvil, n=4, history_blocks=64, max_round_age=MAX_ROUND_AGE)


@pytest.fixture(scope="module")
def tree() -> MerkleTree:
    return make_tree(seed=1, count=37)


def attest(system: System, tree: MerkleTree, members: tuple[int, ...] = (0, 1, 2)) -> int:
    """Attest ``tree`` at a fresh anchor block signed by ``members``; return the block number."""
    block = system.anchor()
    args = system.certificate(system.report(block, tree), members)
    transact_fn(system.owner, system.oracle.functions.attest(*args), label="attest")
    return block


def verify_leaf(system: System, tree: MerkleTree, index: int, proof: list[bytes] | None = None) -> object:
    leaf = tree.leaves[index]
    return system.oracle.functions.verifyMargin(
        to_checksum_address(leaf.account),
        leaf.initial_margin,
        leaf.maintenance_margin,
        leaf.equity,
        tree.proof(leaf.account) if proof is None else proof,
    )


def test_config_digest_matches_python_committee_config(system: System) -> None:
    assert system.registry.functions.configDigest().call() == system.config.digest()
    assert system.oracle.functions.configDigest().call() == system.config.digest()
    assert [to_canonical_address(m) for m in system.oracle.functions.members().call()] == list(system.config.members)
    assert system.oracle.functions.quorum().call() == 3


def test_no_round_before_the_first_attestation(system: System, tree: MerkleTree) -> None:
    assert revert_of(verify_leaf(system, tree, 0), system.owner.address)[0] == "NoAttestedRound"


def test_attested_round_is_stored_and_every_leaf_verifies(system: System, tree: MerkleTree) -> None:
    block = system.anchor()
    report = system.report(block, tree)
    receipt = transact_fn(
        system.owner, system.oracle.functions.attest(*system.certificate(report, (0, 2, 3))), label="attest"
    )
    (event,) = system.oracle.events.RoundAttested().process_receipt(
        system.w3.eth.get_transaction_receipt(receipt.tx_hash)
    )
    assert event["args"]["blockNumber"] == block
    assert event["args"]["accountsRoot"] == tree.root
    assert event["args"]["signerBitmap"] == 0b1101
    latest = system.oracle.functions.latestRound().call()
    assert latest[0] == block and latest[1] == tree.root and latest[3] == system.config.digest()
    assert latest[5] == len(tree)
    for i in (0, 1, 17, len(tree) - 1):
        assert verify_leaf(system, tree, i).call() == block
    leaf = tree.leaves[5]
    args = (leaf.account, leaf.initial_margin, leaf.maintenance_margin, leaf.equity, tree.proof(leaf.account))
    system.oracle.functions.verifyMarginAt(block, to_checksum_address(args[0]), *args[1:]).call()


def test_bad_proof_and_wrong_values_are_refused(system: System, tree: MerkleTree) -> None:
    attest(system, tree)
    leaf = tree.leaves[3]
    proof = tree.proof(leaf.account)
    proof[1] = keccak(proof[1])
    name, args = revert_of(verify_leaf(system, tree, 3, proof), system.owner.address)
    assert name == "InvalidMarginProof" and args[0] == to_checksum_address(leaf.account)
    lying = system.oracle.functions.verifyMargin(
        to_checksum_address(leaf.account),
        leaf.initial_margin,
        leaf.maintenance_margin,
        leaf.equity + 1,
        tree.proof(leaf.account),
    )
    assert revert_of(lying, system.owner.address)[0] == "InvalidMarginProof"


def test_signature_rejections(system: System, tree: MerkleTree) -> None:
    block = system.anchor()
    report = system.report(block, tree)
    rep, bitmap, sigs = system.certificate(report, (0, 1, 2))
    sender = system.owner.address
    call = system.oracle.functions.attest

    # bad signature: r = 0 makes ecrecover fail (RecoverError.InvalidSignature = 1)
    bad = [sigs[0], bytes(64) + b"\x1b", sigs[2]]
    assert revert_of(call(rep, bitmap, bad), sender) == ("InvalidSignature", (1, 1, bytes(32)))
    # malleable high-s twin of a valid signature (RecoverError.InvalidSignatureS = 3)
    r, s, v = sigs[1][:32], int.from_bytes(sigs[1][32:64], "big"), sigs[1][64]
    twin = r + (SECP256K1_N - s).to_bytes(32, "big") + bytes([55 - v])
    name, args = revert_of(call(rep, bitmap, [sigs[0], twin, sigs[2]]), sender)
    assert (name, args[:2]) == ("InvalidSignature", (1, 3))
    # wrong length
    assert revert_of(call(rep, bitmap, [sigs[0], sigs[1][:64], sigs[2]]), sender)[1][:2] == (1, 2)
    # a non-member's valid signature in member 2's place
    outsider = sign_report(system.domain, report, PrivateKey(keccak(text="outsider")).secret).signature
    name, args = revert_of(call(rep, bitmap, [sigs[0], sigs[1], outsider]), sender)
    assert name == "SignerMismatch" and args[0] == 2
    assert to_canonical_address(args[1]) == system.config.members[2]
    # duplicate signer: member 0's signature also claimed for member 1
    name, args = revert_of(call(rep, bitmap, [sigs[0], sigs[0], sigs[2]]), sender)
    assert name == "SignerMismatch" and args[0] == 1 and to_canonical_address(args[2]) == system.config.members[0]
    # the certificate itself is good
    call(rep, bitmap, sigs).call({"from": sender}, block_identifier="pending")


def test_quorum_and_bitmap_rejections(system: System, tree: MerkleTree) -> None:
    block = system.anchor()
    rep, _, sigs = system.certificate(system.report(block, tree), (0, 1, 2))
    sender = system.owner.address
    call = system.oracle.functions.attest
    assert revert_of(call(rep, 0b011, sigs[:2]), sender) == ("BelowQuorum", (2, 3))
    assert revert_of(call(rep, 0b10011, sigs), sender) == ("SignerOutOfRange", (0b10011, 4))
    assert revert_of(call(rep, 0b1111, sigs), sender) == ("SignatureCountMismatch", (3, 4))


def test_report_signed_for_another_chain_or_contract_is_refused(system: System, tree: MerkleTree) -> None:
    block = system.anchor()
    report = system.report(block, tree)
    other_chain = Domain(chain_id=system.deployment.chain_id + 1, verifying_contract=system.domain.verifying_contract)
    other_contract = Domain(chain_id=system.deployment.chain_id, verifying_contract=keccak(text="other")[:20])
    for domain in (other_chain, other_contract):
        args = system.certificate(report, (0, 1, 2), domain=domain)
        name, err = revert_of(system.oracle.functions.attest(*args), system.owner.address)
        assert name == "SignerMismatch" and err[0] == 0


def test_digest_block_and_hash_rejections(system: System, tree: MerkleTree) -> None:
    last = attest(system, tree)
    sender = system.owner.address
    call = system.oracle.functions.attest
    # replaying the exact attested certificate
    block = system.anchor()
    replay = system.certificate(system.report(last, tree), (0, 1, 2))
    assert revert_of(call(*replay), sender) == ("StaleBlockNumber", (last, last))
    older = system.certificate(system.report(last - 1, tree), (0, 1, 2))
    assert revert_of(call(*older), sender) == ("StaleBlockNumber", (last - 1, last))
    # wrong config digest
    wrong = keccak(text="another config")
    args = system.certificate(system.report(block, tree, config_digest=wrong), (0, 1, 2))
    assert revert_of(call(*args), sender) == ("ConfigDigestMismatch", (wrong, system.config.digest()))
    # a paramsHash other than the one the config commits to (even signed by a quorum)
    other_params = keccak(text="other params")
    args = system.certificate(system.report(block, tree, params_hash=other_params), (0, 1, 2))
    assert revert_of(call(*args), sender) == ("ParamsHashMismatch", (other_params, system.config.params_hash))
    # wrong block hash
    fake = keccak(text="fork")
    args = system.certificate(system.report(block, tree, block_hash=fake), (0, 1, 2))
    name, err = revert_of(call(*args), sender)
    assert (name, err[:2]) == ("BlockHashMismatch", (block, fake))
    # a block too old for blockhash (more than 256 back) reads as zero
    system.chain.rpc("anvil_mine", hex(257))
    args = system.certificate(system.report(block, tree), (0, 1, 2))
    assert revert_of(call(*args), sender)[1][2] == bytes(32)
    # a future block has no hash either
    head = int(system.w3.eth.block_number)
    args = system.certificate(dataclasses.replace(system.report(block, tree), block_number=head + 5), (0, 1, 2))
    assert revert_of(call(*args), sender)[0] == "BlockHashMismatch"


def test_round_older_than_max_age_is_refused(system: System, tree: MerkleTree) -> None:
    block = attest(system, tree)
    assert verify_leaf(system, tree, 0).call() == block
    system.chain.rpc("anvil_mine", hex(MAX_ROUND_AGE + 1))
    name, args = revert_of(verify_leaf(system, tree, 0), system.owner.address)
    assert name == "RoundTooOld" and args[0] == block and args[1] > MAX_ROUND_AGE


def test_named_round_lookup(system: System, tree: MerkleTree) -> None:
    first = attest(system, tree)
    other = make_tree(seed=2, count=5)
    second = attest(system, other)
    leaf = tree.leaves[2]
    values = (to_checksum_address(leaf.account), leaf.initial_margin, leaf.maintenance_margin, leaf.equity)
    system.oracle.functions.verifyMarginAt(first, *values, tree.proof(leaf.account)).call()
    latest = system.oracle.functions.verifyMargin(*values, tree.proof(leaf.account))
    assert revert_of(latest, system.owner.address)[0] == "InvalidMarginProof"
    missing = system.oracle.functions.verifyMarginAt(first + 1, *values, tree.proof(leaf.account))
    assert revert_of(missing, system.owner.address) == ("RoundNotFound", (first + 1,))
    assert system.oracle.functions.roundAt(second).call()[1] == other.root


def test_only_the_registry_installs_committees(system: System) -> None:
    fn = system.oracle.functions.setCommittee(bytes(32), 9, bytes(32), [system.owner.address], 1, 0, 0)
    assert revert_of(fn, system.owner.address) == ("NotRegistry", (system.owner.address,))


def test_one_more_signature_costs_under_7k_gas(system: System, tree: MerkleTree) -> None:
    """Gas is deterministic: the 4th signature's cost is the per-signature cost of docs/gas.md (target <= 7k)."""
    used = []
    for members in ((0, 1, 2), (0, 1, 2, 3)):
        block = system.anchor()
        args = system.certificate(system.report(block, tree), members)
        used.append(transact_fn(system.owner, system.oracle.functions.attest(*args), label="attest").gas_used)
    assert 3_000 < used[1] - used[0] <= 7_000


def test_deploy_writes_the_deployment_json(anvil: Devchain, tmp_path: pathlib.Path) -> None:
    path = tmp_path / "deployment.json"
    deployment = deploy(anvil.url, dev_key(0), params_hash=bytes(32), round_period=1, finality_depth=0, output=path)
    saved = json.loads(path.read_text())
    assert saved["chainId"] == 31337 and saved["deployBlock"] == deployment.deploy_block
    assert set(saved["contracts"]) == {
        "MarketFeeds", "MarginAccounts", "Exchange", "Liquidator", "SolverRegistry", "MarginOracle", "USDC", "WBTC",
        "WETH",
    }  # fmt: skip
    assert Deployment.load(path) == deployment
    w3 = connect(anvil.url)
    for name, address in saved["contracts"].items():
        assert len(w3.eth.get_code(address)) > 0, name
    assert deployment.contract(w3, "SolverRegistry").functions.oracle().call() == saved["contracts"]["MarginOracle"]
    accounts = deployment.contract(w3, "MarginAccounts").functions
    assert accounts.oracle().call() == saved["contracts"]["MarginOracle"]
    # USDC is the settlement token (cash); the others are collateral; the Exchange alone applies trades
    assert accounts.settlementToken().call() == saved["contracts"]["USDC"]
    assert accounts.collateralTokens().call() == [saved["contracts"][k] for k in ("WBTC", "WETH")]
    assert accounts.hasRole(keccak(text="EXCHANGE_ROLE"), saved["contracts"]["Exchange"]).call()
    assert accounts.hasRole(keccak(text="LIQUIDATOR_ROLE"), saved["contracts"]["Liquidator"]).call()
    exchange = deployment.contract(w3, "Exchange").functions
    assert (exchange.ledger().call(), exchange.feeds().call()) == (
        saved["contracts"]["MarginAccounts"],
        saved["contracts"]["MarketFeeds"],
    )
    assert [deployment.contract(w3, k).functions.decimals().call() for k in ("USDC", "WBTC", "WETH")] == [6, 8, 18]
    # no committee yet: attest is refused with NoCommittee
    oracle = deployment.contract(w3, "MarginOracle")
    report = (bytes(32), 1, bytes(32), bytes(32), bytes(32), 0, bytes(32), bytes(32))
    assert revert_of(oracle.functions.attest(report, 0, []), w3.eth.accounts[0]) == ("NoCommittee", ())


def test_any_quorum_of_distinct_members_is_accepted_and_nothing_less(system: System, tree: MerkleTree) -> None:
    """Property: a certificate is accepted iff it has >= quorum signatures, one per set bit, in bitmap order."""
    block = system.anchor()
    report = system.report(block, tree)
    sender = system.owner.address

    @settings(max_examples=40, deadline=None, derandomize=True)
    @given(signers=st.lists(st.integers(0, 3), max_size=6), shuffle=st.booleans())
    def check(signers: list[int], shuffle: bool) -> None:
        distinct = sorted(set(signers))
        rep, bitmap, sigs = system.certificate(report, distinct)
        if shuffle and len(sigs) > 1:
            sigs = sigs[1:] + sigs[:1]
        fn = system.oracle.functions.attest(rep, bitmap, sigs)
        if len(distinct) < 3:
            assert revert_of(fn, sender) == ("BelowQuorum", (len(distinct), 3))
        elif shuffle:
            assert revert_of(fn, sender)[0] == "SignerMismatch"
        else:
            fn.call({"from": sender}, block_identifier="pending")

    check()
