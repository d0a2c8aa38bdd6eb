"""What the daemon's ``/v1/leaves`` provider (``SolverNode.round_leaves``) serves: the tree of any round it keeps
(its last computed rounds), else the attested tree of the round it last saw attested, else nothing."""

from __future__ import annotations

import random
from types import SimpleNamespace

from pmoracle.consensus.merkle import AccountLeaf, MerkleTree
from pmoracle.node.daemon import SolverNode


def tree_of(seed: int) -> MerkleTree:
    rng = random.Random(seed)
    return MerkleTree([AccountLeaf(rng.randbytes(20), rng.randrange(10**20), rng.randrange(10**20), 5)
                       for _ in range(4)])  # fmt: skip


def node_keeping(outputs: dict[int, MerkleTree], attested: tuple[int, MerkleTree | None] | None) -> SimpleNamespace:
    return SimpleNamespace(
        outputs={block: SimpleNamespace(tree=tree) for block, tree in outputs.items()},
        attested_tree=None if attested is None else attested[1],
        _attested_tree_block=None if attested is None else attested[0],
    )


def served(node: SimpleNamespace, block: int | None) -> tuple[int, bytes, list[AccountLeaf]] | None:
    kept = SolverNode.round_leaves(node, block)  # type: ignore[arg-type]
    return None if kept is None else (kept.block_number, kept.accounts_root, list(kept.leaves))


def test_kept_rounds_the_attested_one_and_latest() -> None:
    old, mid, new = tree_of(1), tree_of(2), tree_of(3)
    # round 10 attested, its output since dropped; rounds 20 and 30 computed and kept
    node = node_keeping({20: mid, 30: new}, (10, old))
    assert served(node, 20) == (20, mid.root, mid.leaves)
    assert served(node, 30) == served(node, None) == (30, new.root, new.leaves)  # latest: the newest computed
    assert served(node, 10) == (10, old.root, old.leaves)  # the attested tree outlives the round's output
    assert served(node, 25) is None and served(node, 40) is None
    # a kept output wins over the attested tree (they are the same tree when the node signed the attested root)
    assert served(node_keeping({10: mid}, (10, old)), 10) == (10, mid.root, mid.leaves)
    # the quorum attested a root this node did not compute (it keeps no attested tree) and the round is dropped
    assert served(node_keeping({20: mid}, (10, None)), 10) is None
    # nothing computed yet: latest is the attested round, or nothing
    assert served(node_keeping({}, (10, old)), None) == (10, old.root, old.leaves)
    assert served(node_keeping({}, None), None) is None
