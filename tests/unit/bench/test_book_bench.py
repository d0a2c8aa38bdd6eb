"""The book benchmark on small books: its round is the node's ``compute_round``, the collector is paused during the
stages unless ``--gc-on``, and the command checks its options and prints one JSON object (no timing is asserted)."""

from __future__ import annotations

import argparse
import gc
import json

import pytest

from pmoracle.bench.book import (
    STAGES,
    bench_snapshot,
    format_book_bench,
    make_raw_accounts,
    measure_book,
    run,
)
from pmoracle.chain.snapshot import convert_accounts
from pmoracle.cli import main as cli_main
from pmoracle.config.params import default_params
from pmoracle.errors import InputError
from pmoracle.node.gcpause import pauses_in_progress
from pmoracle.node.round import compute_round
from pmoracle.testing.committees import make_test_committee


def test_the_accounts_are_the_chain_benchs_long_and_short_perpetuals() -> None:
    long, short, third = make_raw_accounts(0, 3)
    assert long == ((1).to_bytes(20, "big"), 0, [(1, 10_000, 60_000 * 10**18, 0)], [])
    assert short == ((2).to_bytes(20, "big"), 0, [(1, -10_000, -60_000 * 10**18, 0)], [])
    assert third[0] == (3).to_bytes(20, "big") and third[2] == long[2]


def test_the_benchs_round_is_compute_rounds_and_the_collector_is_paused_only_during_it() -> None:
    head = bench_snapshot()
    portfolios = convert_accounts([make_raw_accounts(0, 301)], dict(head.instruments), {}, dict(head.funding))
    expected = compute_round(bench_snapshot(portfolios), default_params(), make_test_committee(4).config).report
    was = gc.isenabled()
    gc.enable()
    try:
        # pages of 100: the conversion goes on across pages as a full read does
        paused = measure_book(301, page=100)
        assert gc.isenabled() and pauses_in_progress() == 0
        on = measure_book(2_000, gc_on=True)
    finally:
        (gc.enable if was else gc.disable)()
    assert paused["report"] == {
        "accounts_root": "0x" + expected.accounts_root.hex(),
        "account_count": 301,
        "risk_arrays_root": "0x" + expected.risk_arrays_root.hex(),
    }
    assert paused["gc_on"] is False and paused["gc_runs"] == 0 and paused["gc_s"] == 0
    assert on["gc_runs"] > 0  # 2,000 accounts allocate past the collector's first threshold
    assert all(paused[f"{stage}_s"] >= 0 and paused[f"{stage}_cpu_s"] >= 0 for stage in STAGES)
    assert paused["peak_rss_mib"] >= paused["rss_start_mib"] > 0


def test_the_command_measures_each_size_in_its_own_process_and_prints_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["bench", "book", "--accounts", "40,60", "--gc-on", "--json"]) == 0
    figures = json.loads(capsys.readouterr().out)
    assert figures["gc_on"] is True and figures["cpus"] >= 1 and len(figures["loadavg_before"]) == 3
    assert [row["accounts"] for row in figures["sizes"]] == [40, 60]
    assert all(row["gc_on"] is True and row["report"]["account_count"] == row["accounts"] for row in figures["sizes"])
    expected_keys = {f"{stage}_s" for stage in STAGES} | {f"{stage}_cpu_s" for stage in STAGES} | {
        "accounts", "gc_on", "total_s", "total_cpu_s", "gc_runs", "gc_full_runs", "gc_s", "gc_after_s",
        "gc_after_frozen_s", "rss_start_mib", "peak_rss_mib", "report",
    }  # fmt: skip
    assert set(figures["sizes"][0]) == expected_keys
    text = format_book_bench(figures)
    assert "cyclic GC on" in text and "peak RSS" in text and "load average" in text


@pytest.mark.parametrize("accounts", ["0", "1", "x", "", "10,20000000"])
def test_bad_account_counts_name_the_option(accounts: str) -> None:
    with pytest.raises(InputError) as info:
        run(argparse.Namespace(accounts=accounts, gc_on=False, json=False, single=None))
    assert info.value.field == "--accounts"
