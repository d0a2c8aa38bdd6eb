"""Which peer API the node's fraud prover takes the attested tree from (``select_source``): the first whose every leaf
verifies against the attested accounts root and, when this node's own rows are not the attested ones, whose rows
rebuild the attested riskArraysRoot. The peers are real node API servers (``run_api`` in a thread); no chain."""

from __future__ import annotations

import dataclasses
import random

from pmoracle.consensus.commitments import RiskArrayTree, RiskRow
from pmoracle.consensus.merkle import AccountLeaf, MerkleTree
from pmoracle.consensus.report import Report
from pmoracle.node.abc import AttestedRound
from pmoracle.node.fraud_prover import select_source
from tests.integration.node_api_support import serve_node_api

BLOCK = 40


def make_trees(seed: int) -> tuple[MerkleTree, RiskArrayTree]:
    rng = random.Random(seed)
    leaves = [
        AccountLeaf(rng.randbytes(20), rng.randrange(10**24), rng.randrange(10**24), rng.randrange(10**24))
        for _ in range(6)
    ]
    rows = [RiskRow(key, rng.randrange(10**6), 0, tuple(rng.randrange(-(10**6), 10**6) for _ in range(4)))
            for key in range(1, 5)]  # fmt: skip
    return MerkleTree(leaves), RiskArrayTree(rows)


def attested_of(tree: MerkleTree, risk_tree: RiskArrayTree) -> tuple[AttestedRound, Report]:
    report = Report(config_digest=b"\x11" * 32, block_number=BLOCK, block_hash=b"\xaa" * 32, params_hash=b"\x22" * 32,
                    accounts_root=tree.root, account_count=len(tree.leaves), risk_arrays_root=risk_tree.root,
                    market_hash=b"\x33" * 32)  # fmt: skip
    attested = AttestedRound(block_number=BLOCK, accounts_root=tree.root, report_digest=b"\x44" * 32,
                             config_digest=report.config_digest, config_version=1, account_count=len(tree.leaves),
                             attested_at=BLOCK + 3, block_hash=report.block_hash)  # fmt: skip
    return attested, report


def test_the_first_peer_serving_the_attested_tree_is_chosen() -> None:
    honest_tree, honest_rows = make_trees(1)
    lie_tree, lie_rows = make_trees(2)
    attested, report = attested_of(lie_tree, lie_rows)
    accounts = [leaf.account for leaf in lie_tree.leaves]
    with (
        serve_node_api(honest_tree, BLOCK, honest_rows) as honest,  # its own tree: not the attested one
        serve_node_api(lie_tree, BLOCK + 4, lie_rows) as moved_on,  # serves a newer round
        serve_node_api(lie_tree, BLOCK) as rowless,  # the attested leaves, no rows
        serve_node_api(lie_tree, BLOCK, honest_rows) as other_rows,  # the attested leaves, other rows
        serve_node_api(lie_tree, BLOCK, lie_rows) as colluder,
    ):
        unreachable = "http://127.0.0.1:9"  # the discard port: nothing listens there
        peers = (unreachable, honest, moved_on, rowless, other_rows, colluder)
        # rows needed (this node's rows are not the attested ones): only the colluder serves both
        chosen = select_source(peers, attested, report, accounts, rows_needed=True, timeout=2.0)
        assert chosen is not None and chosen.url == colluder
        assert {c.leaf for c in chosen.leaves} == set(lie_tree.leaves)
        assert chosen.rows is not None and RiskArrayTree(chosen.rows.rows).root == report.risk_arrays_root
        # rows not needed: the first peer serving the attested leaves will do, and its rows are not used
        chosen = select_source(peers, attested, report, accounts, rows_needed=False, timeout=2.0)
        assert chosen is not None and chosen.url == rowless and chosen.rows is None
        # only peers that do not serve the attested tree: none
        assert select_source((unreachable, honest, moved_on), attested, report, accounts, rows_needed=False,
                             timeout=2.0) is None  # fmt: skip
        # a peer whose leaves are the attested ones but one of them altered (its proof no longer verifies)
        forged = MerkleTree([dataclasses.replace(lie_tree.leaves[0], equity=0), *lie_tree.leaves[1:]])
        with serve_node_api(forged, BLOCK, lie_rows) as forger:
            assert select_source((forger,), attested, report, accounts, rows_needed=False, timeout=2.0) is None
