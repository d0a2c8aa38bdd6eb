"""``pmoracle bench chain`` end to end on a small ledger: its figures exist and its incremental read is exact."""

from __future__ import annotations

from pmoracle.bench.chain import run_chain_bench


def test_small_chain_bench_reports_full_and_incremental_reads_that_agree() -> None:
    figures = run_chain_bench(accounts=40, page=7, workers=(1, 3), changed=10)
    assert figures["accounts"] == 40
    assert figures["changed_accounts"] == 10  # 5 trades between pairs of existing accounts
    assert figures["incremental_equals_full"] is True and figures["packed_equals_abi"] is True
    for key in ("setup_s", "full_read_s", "full_read_abi_s", "full_read_workers_1_s", "full_read_workers_3_s",
                "incremental_read_s", "incremental_read_scan_s", "incremental_read_abi_s"):  # fmt: skip
        assert figures[key] > 0, key
    assert figures["full_read_best_s"] == min(figures["full_read_s"], figures["full_read_workers_1_s"],
                                              figures["full_read_workers_3_s"])  # fmt: skip
    assert any("read_snapshot ABI pages, 40 accounts, page 7 (" in label for label, _ in figures["rows"])
    assert figures["incremental_read_calls"] == 4 + 3  # the head, the logs, the header, one read: no fallback
    assert figures["incremental_read_scan_calls"] == 4 + 1  # the head and one scan
    # over a funding payment every holder of the perpetual is re-read: here every account, in one call
    assert figures["funding_read_equals_full"] is True and figures["funding_read_accounts"] == 40
    assert figures["funding_read_calls"] == 4 + 3 and figures["funding_read_s"] > 0
