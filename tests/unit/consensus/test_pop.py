"""Proof of possession: the digest is EIP-191 over popHash, checked independently with eth-account."""

from __future__ import annotations

import pytest
from eth_account import Account
from eth_account.messages import encode_defunct
from eth_utils import keccak

from pmoracle.consensus.pop import compute_pop_hash, recover_pop_signer, sign_proof_of_possession
from pmoracle.consensus.report import address_of
from pmoracle.errors import InputError

REGISTRY = bytes.fromhex("e7f1725e7734ce288f8367e1bb143e90bb3f0512")
REGISTRANT = bytes.fromhex("70997970c51812dc3a010c7d01b50e0d17dc79c8")
KEY = keccak(text="pop-test-key")


def test_eth_account_recovers_the_signing_key_from_the_proof() -> None:
    proof = sign_proof_of_possession(31337, REGISTRY, REGISTRANT, KEY)
    message = encode_defunct(primitive=compute_pop_hash(31337, REGISTRY, REGISTRANT))
    assert Account.recover_message(message, signature=proof) == Account.from_key(KEY).address
    assert Account.sign_message(message, KEY).signature == proof


def test_proof_is_bound_to_registrant_chain_and_registry() -> None:
    proof = sign_proof_of_possession(31337, REGISTRY, REGISTRANT, KEY)
    assert recover_pop_signer(31337, REGISTRY, REGISTRANT, proof) == address_of(KEY)
    assert recover_pop_signer(1, REGISTRY, REGISTRANT, proof) != address_of(KEY)
    assert recover_pop_signer(31337, REGISTRANT, REGISTRY, proof) != address_of(KEY)


def test_malformed_addresses_are_refused() -> None:
    with pytest.raises(InputError, match="registrant"):
        compute_pop_hash(1, REGISTRY, b"\x01" * 19)
