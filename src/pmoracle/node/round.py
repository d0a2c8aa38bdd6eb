"""One round's computation: chain snapshot at B -> risk engine -> leaves -> Merkle trees -> report.

No I/O here: the daemon reads the snapshot and runs this in a worker thread (numba releases the GIL), so the
same function serves the node, the dispute tool and the end-to-end tests' independent recomputation.

The engine answers in its own unit (MONEY, USD with 8 decimals); the round turns its answers into the leaves the
contract verifies (USD with ``LEAF_DECIMALS`` = 18), an exact conversion. The report also commits to the round's
risk arrays, keyed by ledger instrument id and collateral token, and to its market inputs
(``pmoracle.consensus.commitments``), so that a wrong leaf can be proven on chain.
"""

from __future__ import annotations

from dataclasses import dataclass

from pmoracle.chain.snapshot import ChainSnapshot
from pmoracle.consensus.commitments import NO_POLICY, RiskArrayTree, compute_market_hash, compute_risk_rows
from pmoracle.consensus.committee import CommitteeConfig
from pmoracle.consensus.merkle import LEAF_DECIMALS, AccountLeaf, MerkleTree
from pmoracle.consensus.report import Report
from pmoracle.risk.inputs import MONEY_DECIMALS, Instrument
from pmoracle.risk.margin import AccountMargin, Book, BookResult
from pmoracle.risk.params import RiskParams
from pmoracle.risk.policy import PolicyRound, compute_effective_params

MONEY_TO_LEAF = 10 ** (LEAF_DECIMALS - MONEY_DECIMALS)


@dataclass(frozen=True, slots=True)
class RoundOutput:
    """The report of one round with the trees that serve proofs for it and the book behind it."""

    report: Report
    tree: MerkleTree
    book: BookResult
    risk_tree: RiskArrayTree
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


def compute_instrument_ids(snapshot: ChainSnapshot) -> dict[Instrument, list[int]]:
    """Return the ledger ids of each instrument listed at B (normally one)."""
    ids: dict[Instrument, list[int]] = {}
    for iid, instrument in snapshot.instruments:
        ids.setdefault(instrument, []).append(iid)
    return ids


def compute_round(
    snapshot: ChainSnapshot, params: RiskParams, committee: CommitteeConfig, policy: PolicyRound | None = None
) -> RoundOutput:
    """Return the report every honest node computes for the round anchored at ``snapshot.block_number``; with
    ``policy`` the engine runs on the scan ranges it gives at B (the report keeps the document's paramsHash and
    commits to the policy's states through its market hash)."""
    model = params if policy is None else compute_effective_params(params, policy.states)
    return compute_round_from_book(
        snapshot, params, committee, Book(snapshot.market, model, snapshot.portfolios), policy
    )


def compute_round_from_book(
    snapshot: ChainSnapshot, params: RiskParams, committee: CommitteeConfig, engine: Book, policy: PolicyRound | None
) -> RoundOutput:
    """Return ``compute_round``'s output from the engine's ``Book`` of the snapshot (its margins, leaves, trees
    and report)."""
    book = engine.result()
    tree = MerkleTree(compute_leaves(book))
    risk_tree = RiskArrayTree(compute_risk_rows(engine.arrays, compute_instrument_ids(snapshot), snapshot.tokens))
    report = Report(
        config_digest=committee.digest(),
        block_number=snapshot.block_number,
        block_hash=snapshot.block_hash,
        params_hash=params.params_hash,
        accounts_root=tree.root,
        account_count=len(tree),
        risk_arrays_root=risk_tree.root,
        market_hash=compute_market_hash(snapshot.market, NO_POLICY if policy is None else policy.policy_hash),
    )
    return RoundOutput(report=report, tree=tree, book=book, risk_tree=risk_tree, policy=policy)
