"""The chain benchmark's options."""

from __future__ import annotations

import pytest

from pmoracle.bench.chain import parse_workers
from pmoracle.cli import build_parser
from pmoracle.errors import InputError


def test_workers_parse_and_bad_lists_are_refused_by_option_name() -> None:
    assert parse_workers("1,2, 4") == (1, 2, 4)
    for bad in ("", "two", "0", "65", "1,,x"):
        with pytest.raises(InputError) as caught:
            parse_workers(bad)
        assert caught.value.field == "--workers"


def test_bench_chain_options() -> None:
    args = build_parser().parse_args(["bench", "chain", "--accounts", "100000", "--changed", "10000", "--json"])
    assert (args.accounts, args.changed, args.workers, args.json) == (100_000, 10_000, "1,2,4", True)
