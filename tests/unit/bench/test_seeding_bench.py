"""The seeding benchmark's options, and the shape of its figures on a real anvil."""

from __future__ import annotations

import json

import pytest

from pmoracle.bench.seeding import format_rows, measure_seeding, parse_accounts
from pmoracle.cli import build_parser
from pmoracle.errors import InputError


def test_accounts_parse_and_bad_lists_are_refused_by_option_name() -> None:
    assert parse_accounts("1000, 10000,100000") == (1_000, 10_000, 100_000)
    for bad in ("", "many", "0", "1000001", "10,,x"):
        with pytest.raises(InputError) as caught:
            parse_accounts(bad)
        assert caught.value.field == "--accounts"


def test_bench_seeding_options() -> None:
    args = build_parser().parse_args(["bench", "seeding", "--accounts", "1000,100000", "--json"])
    assert (args.suite, args.accounts, args.seed, args.json) == ("seeding", "1000,100000", 1, True)


def test_a_row_has_every_figure_and_goes_through_json() -> None:
    row = measure_seeding(300)
    assert json.loads(json.dumps(row)) == row
    assert set(row) == {
        "accounts", "trades", "setup_s", "transactions", "blocks", "accounts_per_s", "anvil_rss_mib",
        "anvil_peak_rss_mib", "empty_block_ms",
    }  # fmt: skip
    assert row["accounts"] == 300
    assert row["trades"] >= 300  # one to three matches per account
    # about 110 transactions list the market; the deposits and matches go through the seeder, 250 a transaction
    assert 0 < row["transactions"] < row["trades"] / 2
    assert 0 < row["anvil_rss_mib"] <= row["anvil_peak_rss_mib"]
    assert format_rows([row]).count("\n") == 2
