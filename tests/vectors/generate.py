"""Generate the shared EIP-712 and Merkle test vectors (JSON) read by the Python and the contract tests.

Run ``python -m tests.vectors.generate`` to rewrite them; ``tests/unit/consensus/test_vectors.py`` fails when the
committed files differ from what this produces, so they cannot drift from the code.
"""

from __future__ import annotations

import json
import pathlib
import random
from typing import Any

from pmoracle.consensus.merkle import AccountLeaf, MerkleTree, compute_leaf_hash
from pmoracle.consensus.report import Domain, Report, compute_report_digest

HERE = pathlib.Path(__file__).resolve().parent


def _hex(b: bytes) -> str:
    return "0x" + b.hex()


def eip712_vectors() -> dict[str, Any]:
    rng = random.Random(712)
    cases = []
    for i in range(8):
        domain = Domain(chain_id=[1, 31337, 10, 2**64][i % 4], verifying_contract=rng.randbytes(20))
        report = Report(
            config_digest=rng.randbytes(32),
            block_number=[0, 1, 2**64 - 1, rng.randrange(2**40)][i % 4],
            block_hash=rng.randbytes(32),
            params_hash=rng.randbytes(32),
            accounts_root=rng.randbytes(32) if i else b"\x00" * 32,
            account_count=[0, 1, 2**32 - 1, rng.randrange(10**6)][i % 4],
        )
        cases.append(
            {
                "chainId": domain.chain_id,
                "verifyingContract": _hex(domain.verifying_contract),
                "report": report.to_json(),
                "domainSeparator": _hex(domain.separator()),
                "structHash": _hex(report.struct_hash()),
                "digest": _hex(compute_report_digest(domain, report)),
            }
        )
    return {"description": "EIP-712 digests of pmoracle reports", "cases": cases}


def merkle_vectors() -> dict[str, Any]:
    rng = random.Random(1337)
    trees = []
    for n in (0, 1, 2, 3, 5, 8, 33):
        leaves = [
            AccountLeaf(
                account=rng.randbytes(20),
                initial_margin=rng.randrange(10**30),
                maintenance_margin=rng.randrange(10**30),
                equity=rng.randrange(-(10**30), 10**30),
            )
            for _ in range(n)
        ]
        tree = MerkleTree(leaves)
        trees.append(
            {
                "root": _hex(tree.root),
                "leaves": [
                    {
                        "account": _hex(leaf.account),
                        "initialMargin": str(leaf.initial_margin),
                        "maintenanceMargin": str(leaf.maintenance_margin),
                        "equity": str(leaf.equity),
                        "leafHash": _hex(compute_leaf_hash(leaf)),
                        "proof": [_hex(p) for p in tree.proof(leaf.account)],
                    }
                    for leaf in tree.leaves
                ],
            }
        )
    return {
        "description": "account leaves, roots and proofs (OpenZeppelin MerkleProof compatible)",
        "trees": trees,
    }


VECTORS = {"eip712.json": eip712_vectors, "merkle.json": merkle_vectors}


def render(name: str) -> str:
    return json.dumps(VECTORS[name](), indent=1) + "\n"


if __name__ == "__main__":
    for name in VECTORS:
        (HERE / name).write_text(render(name))
        print(f"wrote {HERE / name}")
