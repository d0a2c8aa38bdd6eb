"""The block watcher service against a real anvil: new heads, and a reorg made with anvil_reorg detected by hashes."""

from __future__ import annotations

import trio

from pmoracle.chain.client import ChainClient, run_sync
from pmoracle.chain.watcher import HeadEvent, NewHead, Reorg, run_block_watcher
from pmoracle.devnet.devchain import Devchain


async def next_event(receive: trio.MemoryReceiveChannel[HeadEvent], kind: type) -> HeadEvent:
    with trio.fail_after(10):
        while True:
            event = await receive.receive()
            if isinstance(event, kind):
                return event


async def test_watcher_follows_heads_and_detects_anvil_reorg(anvil: Devchain) -> None:
    client = ChainClient([anvil.url])
    for _ in range(8):
        anvil.rpc("evm_mine")
    send, receive = trio.open_memory_channel[HeadEvent](100)
    async with trio.open_nursery() as nursery:
        tracker = await nursery.start(
            lambda task_status: run_block_watcher(
                client, poll_interval=0.02, finality_depth=2, send_channel=send, task_status=task_status
            )
        )
        first = await next_event(receive, NewHead)
        tip = first.header
        assert tip.number == client.block_number() and first.finalized_number == tip.number - 2

        await run_sync(anvil.rpc, "evm_mine", timeout=5)
        moved = await next_event(receive, NewHead)
        assert moved.header.number == tip.number + 1 and moved.header.parent_hash == tip.hash
        old = [tracker.header_at(n) for n in range(moved.header.number - 2, moved.header.number + 1)]

        await run_sync(anvil.rpc, "anvil_reorg", 3, [], timeout=5)
        reorg = await next_event(receive, Reorg)
        assert reorg.fork_point == moved.header.number - 3
        assert reorg.depth == 3
        assert reorg.old_hashes == tuple(h.hash for h in old)
        new_head = await next_event(receive, NewHead)
        assert new_head.header.hash == client.get_block("latest").hash
        assert set(reorg.new_hashes).isdisjoint(reorg.old_hashes)
        assert client.get_block(reorg.fork_point).hash == tracker.header_at(reorg.fork_point).hash
        nursery.cancel_scope.cancel()
