"""``pmoracle margin`` end to end: the bundled examples, the JSON schema, the heatmap, and bad input."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys
from decimal import Decimal
from typing import Any

import pytest

from pmoracle.cli import main

ROOT = pathlib.Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
MARKET = str(EXAMPLES / "market.json")
PORTFOLIOS = sorted((EXAMPLES / "portfolios").glob("*.json"))
MONEY_FIELDS = (
    "maintenance_margin",
    "initial_margin",
    "equity",
    "expected_shortfall",
    "isolated_margin",
    "cross_margin",
    "capital_released",
)


def run_json(capsys: pytest.CaptureFixture[str], portfolio: pathlib.Path | str) -> dict[str, Any]:
    assert main(["margin", str(portfolio), "--market", MARKET, "--json"]) == 0
    out: dict[str, Any] = json.loads(capsys.readouterr().out)
    return out


def write(tmp_path: pathlib.Path, name: str, obj: Any) -> str:
    path = tmp_path / name
    path.write_text(obj if isinstance(obj, str) else json.dumps(obj))
    return str(path)


@pytest.mark.parametrize("portfolio", PORTFOLIOS, ids=lambda p: p.stem)
def test_every_example_prints_a_report(portfolio: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["margin", str(portfolio), "--market", MARKET]) == 0
    out = capsys.readouterr().out
    for heading in ("Maintenance margin", "Initial margin", "Equity", "Worst scenario", "Greeks", "Isolated", "Cross"):
        assert heading in out


def test_json_schema_and_exact_money(capsys: pytest.CaptureFixture[str]) -> None:
    report = run_json(capsys, EXAMPLES / "portfolios" / "two_asset.json")
    for field in MONEY_FIELDS:
        value = report[field]
        assert isinstance(value, str)
        assert Decimal(value).as_tuple().exponent == -8, field  # exactly 8 decimals, never a float
    assert report["params_hash"].startswith("0x") and len(report["params_hash"]) == 66
    assert set(report["greeks"]) == {"BTC", "ETH"}
    assert set(report["greeks"]["ETH"]) == {"delta", "gamma", "vega", "theta"}
    risk_array = report["risk_array"]
    worst = report["worst_scenario"]
    assert risk_array[worst["index"]] == {"scenario": worst["label"], "pnl": worst["pnl"]}
    # The worst scenario is the largest loss of the (non-extreme, fully counted) scenarios, so MM covers it.
    assert Decimal(report["maintenance_margin"]) >= -Decimal(worst["pnl"])
    assert Decimal(report["initial_margin"]) >= Decimal(report["maintenance_margin"])
    released = Decimal(report["isolated_margin"]) - Decimal(report["maintenance_margin"])
    assert Decimal(report["capital_released"]) == released


def test_market_maker_portfolio_margin_is_below_isolated_and_cross(capsys: pytest.CaptureFixture[str]) -> None:
    report = run_json(capsys, EXAMPLES / "portfolios" / "market_maker.json")
    mm = Decimal(report["maintenance_margin"])
    assert 0 < mm < Decimal(report["isolated_margin"])
    assert mm < Decimal(report["cross_margin"])
    assert Decimal(report["capital_released"]) > 0
    assert abs(report["greeks"]["BTC"]["delta"]) < 0.1  # the perpetual hedges the straddle's delta


def test_plot_writes_a_png(tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    png = tmp_path / "risk.png"
    portfolio = str(EXAMPLES / "portfolios" / "two_asset.json")
    assert main(["margin", portfolio, "--market", MARKET, "--plot", str(png)]) == 0
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(data) > 10_000
    assert "Maintenance margin" in capsys.readouterr().out


def test_custom_params_change_the_hash(tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    from pmoracle.config.params import default_params_text

    params = write(tmp_path, "p.toml", default_params_text().replace("scan_range = 0.16", "scan_range = 0.10"))
    portfolio = str(EXAMPLES / "portfolios" / "naked_short.json")
    default = run_json(capsys, portfolio)
    assert main(["margin", portfolio, "--market", MARKET, "--params", params, "--json"]) == 0
    custom = json.loads(capsys.readouterr().out)
    assert custom["params_hash"] != default["params_hash"]


def bad_market() -> dict[str, Any]:
    market: dict[str, Any] = json.loads((EXAMPLES / "market.json").read_text())
    market["underlyings"]["BTC"]["smiles"]["27DEC26"]["svi"]["b"] = "NaN"
    return market


@pytest.mark.parametrize(
    ("portfolio", "market", "field"),
    [
        ('{"positions": [', None, "bad.json: malformed JSON at line 1"),
        ({"positions": [{"instrument": "BTC-27DEC26-95000-Q", "size": "1"}]}, None, "positions[0].instrument"),
        ({"positions": [{"instrument": "SOL-PERPETUAL", "size": "1"}]}, None, "positions[0].instrument"),
        ({"positions": [{"instrument": "BTC-PERPETUAL", "size": "1e20", "cost": "0"}]}, None, "positions[0].size"),
        ({"collateral": {"USDC": "-1"}}, None, "collateral.USDC"),
        ({"positions": [{"instrument": "BTC-27DEC26-95000-C", "size": "1"}]}, bad_market(), "svi.b"),
    ],
)
def test_bad_input_exits_2_naming_the_field(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str], portfolio: Any, market: Any, field: str
) -> None:
    portfolio_path = write(tmp_path, "bad.json", portfolio)
    market_path = write(tmp_path, "market.json", market) if market is not None else MARKET
    assert main(["margin", portfolio_path, "--market", market_path, "--json"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert field in captured.err
    assert captured.err.count("\n") == 1


def test_expired_positions_are_valued_at_intrinsic_and_named(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # the example market is at 2026-11-25T08:00Z with BTC at 95000: both expired on 20NOV26 and have no smile
    doc = {
        "positions": [
            {"instrument": "BTC-20NOV26-90000-C", "size": "2"},
            {"instrument": "BTC-20NOV26", "size": "-1", "entry_price": "95000"},
            {"instrument": "BTC-PERPETUAL", "size": "-1", "entry_price": "95000"},
        ],
        "collateral": {"USDC": "10000"},
    }
    portfolio_path = write(tmp_path, "expired.json", doc)
    assert main(["margin", portfolio_path, "--market", MARKET, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["equity"] == "20000.00000000"  # 2 x (95000 - 90000) intrinsic + 10000 USDC; futures sold at 95000
    assert main(["margin", portfolio_path, "--market", MARKET]) == 0
    text = capsys.readouterr().out
    assert text.count("expired, valued at intrinsic on the index") == 2


def test_malformed_params_and_missing_file_exit_2(tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    portfolio = str(EXAMPLES / "portfolios" / "naked_short.json")
    params = write(tmp_path, "p.toml", "version = = 1")
    assert main(["margin", portfolio, "--market", MARKET, "--params", params]) == 2
    assert "malformed TOML" in capsys.readouterr().err
    assert main(["margin", portfolio, "--market", str(tmp_path / "nope.json")]) == 2
    captured = capsys.readouterr()
    assert "nope.json" in captured.err and captured.out == ""


def test_duplicate_keys_and_unwritable_plot_exit_2(tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    dup = write(tmp_path, "dup.json", '{"collateral": {"USDC": "1", "USDC": "2"}}')
    assert main(["margin", dup, "--market", MARKET]) == 2
    captured = capsys.readouterr()
    assert "'USDC' appears twice" in captured.err and captured.out == ""
    portfolio = str(EXAMPLES / "portfolios" / "naked_short.json")
    plot = str(tmp_path / "missing-dir" / "risk.png")
    assert main(["margin", portfolio, "--market", MARKET, "--plot", plot]) == 2
    captured = capsys.readouterr()
    assert "--plot" in captured.err and captured.out == ""


def test_subprocess_exit_codes(tmp_path: pathlib.Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    cmd = [sys.executable, "-m", "pmoracle.cli", "margin"]
    ok = subprocess.run(
        [*cmd, str(EXAMPLES / "portfolios" / "market_maker.json"), "--market", MARKET],
        capture_output=True, text=True, env=env, timeout=300, check=False,
    )  # fmt: skip
    assert ok.returncode == 0, ok.stderr
    assert "Capital released" in ok.stdout
    bad = write(tmp_path, "bad.json", {"positions": [{"instrument": "BTC-PERPETUAL", "size": "0.00001"}]})
    failed = subprocess.run(
        [*cmd, bad, "--market", MARKET], capture_output=True, text=True, env=env, timeout=300, check=False
    )
    assert failed.returncode == 2
    assert failed.stdout == ""
    assert "positions[0].size" in failed.stderr and "decimals" in failed.stderr


def test_text_and_json_report_the_same_figures(capsys: pytest.CaptureFixture[str]) -> None:
    portfolio = EXAMPLES / "portfolios" / "naked_short.json"
    report = run_json(capsys, portfolio)
    assert main(["margin", str(portfolio), "--market", MARKET]) == 0
    text = capsys.readouterr().out
    for label, field in (("Maintenance margin", "maintenance_margin"), ("Initial margin", "initial_margin")):
        cents = Decimal(report[field]).quantize(Decimal("0.01"))
        line = next(line for line in text.splitlines() if line.strip().startswith(label))
        assert line.split()[-1] == f"{cents:,.2f}"
    assert report["worst_scenario"]["label"] in text


@pytest.mark.parametrize("portfolio", PORTFOLIOS, ids=lambda p: p.stem)
def test_portfolio_margin_never_exceeds_isolated_on_the_examples(
    portfolio: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Volatile collateral (covered_call: BTC, two_asset: ETH) is charged alone in isolated margin too.
    report = run_json(capsys, portfolio)
    assert Decimal(report["maintenance_margin"]) <= Decimal(report["isolated_margin"])
    assert Decimal(report["capital_released"]) >= 0


def test_ledger_in_the_document_moves_equity_only(tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    # the example market has BTC at 95000: a perpetual bought at 90000.5 with 120.25 of funding owed, and cash
    doc = {
        "positions": [{"instrument": "BTC-PERPETUAL", "size": "2", "entry_price": "90000.5", "funding": "120.25"}],
        "cash": "-1000.000000000000000001",
    }
    report = run_json(capsys, write(tmp_path, "perp.json", doc))
    # 2 x 95000 - 180001 - 120.25 - 1000.000000000000000001, floored to 1e-8 USD
    assert report["equity"] == "8878.74999999"
    assert report["cash"] == "-1000.000000000000000001"
    assert report["positions"][0] == {"instrument": "BTC-PERPETUAL", "size": "2.0000", "cost": "180001",
                                           "funding": "120.25"}  # fmt: skip
    flat = run_json(capsys, write(tmp_path, "flat.json", {"positions": [doc["positions"][0] | {"funding": "0"}]}))
    assert (flat["maintenance_margin"], flat["initial_margin"]) == (
        report["maintenance_margin"], report["initial_margin"],
    )  # fmt: skip
    bad = write(tmp_path, "bad.json", {"positions": [{"instrument": "BTC-PERPETUAL", "size": "2"}]})
    assert main(["margin", bad, "--market", MARKET, "--json"]) == 2
    assert "positions[0]: a future or perpetual needs its entry_price" in capsys.readouterr().err


def test_the_concentration_addon_has_its_own_line_and_key(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    params = str(EXAMPLES / "params" / "concentration.toml")
    doc = {"positions": [{"instrument": "BTC-PERPETUAL", "size": "1500", "entry_price": "95000"}]}
    portfolio = write(tmp_path, "whale.json", doc)
    assert main(["margin", portfolio, "--market", MARKET, "--params", params, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert (
        main(["margin", portfolio, "--market", MARKET, "--params", str(EXAMPLES / "params" / "stress.toml"), "--json"])
        == 0
    )
    plain = json.loads(capsys.readouterr().out)
    addon = Decimal(report["concentration_addon"])
    assert plain["concentration_addon"] is None
    # 1,500 BTC against 20,000 a day, 200 free: 0.035 x sqrt(1300 / 20000) x 1300 x 95,000 USD
    assert abs(addon - Decimal("1102025.59237524")) < Decimal("0.00000002") and addon.as_tuple().exponent == -8
    assert Decimal(report["maintenance_margin"]) == Decimal(plain["maintenance_margin"]) + addon
    assert main(["margin", portfolio, "--market", MARKET, "--params", params]) == 0
    line = next(line for line in capsys.readouterr().out.splitlines() if "of which concentration add-on" in line)
    assert line.split()[-1] == f"{addon.quantize(Decimal('0.01')):,.2f}"
    assert main(["margin", portfolio, "--market", MARKET]) == 0
    assert "concentration add-on" not in capsys.readouterr().out
