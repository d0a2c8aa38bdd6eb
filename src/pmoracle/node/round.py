"""One round's computation: chain snapshot at B -> risk engine -> leaves -> Merkle tree -> report.

No I/O here: the daemon reads the snapshot and runs this in a worker thread (numba releases the GIL), so the
same function serves the node, the dispute tool and the end-to-end tests' independent recomputation.
"""

from __future__ import annotations

from dataclasses import dataclass

from pmoracle.chain.snapshot import ChainSnapshot
from pmoracle.consensus.committee import CommitteeConfig
from pmoracle.consensus.merkle import MerkleTree
from pmoracle.consensus.report import Report
from pmoracle.risk.margin import BookResult, book_leaves, compute_book
from pmoracle.risk.params import RiskParams


@dataclass(frozen=True, slots=True)
class RoundOutput:
    """The report of one round with the tree that serves proofs for it and the book behind it."""

    report: Report
    tree: MerkleTree
    book: BookResult


def compute_round(snapshot: ChainSnapshot, params: RiskParams, committee: CommitteeConfig) -> RoundOutput:
    """Return the report every honest node computes for the round anchored at ``snapshot.block_number``."""
    book = compute_book(snapshot.market, params, snapshot.portfolios)
    tree = MerkleTree(book_leaves(book))
    report = Report(
        config_digest=committee.digest(),
        block_number=snapshot.block_number,
        block_hash=snapshot.block_hash,
        params_hash=params.params_hash,
        accounts_root=tree.root,
        account_count=len(tree),
    )
    return RoundOutput(report=report, tree=tree, book=book)
