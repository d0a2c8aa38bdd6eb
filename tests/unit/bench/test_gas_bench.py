"""The gas bench's JSON rows and table from a result dict (the figures themselves come from anvil)."""

from __future__ import annotations

from typing import Any

from pmoracle.bench.gas import LEDGER_CASES, compute_json_rows, format_gas_table


def _row(total: int, **extra: int) -> dict[str, int]:
    return {"total": total, "calldata": 5_000, "execution": total - 26_000} | extra


def _result() -> dict[str, Any]:
    return {
        "solc": "0.8.37",
        "evmVersion": "cancun",
        "attest": [_row(79_000, n=4, quorum=3), _row(90_000, n=7, quorum=5)],
        "attest_frost": [_row(68_000, n=4, quorum=3), _row(68_100, n=64, quorum=43)],
        "attest_fresh_slot": _row(147_000, n=4, signers=3),
        "record_block_hash": _row(48_000),
        "verify_margin": [_row(38_000, accounts=1_000, depth=10)],
        "slashing": {"slashDeviation": _row(105_000)},
        "fraud_proof": _row(300_000, positions=20, scenarios=29, rows=256, depth=8, signers=3),
        "pricing_challenge": _row(250_000, scenarios=29, rows=256, depth=8, signers=3),
        "attest_fit": {"per_signature": 5_700, "base_total": 62_000, "base_without_intrinsic": 41_000,
                       "points": [(11, 1), (16, 2)]},
    }  # fmt: skip


def test_json_rows_have_exactly_the_issue_keys_for_both_schemes() -> None:
    rows = compute_json_rows(_result())
    assert all(set(row) == {"call", "scheme", "n", "signatures", "total_gas"} for row in rows)
    assert [(r["scheme"], r["n"], r["signatures"], r["total_gas"]) for r in rows] == [
        ("ecdsa", 4, 3, 79_000),
        ("ecdsa", 7, 5, 90_000),
        ("frost", 4, 1, 68_000),
        ("frost", 64, 1, 68_100),
    ]


def test_the_table_has_a_frost_row_per_committee_and_the_spread() -> None:
    table = format_gas_table(_result())
    assert "| recordRoundBlockHash | a round's block hash from its report" in table
    assert "| 48,000 | 5,000 | 22,000 |" in table
    assert "| attestFrost | n=64, one FROST signature (43-of-64 shares), steady state | 68,100 |" in table
    assert "68,000 to 68,100 gas total at n = 4, 64 (spread 0.15%)" in table


def test_the_table_has_the_fraud_proof_and_pricing_challenge_rows() -> None:
    table = format_gas_table(_result())
    assert (
        "| proveFraud | 20 positions, 29 scenarios, 256-row risk tree (depth 8), 3 signers slashed | 300,000 |" in table
    )
    assert (
        "| challengePricing | one call entry, 29 scenarios, 256-row risk tree (depth 8), 3 signers slashed | 250,000 |"
        in (table)
    )


def test_the_table_has_a_row_per_ledger_case() -> None:
    result = _result() | {"ledger": {name: _row(100_000 + i) for i, name in enumerate(LEDGER_CASES)}}
    table = format_gas_table(result)
    for i, (name, case) in enumerate(LEDGER_CASES.items()):
        assert f"| {name} | {case} | {100_000 + i:,} | 5,000 |" in table
    assert "matchOrders_open" not in format_gas_table(_result())  # no ledger figures, no rows
