"""The node's API server (``pmoracle.node.api.run_api``, what the daemon runs) in a thread of its own, for tests and
benchmarks that call it from blocking code (the dispute tool's HTTP client, the fraud prover's peer fetches): any
providers (``serve_api_in_thread``), or those of a node whose quorum attested given rounds (``serve_node_api``: what
it answers on ``/v1/margin``, ``/v1/leaves`` and ``/v1/risk-arrays``)."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import trio
from prometheus_client import CollectorRegistry

from pmoracle.consensus.commitments import RiskArrayTree
from pmoracle.consensus.merkle import MerkleTree
from pmoracle.errors import PmoracleError
from pmoracle.node.api import MarginProof, RiskArrays, RoundLeaves, run_api


@contextmanager
def serve_api_in_thread(**providers: Any) -> Iterator[str]:
    """Serve ``run_api`` on 127.0.0.1, port 0, with ``providers`` (``margin``, ``leaves``, ``risk_arrays``, ...;
    ``health`` and ``metrics`` default to none) in a daemon thread; yield its base URL, stop it on exit."""
    ready: queue.Queue[tuple[int, trio.lowlevel.TrioToken, trio.CancelScope]] = queue.Queue()
    kwargs = {"metrics": CollectorRegistry(), "health": lambda: None, **providers}

    async def serve() -> None:
        async with trio.open_nursery() as nursery:
            port = await nursery.start(lambda task_status: run_api("127.0.0.1", 0, task_status=task_status, **kwargs))
            ready.put((port, trio.lowlevel.current_trio_token(), nursery.cancel_scope))

    thread = threading.Thread(target=trio.run, args=(serve,), daemon=True)
    thread.start()
    port, token, scope = ready.get(timeout=10)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        trio.from_thread.run_sync(scope.cancel, trio_token=token)
        thread.join(timeout=10)


@contextmanager
def serve_node_api(
    tree: MerkleTree,
    block_number: int,
    risk_tree: RiskArrayTree | None = None,
    *,
    older: Mapping[int, tuple[MerkleTree, RiskArrayTree | None]] | None = None,
    leaves_route: bool = True,
) -> Iterator[str]:
    """Serve ``tree`` as the latest attested round at ``block_number`` (and ``risk_tree``'s rows as that round's
    risk arrays; without it the node serves none), and the rounds in ``older`` (block -> tree and rows) as rounds it
    still keeps; yield the API's base URL. ``leaves_route=False`` serves no ``/v1/leaves`` (a node of an older
    release)."""
    kept = {**(older or {}), block_number: (tree, risk_tree)}

    def margin(account: bytes) -> MarginProof | None:
        try:
            leaf = tree.leaf_of(account)
        except PmoracleError:
            return None
        return MarginProof(leaf, block_number, tree.root, tuple(tree.proof(account)))

    def leaves(block: int | None) -> RoundLeaves | None:
        number = max(kept) if block is None else block
        return None if number not in kept else RoundLeaves(number, kept[number][0].root, tuple(kept[number][0].leaves))

    def risk_arrays(block: int | None) -> RiskArrays | None:
        number = max(kept) if block is None else block
        rows = kept[number][1] if number in kept else None
        return None if rows is None else RiskArrays(number, rows.root, tuple(rows.rows))

    with serve_api_in_thread(margin=margin, risk_arrays=risk_arrays, leaves=leaves if leaves_route else None) as url:
        yield url
