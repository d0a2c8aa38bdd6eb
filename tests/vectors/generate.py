"""Generate the shared test vectors (JSON): EIP-712, Merkle, FROST-on-EVM (Python and contract tests), golden margins.

Run ``python -m tests.vectors.generate`` to rewrite them. ``tests/unit/consensus/test_vectors.py`` fails when the
committed EIP-712, Merkle and FROST-on-EVM files differ from what this produces, so they cannot drift from the code.

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

from pmoracle.consensus import frost, frost_evm
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
            risk_arrays_root=rng.randbytes(32) if i else b"\x00" * 32,
            market_hash=rng.randbytes(32),
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


def frost_evm_vectors() -> dict[str, Any]:
    rng = random.Random(9591)
    cases: list[dict[str, Any]] = []

    def case(key: frost_evm.EvmGroupKey, message: bytes, sig: frost_evm.EvmSignature, note: str) -> None:
        valid = frost_evm.is_valid_evm_signature(key, message, sig)
        entry: dict[str, Any] = {
            "note": note,
            "groupKeyX": _hex(key.x.to_bytes(32, "big")),
            "groupKeyParity": key.parity,
            "message": _hex(message),
            "rx": _hex(sig.rx.to_bytes(32, "big")),
            "ry": _hex(sig.ry.to_bytes(32, "big")),
            "z": _hex(sig.z.to_bytes(32, "big")),
            "valid": valid,
        }
        if frost_evm.is_on_curve(sig.rx, sig.ry) and 0 < sig.z < frost.ORDER:
            call = frost_evm.compute_ecrecover_call(key, message, sig)
            entry["challenge"] = _hex(frost_evm.compute_evm_challenge(key, message, sig).to_bytes(32, "big"))
            entry["ecrecover"] = {
                "hash": _hex(call.message_hash),
                "v": call.v,
                "r": _hex(call.r.to_bytes(32, "big")),
                "s": _hex(call.s.to_bytes(32, "big")),
                "expected": _hex(call.expected),
            }
        cases.append(entry)

    for i in range(8):
        secret = rng.randrange(1, frost.ORDER)
        shares = frost.split_secret(secret, [rng.randrange(frost.ORDER)], 3)
        group_key = frost.serialize_element(frost.scalar_base_mult(secret))
        message = rng.randbytes(32)
        rounds = {j: frost.commit(j, shares[j], rng.randbytes(32), rng.randbytes(32)) for j in (1, 3)}
        commitments = [rounds[1][1], rounds[3][1]]
        sig_shares = [frost.sign(j, shares[j], group_key, rounds[j][0], message, commitments) for j in (1, 3)]
        signature = frost.aggregate(commitments, message, group_key, sig_shares)
        key, sig = frost_evm.EvmGroupKey.from_compressed(group_key), frost_evm.EvmSignature.from_signature(signature)
        case(key, message, sig, "valid 2-of-3 signature")
        if i == 0:
            case(key, message[::-1], sig, "another message")
            case(key, message, frost_evm.EvmSignature(sig.rx, sig.ry, (sig.z + 1) % frost.ORDER), "z + 1")
            case(key, message, frost_evm.EvmSignature(sig.rx, frost.FIELD_PRIME - sig.ry, sig.z), "-R")
            case(frost_evm.EvmGroupKey(key.x, 1 - key.parity), message, sig, "-P")
            case(key, message, frost_evm.EvmSignature(sig.rx, sig.ry + 1, sig.z), "R off the curve")
            case(key, message, frost_evm.EvmSignature(sig.rx, sig.ry, frost.ORDER), "z = n, not a scalar")
            case(key, message, frost_evm.EvmSignature(sig.rx, sig.ry, 0), "z = 0")
    return {
        "description": "RFC 9591 FROST(secp256k1, SHA-256) signatures verified with one ecrecover (docs/frost.md)",
        "cases": cases,
    }


VECTORS = {"eip712.json": eip712_vectors, "merkle.json": merkle_vectors, "frost_evm.json": frost_evm_vectors}


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
