"""The world's JSON-RPC batches are split into HTTP bodies anvil accepts, and its sends into one-block chunks, in
order."""

from __future__ import annotations

import json
import random
from typing import Any

from pmoracle.devnet.world import BLOCK_GAS_LIMIT, HTTP_BATCH_BYTES, TX_GAS, _block_chunks, _http_batches


def test_bodies_stay_under_the_limit_and_keep_every_call_in_order() -> None:
    rng = random.Random(5)
    calls = [
        {"jsonrpc": "2.0", "id": i, "method": "eth_sendRawTransaction", "params": ["ab" * rng.randrange(10, 200_000)]}
        for i in range(60)
    ]
    bodies = _http_batches(calls)
    assert len(bodies) > 1
    assert all(len(body) <= HTTP_BATCH_BYTES for body in bodies)
    assert [call for body in bodies for call in json.loads(body)] == calls


def test_a_call_larger_than_the_limit_goes_alone() -> None:
    big = {"jsonrpc": "2.0", "id": 1, "method": "x", "params": ["0" * (HTTP_BATCH_BYTES + 10)]}
    small = {"jsonrpc": "2.0", "id": 2, "method": "y", "params": []}
    assert [json.loads(b) for b in _http_batches([small, big, small])] == [[small], [big], [small]]


def test_sends_are_cut_into_chunks_of_one_block_each() -> None:
    def tx(gas: int) -> tuple[str, list[Any]]:
        return ("eth_sendTransaction", [{"gas": hex(gas)}])

    plain = [tx(TX_GAS)] * 4_500
    assert [len(c) for c in _block_chunks(plain, 2_000)] == [2_000, 2_000, 500]  # 2,000 x 3M gas: one block
    batches = [tx(BLOCK_GAS_LIMIT // 10 + 1)] * 25 + [("anvil_setBalance", ["0x0", "0x1"])]
    chunks = _block_chunks(batches, 2_000)
    assert [len(c) for c in chunks] == [9, 9, 8]  # 9 fit a block, a tenth does not
    assert [c for chunk in chunks for c in chunk] == batches
    assert _block_chunks([], 2_000) == []
