"""The world's JSON-RPC batches are split into HTTP bodies anvil accepts, in order."""

from __future__ import annotations

import json
import random

from pmoracle.devnet.world import HTTP_BATCH_BYTES, _http_batches


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
