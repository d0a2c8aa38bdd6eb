"""Shared helpers for chain-layer integration tests: anvil's funded dev keys and contract factories."""

from __future__ import annotations

from typing import Any

from web3 import Web3

# Private keys of anvil's default mnemonic ("test test ... junk"), accounts 0..5.
DEV_KEYS = (
    "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80",
    "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d",
    "0x5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a",
    "0x7c852118294e51e653712a81e05800f419141751be58f605c371e15141b007a6",
    "0x47e179ec197488593b187f80a00eb0da91f1b9d0b13f8733639f19c30a34926a",
    "0x8b3a350cf5c34c9194ca85829a2df0ec3153be0318b5e2d3348e872092edffba",
)

_ENCODER = Web3()  # no provider: used only to encode calls and build contract objects


def contract_at(abi: list[dict[str, Any]], address: str) -> Any:
    """Return a web3 contract object (for encoding calls; requests go through ChainClient)."""
    return _ENCODER.eth.contract(address=Web3.to_checksum_address(address), abi=abi)
