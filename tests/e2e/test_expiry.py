"""End to end: the devnet's chain time jumps past its first expiry and the network keeps attesting rounds.

Real anvil and real ``pmoracle node`` processes. Engine version 1 refused every round once an instrument held in a
book had expired, so the network halted; now the expired options and futures are valued at expiry value on the
index (docs/risk-model.md, "Expired instruments") and every round is signed, attested and matches the devnet's own
recomputation from chain state.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest

from pmoracle.chain.snapshot import read_snapshot
from pmoracle.devnet.cluster import DevnetOptions, build_devnet

ROUND_TIMEOUT = 90.0
HOUR = 3600


@pytest.mark.timeout(240)
def test_rounds_after_the_first_expiry_are_attested_and_match_recomputation() -> None:
    run_dir = Path(tempfile.mkdtemp(prefix="pmoracle-e2e-expiry-"))  # kept: node logs for a failing run
    net = build_devnet(DevnetOptions(nodes=4, accounts=12, duration=None, run_dir=run_dir, quiet=True), say=print)
    try:
        net.run_rounds(1, ROUND_TIMEOUT)  # the network is up before the jump
        first_expiry = net.world.expiries[0]
        now = net.world_time()
        assert first_expiry > now
        net.chain.rpc("evm_increaseTime", first_expiry - now + HOUR)
        net.chain.rpc("evm_mine")
        warped = int(net.client.block_number())
        assert net.world_time() > first_expiry
        # the feeds were last written before the jump: publish them again, or every round after it would be
        # refused as stale (max_feed_age_seconds), which is not what this test is about
        net.world.move_market(net.world_time())
        after = len(net.attested)
        net.run_until(
            lambda d: sum(r.block_number > warped for r in d.attested) >= 2,
            2 * ROUND_TIMEOUT,
            what="two rounds anchored after the jump past the first expiry",
        )
        late = [r for r in net.attested[after:] if r.block_number > warped]
        assert len(late) >= 2
        assert all(r.verified for r in net.attested), "an attested root differs from the independent recomputation"
        # those rounds really valued expired positions: some book holds an instrument of the first expiry
        snapshot = read_snapshot(net.client, net.deployment, late[-1].block_number)
        assert snapshot.market.time > first_expiry
        expired = [
            p
            for book in snapshot.portfolios
            for p in book.positions
            if p.instrument.is_expired_at(snapshot.market.time)
        ]
        assert expired, "no account holds an instrument of the first expiry: the test would prove nothing"
    finally:
        net.stop()
        for node in net.nodes:  # no process left behind
            assert node.process is not None and node.process.poll() is not None
