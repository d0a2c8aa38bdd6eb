"""Which peer API the node's fraud prover takes the attested tree from (``select_source``): the first whose leaves
(the whole round from ``/v1/leaves/B``, or, from a peer without that route, each account's ``/v1/margin``) prove the
attested accounts root and, when this node's own rows are not the attested ones, whose rows rebuild the attested
riskArraysRoot. The peers are real node API servers (``run_api`` in a thread); no chain."""

from __future__ import annotations

import dataclasses
import logging
import random

import pytest

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


def test_a_round_the_peer_has_moved_past_is_fetched_whole_while_the_peer_keeps_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    lie_tree, lie_rows = make_trees(2)
    newer_tree = MerkleTree([dataclasses.replace(leaf, equity=leaf.equity + 1) for leaf in lie_tree.leaves])
    newer_rows = make_trees(3)[1]  # the next round: the same accounts, other values
    attested, report = attested_of(lie_tree, lie_rows)
    accounts = [leaf.account for leaf in lie_tree.leaves]
    caplog.set_level(logging.INFO, logger="pmoracle.node")
    kept = {BLOCK: (lie_tree, lie_rows)}
    with (
        serve_node_api(newer_tree, BLOCK + 4, newer_rows) as dropped,  # moved on and no longer keeps the round
        serve_node_api(newer_tree, BLOCK + 4, newer_rows, leaves_route=False, older=kept) as old_moved_on,
        serve_node_api(newer_tree, BLOCK + 4, newer_rows, older=kept) as keeper,  # moved on, still keeps it
        serve_node_api(lie_tree, BLOCK, lie_rows, leaves_route=False) as old_release,  # /v1/margin only
    ):
        # a peer whose latest attested round is newer still serves the round by block: the whole tree at once
        chosen = select_source((dropped, old_moved_on, keeper), attested, report, accounts, rows_needed=True,
                               timeout=2.0)  # fmt: skip
        assert chosen is not None and chosen.url == keeper
        assert [c.leaf for c in chosen.leaves] == lie_tree.leaves and all(c.proof is None for c in chosen.leaves)
        assert chosen.rows is not None and RiskArrayTree(chosen.rows.rows).root == report.risk_arrays_root
        assert f"peer API {dropped} skipped: node API {dropped}/v1/leaves/{BLOCK} serves no leaves of round " \
            f"{BLOCK}: no leaves kept for round {BLOCK}" in caplog.text  # fmt: skip
        # a peer without the route: its /v1/margin, one account at a time, each leaf with its proof
        assert f"peer API {old_moved_on} skipped: node API {old_moved_on} serves round {BLOCK + 4}" in caplog.text
        chosen = select_source((old_release,), attested, report, accounts, rows_needed=False, timeout=2.0)
        assert chosen is not None and {c.leaf for c in chosen.leaves} == set(lie_tree.leaves)
        assert all(c.proof is not None for c in chosen.leaves)
    # an old-release peer serving an altered leaf: its proof does not verify
    forged = MerkleTree([dataclasses.replace(lie_tree.leaves[0], equity=0), *lie_tree.leaves[1:]])
    with serve_node_api(forged, BLOCK, lie_rows, leaves_route=False) as forger:
        assert select_source((forger,), attested, report, accounts, rows_needed=False, timeout=2.0) is None
    assert f"peer API {forger} serves leaves that are not the attested tree" in caplog.text
