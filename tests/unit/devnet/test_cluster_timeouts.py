"""The devnet's JSON-RPC timeout grows with the accounts (anvil's work per block grows with the state)."""

from __future__ import annotations

import pytest

from pmoracle.devnet.cluster import compute_rpc_timeout


def test_small_devnets_keep_ten_seconds_and_large_ones_wait_longer() -> None:
    assert compute_rpc_timeout(300) == compute_rpc_timeout(10_000) == 10.0
    assert compute_rpc_timeout(100_000) == pytest.approx(60.0)
    assert compute_rpc_timeout(10_001) > 10.0
