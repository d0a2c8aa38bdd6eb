"""Account leaves and the Merkle tree of a round, compatible with OpenZeppelin's ``MerkleProof``.

- A leaf is ``keccak256(keccak256(abi.encode(address account, uint256 initialMargin,
  uint256 maintenanceMargin, int256 equity)))`` — double hashed, as OpenZeppelin recommends, so that no inner
  node (64 bytes) can pass for a leaf.
- Leaves are ordered by account address (ascending, as unsigned 160-bit integers); one leaf per account.
- Inner nodes use sorted-pair hashing ``keccak256(min(a, b) || max(a, b))``; a node without a sibling at the end of
  a level moves up unchanged. OpenZeppelin's ``MerkleProof.verify`` accepts the proofs of this tree.
- The root of an empty book is 32 zero bytes; the root of one leaf is that leaf.

Amounts are USD with 18 decimals (``LEAF_DECIMALS``); equity is signed (an insolvent account is negative).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise

from pmoracle.consensus.hashing import keccak
from pmoracle.errors import InputError

LEAF_DECIMALS = 18
EMPTY_ROOT = b"\x00" * 32

_UINT256_MAX = 2**256 - 1
_INT256_MIN = -(2**255)
_INT256_MAX = 2**255 - 1


@dataclass(frozen=True, slots=True)
class AccountLeaf:
    """The attested margin of one account: USD amounts with 18 decimals."""

    account: bytes  # 20-byte address
    initial_margin: int
    maintenance_margin: int
    equity: int

    def __post_init__(self) -> None:
        if not isinstance(self.account, bytes) or len(self.account) != 20:
            raise InputError("account", f"expected a 20-byte address, got {self.account!r}")
        if not 0 <= self.initial_margin <= _UINT256_MAX:
            raise InputError("initial_margin", f"must fit uint256, got {self.initial_margin}")
        if not 0 <= self.maintenance_margin <= _UINT256_MAX:
            raise InputError("maintenance_margin", f"must fit uint256, got {self.maintenance_margin}")
        if not _INT256_MIN <= self.equity <= _INT256_MAX:
            raise InputError("equity", f"must fit int256, got {self.equity}")


def encode_leaf(leaf: AccountLeaf) -> bytes:
    """Return ``abi.encode(account, initialMargin, maintenanceMargin, equity)``: four 32-byte big-endian words.

    All four types are static, so the encoding is the words themselves (the ranges are checked by ``AccountLeaf``);
    written out because eth_abi's generic encoder was half the cost of building a 1,000-leaf tree.
    """
    return b"".join(
        (
            b"\0" * 12 + leaf.account,
            leaf.initial_margin.to_bytes(32, "big"),
            leaf.maintenance_margin.to_bytes(32, "big"),
            leaf.equity.to_bytes(32, "big", signed=True),
        )
    )


def compute_leaf_hash(leaf: AccountLeaf) -> bytes:
    """Return the double-keccak leaf hash of an account's attested values."""
    return keccak(keccak(encode_leaf(leaf)))


def hash_pair(a: bytes, b: bytes) -> bytes:
    """Return the commutative (sorted-pair) hash of two nodes, as OpenZeppelin's ``Hashes.commutativeKeccak256``."""
    return keccak(a + b) if a < b else keccak(b + a)


def sort_leaves(leaves: Sequence[AccountLeaf]) -> list[AccountLeaf]:
    """Return the leaves in canonical order (by address); raise if an account appears twice."""
    ordered = sorted(leaves, key=lambda leaf: leaf.account)
    for prev, cur in pairwise(ordered):
        if prev.account == cur.account:
            raise InputError("account", f"duplicate leaf for 0x{cur.account.hex()}")
    return ordered


def compute_levels(hashes: Sequence[bytes]) -> list[list[bytes]]:
    """Return the levels of the sorted-pair tree over ``hashes``, leaves first and the root level last."""
    level = list(hashes)
    levels = [level]
    while len(level) > 1:
        level = [hash_pair(level[i], level[i + 1]) if i + 1 < len(level) else level[i] for i in range(0, len(level), 2)]
        levels.append(level)
    return levels


def compute_level_proof(levels: Sequence[Sequence[bytes]], index: int) -> list[bytes]:
    """Return the sibling hashes from leaf ``index`` up to the root of a tree given by its levels."""
    proof: list[bytes] = []
    for level in levels[:-1]:
        sibling = index ^ 1
        if sibling < len(level):
            proof.append(level[sibling])
        index //= 2
    return proof


def compute_proof_root(leaf_hash: bytes, proof: Sequence[bytes]) -> bytes:
    """Return the root that ``proof`` leads to from ``leaf_hash`` (``MerkleProof.processProof``)."""
    node = leaf_hash
    for sibling in proof:
        node = hash_pair(node, sibling)
    return node


class MerkleTree:
    """The Merkle tree over a round's account leaves, with proofs for any account."""

    def __init__(self, leaves: Sequence[AccountLeaf]) -> None:
        self.leaves: list[AccountLeaf] = sort_leaves(leaves)
        self._index = {leaf.account: i for i, leaf in enumerate(self.leaves)}
        self._levels: list[list[bytes]] = compute_levels([compute_leaf_hash(leaf) for leaf in self.leaves])

    @property
    def root(self) -> bytes:
        """Return the root (``EMPTY_ROOT`` for an empty book)."""
        return self._levels[-1][0] if self.leaves else EMPTY_ROOT

    def __len__(self) -> int:
        return len(self.leaves)

    def leaf_of(self, account: bytes) -> AccountLeaf:
        """Return the leaf of ``account``; raise ``InputError`` if it holds nothing this round."""
        index = self._index.get(account)
        if index is None:
            raise InputError("account", f"0x{account.hex()} has no leaf in this round")
        return self.leaves[index]

    def proof(self, account: bytes) -> list[bytes]:
        """Return the sibling hashes from ``account``'s leaf up to the root."""
        index = self._index.get(account)
        if index is None:
            raise InputError("account", f"0x{account.hex()} has no leaf in this round")
        return compute_level_proof(self._levels, index)


def compute_root(leaves: Sequence[AccountLeaf]) -> bytes:
    """Return the Merkle root of a round's account leaves."""
    return MerkleTree(leaves).root


def verify_proof(root: bytes, leaf: AccountLeaf, proof: Sequence[bytes]) -> bool:
    """Check if ``proof`` shows ``leaf`` under ``root`` (the same rule as ``MerkleProof.verify``)."""
    return compute_proof_root(compute_leaf_hash(leaf), proof) == root
