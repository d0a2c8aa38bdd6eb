"""Event topics come from the committed ABIs: the canonical signature, structs as tuples."""

from __future__ import annotations

import pytest
from eth_utils import keccak

from pmoracle.chain.contracts import ArtifactError, event_topic


@pytest.mark.parametrize(
    ("contract", "event", "signature"),
    [
        ("MarketFeeds", "IndexSet", "IndexSet(bytes32,uint256,int256,uint64)"),
        ("SolverRegistry", "Slashed", "Slashed(address,uint8,bytes32,uint64,uint256,address,uint256)"),
        ("Liquidator", "Bid", "Bid(address,address,uint256,uint256,int256,uint256,bool)"),
        (
            "MarginOracle",
            "RoundAttested",
            "RoundAttested(uint64,bytes32,bytes32,bytes32,uint32,uint256,address,bytes32,bytes32,uint8)",
        ),
    ],
)
def test_the_topic_is_the_keccak_of_the_canonical_signature(contract: str, event: str, signature: str) -> None:
    assert event_topic(contract, event) == keccak(text=signature)


def test_an_unknown_event_is_refused_naming_it() -> None:
    with pytest.raises(ArtifactError, match="'NoSuchEvent'"):
        event_topic("MarginOracle", "NoSuchEvent")
