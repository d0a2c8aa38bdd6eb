"""A real node API (``pmoracle.node.api.run_api``, the server the daemon runs) serving a given round, in a thread:
what a node whose quorum attested that round answers on ``/v1/margin`` and ``/v1/risk-arrays``."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import trio
from prometheus_client import CollectorRegistry

from pmoracle.consensus.commitments import RiskArrayTree
from pmoracle.consensus.merkle import MerkleTree
from pmoracle.errors import PmoracleError
from pmoracle.node.api import MarginProof, RiskArrays, run_api


@contextmanager
def serve_node_api(tree: MerkleTree, block_number: int, risk_tree: RiskArrayTree | None = None) -> Iterator[str]:
    """Serve ``tree`` as the latest attested round at ``block_number`` (and ``risk_tree``'s rows as that round's
    risk arrays; without it the node serves none); yield the API's base URL."""
    ready: queue.Queue[tuple[int, trio.lowlevel.TrioToken, trio.CancelScope]] = queue.Queue()

    def margin(account: bytes) -> MarginProof | None:
        try:
            leaf = tree.leaf_of(account)
        except PmoracleError:
            return None
        return MarginProof(leaf, block_number, tree.root, tuple(tree.proof(account)))

    def risk_arrays(block: int | None) -> RiskArrays | None:
        if risk_tree is None or block not in (None, block_number):
            return None
        return RiskArrays(block_number, risk_tree.root, tuple(risk_tree.rows))

    async def serve() -> None:
        async with trio.open_nursery() as nursery:
            port = await nursery.start(
                lambda task_status: run_api(
                    "127.0.0.1", 0, metrics=CollectorRegistry(), health=lambda: None, margin=margin,
                    risk_arrays=risk_arrays, task_status=task_status,
                )
            )  # fmt: skip
            ready.put((port, trio.lowlevel.current_trio_token(), nursery.cancel_scope))

    thread = threading.Thread(target=trio.run, args=(serve,), daemon=True)
    thread.start()
    port, token, scope = ready.get(timeout=10)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        trio.from_thread.run_sync(scope.cancel, trio_token=token)
        thread.join(timeout=10)
