"""The leaves benchmark runs end to end against the real API server: both routes give the same leaves, which rebuild
the root (no timing is asserted)."""

from __future__ import annotations

import argparse

import pytest

from pmoracle.bench.leaves import format_leaves_bench, run, run_leaves_bench
from pmoracle.errors import InputError


def test_both_routes_serve_the_same_leaves_and_the_text_names_the_figures() -> None:
    figures = run_leaves_bench((3, 40), margin_up_to=10)
    small, large = figures["sizes"]
    assert small["accounts"] == 3 and small["leaves_rebuild_root"] and small["margin_leaves_equal"]
    assert large["accounts"] == 40 and large["leaves_rebuild_root"] and "margin_per_account_s" not in large
    assert 40 * 100 < large["body_bytes"] < 40 * 200  # about 130 bytes a leaf
    assert all(row[key] >= 0 for row in figures["sizes"] for key in ("leaves_first_s", "leaves_cached_s", "verify_s"))
    text = format_leaves_bench(figures)
    assert "/v1/leaves first s" in text and "load average" in text


def test_bad_options_name_the_option() -> None:
    for accounts, margin, option in (("0", 1, "--accounts"), ("x", 1, "--accounts"), ("5", -1, "--margin-up-to")):
        with pytest.raises(InputError) as info:
            run(argparse.Namespace(accounts=accounts, margin_up_to=margin, json=False))
        assert info.value.field == option
