"""Deterministic test committees for p2p tests, the peer demo and the gossip benchmark (never for production).

The signing keys are derived from a public label, so anyone can forge these members' signatures: they exist so
that separate processes agree on a committee without sharing files.
"""

from __future__ import annotations

from dataclasses import dataclass

from eth_utils import keccak

from pmoracle.consensus.committee import CommitteeConfig, compute_byzantine_quorum
from pmoracle.consensus.report import Report, address_of
from pmoracle.p2p.codec import NetworkId
from pmoracle.risk.version import ENGINE_VERSION

TEST_CHAIN_ID = 31337
TEST_ORACLE = bytes.fromhex("5fbdb2315678afecb367f032d93f642f64180aa3")
TEST_REGISTRY = bytes.fromhex("e7f1725e7734ce288f8367e1bb143e90bb3f0512")


@dataclass(frozen=True, slots=True)
class TestCommittee:
    """A committee of ``n`` members with their (public, derived) signing and peer keys."""

    __test__ = False  # not a pytest test class

    network: NetworkId
    config: CommitteeConfig
    signing_keys: tuple[bytes, ...]
    peer_secrets: tuple[bytes, ...]

    def report(self, block_number: int, accounts_root: bytes | None = None) -> Report:
        """Return the honest report of ``block_number`` (or one with a different ``accounts_root``)."""
        root = accounts_root if accounts_root is not None else keccak(b"accounts" + block_number.to_bytes(8, "big"))
        return Report(
            config_digest=self.config.digest(),
            block_number=block_number,
            block_hash=keccak(b"block" + block_number.to_bytes(8, "big")),
            params_hash=self.config.params_hash,
            accounts_root=root,
            account_count=1000,
            risk_arrays_root=keccak(b"risk arrays" + block_number.to_bytes(8, "big")),
            market_hash=keccak(b"market" + block_number.to_bytes(8, "big")),
        )


def make_test_committee(n: int, label: str = "pmoracle-test") -> TestCommittee:
    """Return the deterministic test committee of size ``n`` (keys derived from ``label`` and the index)."""
    signing = tuple(keccak(f"{label}/signer/{i}".encode()) for i in range(n))
    peers = tuple(keccak(f"{label}/peer/{i}".encode()) for i in range(n))
    config = CommitteeConfig(
        chain_id=TEST_CHAIN_ID,
        registry=TEST_REGISTRY,
        version=1,
        members=tuple(address_of(key) for key in signing),
        quorum=compute_byzantine_quorum(n),
        round_period=10,
        finality_depth=2,
        params_hash=keccak(b"test-params"),
        engine_version=ENGINE_VERSION,
    )
    return TestCommittee(NetworkId(TEST_CHAIN_ID, TEST_ORACLE), config, signing, peers)
