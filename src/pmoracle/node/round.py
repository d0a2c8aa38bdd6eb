"""One round's computation: chain snapshot at B -> risk engine -> leaves -> Merkle tree -> report.

No I/O here: the daemon reads the snapshot and runs this in a worker thread (numba releases the GIL), so the
same function serves the node, the dispute tool and the end-to-end tests' independent recomputation.

The engine answers in its own unit (MONEY, USD with 8 decimals); the round turns its answers into the leaves the
contract verifies (USD with ``LEAF_DECIMALS`` = 18), an exact conversion.
"""

from __future__ import annotations

from dataclasses import dataclass

from pmoracle.chain.snapshot import ChainSnapshot
from pmoracle.consensus.committee import CommitteeConfig
from pmoracle.consensus.merkle import LEAF_DECIMALS, AccountLeaf, MerkleTree
from pmoracle.consensus.report import Report
from pmoracle.risk.inputs import MONEY_DECIMALS
from pmoracle.risk.margin import AccountMargin, BookResult, compute_book
from pmoracle.risk.params import RiskParams
from pmoracle.risk.policy import PolicyRound, compute_effective_params

MONEY_TO_LEAF = 10 ** (LEAF_DECIMALS - MONEY_DECIMALS)


@dataclass(frozen=True, slots=True)
class RoundOutput:
    """The report of one round with the tree that serves proofs for it and the book behind it."""

    report: Report
    tree: MerkleTree
    book: BookResult
    policy: PolicyRound | None = None  # the adaptive policy's states at B (parameters with [policy] only)


def compute_leaf(margin: AccountMargin) -> AccountLeaf:
    """Return the leaf of one account: the engine's MONEY amounts in the leaf unit (18 decimals)."""
    return AccountLeaf(
        account=margin.account,
        initial_margin=margin.initial_margin * MONEY_TO_LEAF,
        maintenance_margin=margin.maintenance_margin * MONEY_TO_LEAF,
        equity=margin.equity * MONEY_TO_LEAF,
    )


def compute_leaves(book: BookResult) -> list[AccountLeaf]:
    """Return the leaves of every account holding a position or collateral, sorted by address."""
    return sorted((compute_leaf(a) for a in book.accounts if not a.is_empty), key=lambda leaf: leaf.account)


def compute_round(
    snapshot: ChainSnapshot, params: RiskParams, committee: CommitteeConfig, policy: PolicyRound | None = None
) -> RoundOutput:
    """Return the report every honest node computes for the round anchored at ``snapshot.block_number``; with
    ``policy`` the engine runs on the scan ranges it gives at B (the report keeps the document's paramsHash)."""
    model = params if policy is None else compute_effective_params(params, policy.states)
    book = compute_book(snapshot.market, model, snapshot.portfolios)
    tree = MerkleTree(compute_leaves(book))
    report = Report(
        config_digest=committee.digest(),
        block_number=snapshot.block_number,
        block_hash=snapshot.block_hash,
        params_hash=params.params_hash,
        accounts_root=tree.root,
        account_count=len(tree),
    )
    return RoundOutput(report=report, tree=tree, book=book, policy=policy)
