"""Account leaves and the Merkle tree: proofs verify, tampering fails, vectors are current."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pmoracle.consensus.merkle import (
    EMPTY_ROOT,
    AccountLeaf,
    MerkleTree,
    compute_leaf_hash,
    encode_leaf,
    verify_proof,
)
from pmoracle.errors import InputError

leaves_strategy = st.lists(
    st.builds(
        AccountLeaf,
        account=st.binary(min_size=20, max_size=20),
        initial_margin=st.integers(0, 2**256 - 1),
        maintenance_margin=st.integers(0, 2**256 - 1),
        equity=st.integers(-(2**255), 2**255 - 1),
    ),
    max_size=40,
    unique_by=lambda leaf: leaf.account,
)


@settings(max_examples=60)
@given(leaves=leaves_strategy)
def test_every_proof_verifies_and_order_does_not_matter(leaves: list[AccountLeaf]) -> None:
    tree = MerkleTree(leaves)
    shuffled = list(leaves)
    random.Random(7).shuffle(shuffled)
    assert MerkleTree(shuffled).root == tree.root
    for leaf in leaves:
        assert verify_proof(tree.root, leaf, tree.proof(leaf.account))


def test_tampered_leaf_fails() -> None:
    rng = random.Random(3)
    leaves = [AccountLeaf(rng.randbytes(20), 10, 5, 100 - i) for i in range(9)]
    tree = MerkleTree(leaves)
    leaf = leaves[4]
    proof = tree.proof(leaf.account)
    forged = AccountLeaf(leaf.account, leaf.initial_margin, leaf.maintenance_margin, leaf.equity + 1)
    assert not verify_proof(tree.root, forged, proof)
    assert not verify_proof(tree.root, leaf, proof[:-1])


def test_empty_and_single_leaf_roots() -> None:
    assert MerkleTree([]).root == EMPTY_ROOT
    leaf = AccountLeaf(b"\x01" * 20, 1, 1, 1)
    assert MerkleTree([leaf]).root == compute_leaf_hash(leaf)
    assert MerkleTree([leaf]).proof(leaf.account) == []


def test_duplicate_account_rejected() -> None:
    leaf = AccountLeaf(b"\x01" * 20, 1, 1, 1)
    with pytest.raises(InputError, match="duplicate"):
        MerkleTree([leaf, AccountLeaf(b"\x01" * 20, 2, 2, 2)])


def test_unknown_account_has_no_proof() -> None:
    tree = MerkleTree([AccountLeaf(b"\x01" * 20, 1, 1, 1)])
    with pytest.raises(InputError, match="no leaf"):
        tree.proof(b"\x02" * 20)


def test_leaf_is_double_hashed_abi_encoding() -> None:
    from eth_abi import encode
    from eth_utils import keccak

    leaf = AccountLeaf(b"\x01" * 20, 3, 2, -1)
    inner = keccak(encode(["address", "uint256", "uint256", "int256"], [leaf.account, 3, 2, -1]))
    assert compute_leaf_hash(leaf) == keccak(inner)


@given(
    st.binary(min_size=20, max_size=20),
    st.integers(0, 2**256 - 1),
    st.integers(0, 2**256 - 1),
    st.integers(-(2**255), 2**255 - 1),
)
def test_leaf_encoding_equals_eth_abi_over_the_whole_range(account: bytes, im: int, mm: int, equity: int) -> None:
    from eth_abi import encode

    expected = encode(["address", "uint256", "uint256", "int256"], [account, im, mm, equity])
    assert encode_leaf(AccountLeaf(account, im, mm, equity)) == expected


@given(st.binary(max_size=300))
def test_fast_keccak_equals_eth_utils(data: bytes) -> None:
    from eth_utils import keccak as reference_keccak

    from pmoracle.consensus.hashing import keccak

    assert keccak(data) == reference_keccak(data)
