"""The contract agrees with the shared vectors: EIP-712 struct hashes and digests, Merkle leaves and proofs."""

from __future__ import annotations

import json
import pathlib
from typing import Any

import pytest
from eth_utils import to_checksum_address

from pmoracle.chain.contracts import load_artifact
from pmoracle.chain.deploy import connect, deploy_contract, open_transmitter
from pmoracle.consensus.report import Report
from pmoracle.devnet.devchain import Devchain
from tests.integration.chain.contracts_support import dev_key

VECTORS = pathlib.Path(__file__).resolve().parents[2] / "vectors"
ANVIL_MAX_CHAIN_ID = 2**64 - 1  # anvil's chain id is a u64


@pytest.fixture(scope="module")
def oracle(anvil: Devchain) -> Any:
    w3 = connect(anvil.url)
    address = deploy_contract(
        open_transmitter(anvil.url, dev_key(0)), "MarginOracle", to_checksum_address(bytes(20)), 16, 8
    )
    return w3.eth.contract(address=address, abi=load_artifact("MarginOracle").abi)


def _cases() -> list[dict[str, Any]]:
    return list(json.loads((VECTORS / "eip712.json").read_text())["cases"])


def test_struct_hash_matches_every_vector(oracle: Any) -> None:
    for case in _cases():
        report = Report.from_json(case["report"])
        assert "0x" + oracle.functions.hashReport(report.as_tuple()).call().hex() == case["structHash"]


def test_digest_matches_vectors_at_their_chain_and_address(anvil: Devchain, oracle: Any) -> None:
    """Run the oracle's code at each vector's address and chain id (anvil_setCode, anvil_setChainId)."""
    w3 = oracle.w3
    # the deployed code (the artifact's runtime code has zeros where the EIP-712 name/version immutables go)
    code = "0x" + bytes(w3.eth.get_code(oracle.address)).hex()
    checked = 0
    try:
        for case in _cases():
            if case["chainId"] > ANVIL_MAX_CHAIN_ID:
                continue  # covered by the struct hash test; the domain separator is checked in Python
            anvil.rpc("anvil_setChainId", case["chainId"])
            address = to_checksum_address(case["verifyingContract"])
            anvil.rpc("anvil_setCode", address, code)
            at = w3.eth.contract(address=address, abi=oracle.abi)
            report = Report.from_json(case["report"])
            assert "0x" + at.functions.domainSeparator().call().hex() == case["domainSeparator"]
            assert "0x" + at.functions.reportDigest(report.as_tuple()).call().hex() == case["digest"]
            checked += 1
    finally:
        anvil.rpc("anvil_setChainId", anvil.chain_id)
    assert checked >= 6


def test_every_merkle_vector_leaf_verifies_on_chain(oracle: Any) -> None:
    trees = json.loads((VECTORS / "merkle.json").read_text())["trees"]
    proven = 0
    for tree in trees:
        root = bytes.fromhex(tree["root"][2:])
        for leaf in tree["leaves"]:
            values = (
                to_checksum_address(leaf["account"]),
                int(leaf["initialMargin"]),
                int(leaf["maintenanceMargin"]),
                int(leaf["equity"]),
            )
            proof = [bytes.fromhex(p[2:]) for p in leaf["proof"]]
            assert "0x" + oracle.functions.computeLeaf(*values).call().hex() == leaf["leafHash"]
            assert oracle.functions.isLeafOf(root, *values, proof).call() is True
            # one changed value, or the empty root, must not verify
            assert oracle.functions.isLeafOf(root, values[0], values[1] + 1, *values[2:], proof).call() is False
            assert oracle.functions.isLeafOf(bytes(32), *values, proof).call() is False
            proven += 1
    assert proven == sum(len(t["leaves"]) for t in trees) > 40
