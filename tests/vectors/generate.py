"""Generate the shared test vectors (JSON): EIP-712 and Merkle (Python and contract tests), and the golden margins.

Run ``python -m tests.vectors.generate`` to rewrite them. ``tests/unit/consensus/test_vectors.py`` fails when the
committed EIP-712 and Merkle files differ from what this produces, so they cannot drift from the code.

The golden margin vectors (``margin/*.json``, built by :mod:`tests.vectors.margin_books`) are different: they pin
the risk engine's outputs, and ``tests/unit/risk/test_golden_vectors.py`` fails when the engine gives other numbers
for their inputs. Changed outputs need a new ``ENGINE_VERSION`` (``src/pmoracle/risk/version.py``): this script
refuses to rewrite a margin vector whose inputs are unchanged but whose outputs moved under the same engine version.
"""

from __future__ import annotations

import json
import pathlib
import random
import re
from typing import Any

from pmoracle import numba_cache

if __name__ == "__main__":  # run as a program: numba's cache directory is chosen before the kernels are imported
    numba_cache.configure()

from pmoracle.consensus.merkle import AccountLeaf, MerkleTree, compute_leaf_hash
from pmoracle.consensus.report import Domain, Report, compute_report_digest
from tests.vectors.margin_books import DETMATH, MARGIN_DIR, MARGIN_VECTORS, build_detmath_vector, build_vector

HERE = pathlib.Path(__file__).resolve().parent
INPUTS = ("params", "market", "books", "inputs")  # what a vector of margin/ is computed from


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


def _dumps_compact(obj: Any) -> str:
    """Return ``obj`` as indented JSON with every array of scalars on one line (a position, a smile, a pair)."""
    text = json.dumps(obj, indent=1)
    compact = re.sub(
        r"\[\n\s+([^\[\]{}\n]+(?:\n\s+[^\[\]{}\n]+)*)\n\s*\]",
        lambda m: "[" + ", ".join(part.strip().rstrip(",") for part in m.group(1).split("\n")) + "]",
        text,
    )
    if json.loads(compact) != obj:
        raise ValueError("compact formatting changed the document")
    return compact + "\n"


def render_margin(name: str) -> str:
    return _dumps_compact(build_detmath_vector() if name == DETMATH else build_vector(MARGIN_VECTORS[name]))


class EngineVersionError(Exception):
    """Raised when a golden margin vector's outputs changed and ENGINE_VERSION did not."""


def check_margin_rewrite(path: pathlib.Path, new: dict[str, Any]) -> None:
    """Raise ``EngineVersionError`` if ``new`` moves the outputs of the committed vector at ``path`` for the same
    inputs under the same engine version."""
    if not path.exists():
        return
    old = json.loads(path.read_text())
    old_sweep, new_sweep = old.get("sweep", {}), new.get("sweep", {})
    same_inputs = all(old.get(key) == new.get(key) for key in INPUTS) and all(
        old_sweep.get(key) == new_sweep.get(key) for key in ("seed", "points")
    )
    moved = any(old.get(key) != new.get(key) for key in ("expected", "scenarios")) or old_sweep.get(
        "sha256"
    ) != new_sweep.get("sha256")
    if same_inputs and moved and old["engineVersion"] == new["engineVersion"]:
        raise EngineVersionError(
            f"{path}: the engine gives other outputs for the same inputs, but ENGINE_VERSION is still "
            f"{new['engineVersion']}: bump it in src/pmoracle/risk/version.py first (docs/determinism.md)"
        )


def write_margin_vectors() -> None:
    MARGIN_DIR.mkdir(exist_ok=True)
    for name in [*MARGIN_VECTORS, DETMATH]:
        path = MARGIN_DIR / f"{name}.json"
        text = render_margin(name)
        check_margin_rewrite(path, json.loads(text))
        path.write_text(text)
        print(f"wrote {path}")


if __name__ == "__main__":
    for name in VECTORS:
        (HERE / name).write_text(render(name))
        print(f"wrote {HERE / name}")
    write_margin_vectors()
