"""``SmileSet`` logs as the policy reads them: the smile of the event's topics and data, malformed ones refused
naming the part."""

from __future__ import annotations

from typing import Any

import pytest
from eth_abi import encode

from pmoracle.chain.errors import SnapshotError
from pmoracle.chain.index_history import INDEX_SET_TOPIC, SMILE_SET_TOPIC, decode_smile_update, symbol_topic
from pmoracle.risk.policy import SmileQuote

PARAMS = (2 * 10**16, 10**17, -3 * 10**17, -5 * 10**16, 2 * 10**17)


def smile_log(**change: Any) -> dict[str, Any]:
    log = {
        "topics": ["0x" + SMILE_SET_TOPIC.hex(), symbol_topic("BTC"), "0x" + encode(["uint64"], [1_700_006_400]).hex()],
        "data": "0x" + encode(["int256"] * 5, PARAMS).hex(),
        "blockNumber": "0x1f",
        "logIndex": "0x2",
    }
    return {**log, **change}


def test_a_smile_log_decodes_to_its_quote_at_the_blocks_time() -> None:
    update = decode_smile_update(smile_log(), 1_700_000_000)
    assert (update.block_number, update.log_index, update.underlying) == (31, 2, "BTC")
    assert update.quote == SmileQuote(1_700_006_400, *PARAMS, 1_700_000_000)  # negative rho and m kept


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"topics": ["0x" + INDEX_SET_TOPIC.hex(), symbol_topic("BTC"), "0x" + "00" * 32]}, "SmileSet.topics"),
        ({"topics": ["0x" + SMILE_SET_TOPIC.hex(), symbol_topic("BTC")]}, "SmileSet.topics"),
        ({"data": "0x" + "00" * 64}, "SmileSet.data"),
    ],
)
def test_a_malformed_smile_log_is_refused_naming_the_part(change: dict[str, Any], field: str) -> None:
    with pytest.raises(SnapshotError) as info:
        decode_smile_update(smile_log(**change), 0)
    assert info.value.field == field
