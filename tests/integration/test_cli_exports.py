"""``pmoracle risk-arrays`` and ``pmoracle margin --crif`` on the bundled examples, and their bad input."""

from __future__ import annotations

import csv
import io
import json
import pathlib
from decimal import Decimal

import pytest

from pmoracle.cli import main
from pmoracle.commands.risk_arrays import format_unit_value
from pmoracle.risk.exports import CRIF_COLUMNS

ROOT = pathlib.Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
MARKET = str(EXAMPLES / "market.json")
SPAN16 = str(EXAMPLES / "params" / "span16.toml")
BTC_INDEX = Decimal(95000)


def test_format_unit_value_is_exact() -> None:
    assert [format_unit_value(v) for v in (0, 1, -1, 12345678, -10**4)] == [
        "0.0000", "0.0001", "-0.0001", "1234.5678", "-1.0000"
    ]  # fmt: skip


def test_csv_lists_named_instruments_then_assets(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["risk-arrays", "--market", MARKET, "--params", SPAN16, "--instrument", "BTC-PERPETUAL"]
    assert main([*argv, "--instrument", "BTC-26MAR27-110000-C", "--instrument", "BTC-PERPETUAL"]) == 0
    rows = list(csv.reader(io.StringIO(capsys.readouterr().out)))
    header, body = rows[0], rows[1:]
    assert header[:5] == ["instrument", "kind", "underlying", "base_value_usd", "short_option_addon_usd"]
    assert [r[:3] for r in body] == [
        ["BTC-PERPETUAL", "perpetual", "BTC"],
        ["BTC-26MAR27-110000-C", "call", "BTC"],
        ["BTC", "asset", "BTC"],
        ["ETH", "asset", "ETH"],
        ["USDC", "asset", ""],
    ]
    # span16 with two underlyings: (7 moves x 2 vols + 2 extremes) x (together + alone x 2 + opposite x 2),
    # identical scenarios kept once (a zero move is the same in every mode)
    labels = header[5:]
    assert len(labels) == len(set(labels)) and all(len(r) == len(header) for r in body)
    # the perpetual moves by the BTC index x the scenario's BTC move (span16: BTC scan range 16%)
    perp = dict(zip(labels, body[0][5:], strict=True))
    assert perp["together: BTC -16.0% ETH -20.0% vol up"] == "-15200.0000"
    assert perp["together: BTC +5.3% ETH +6.7% vol down"] == "5066.6667"  # 95000 x 0.16 / 3, rounded
    assert perp["together: extreme BTC +32.0% ETH +40.0% (35% cover)"] == "30400.0000"
    assert body[0][3:5] == ["95000.0000", "0.0000"]
    assert body[1][4] == "475.0000"  # short-option minimum: 0.5% of the index
    assert body[4][3:] == ["1.0000", "0.0000"] + ["0.0000"] * len(labels)


def test_json_carries_scenarios_units_and_rows(tmp_path: pathlib.Path) -> None:
    out = tmp_path / "arrays.json"
    argv = ["risk-arrays", "--market", MARKET, "--format", "json", "--out", str(out)]
    assert main([*argv, "--portfolio", str(EXAMPLES / "portfolios" / "covered_call.json")]) == 0
    doc = json.loads(out.read_text())
    assert set(doc["units"]) >= {"base_value", "short_option_addon", "risk_array"}
    assert doc["params_hash"].startswith("0x") and len(doc["params_hash"]) == 66
    scenarios = doc["scenarios"]
    assert [s["index"] for s in scenarios] == list(range(len(scenarios)))
    assert {s["cover"] for s in scenarios} == {"1", "7/20"}  # the default's extremes count at 35%
    names = [r["instrument"] for r in doc["instruments"]]
    assert names == ["BTC-26MAR27-110000-C", "BTC", "ETH", "USDC"]
    btc = doc["instruments"][1]
    for s, pnl in zip(scenarios, btc["risk_array"], strict=True):  # haircut value 90250 x (m - 1), exact to 1e-4
        expected = Decimal(90250) * (Decimal(repr(s["price_multiplier"]["BTC"])) - 1)
        assert abs(Decimal(pnl) - expected) <= Decimal("0.00005") + Decimal("1e-9"), s["label"]


def test_without_instruments_lists_the_perpetuals(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["risk-arrays", "--market", MARKET]) == 0
    names = [r[0] for r in csv.reader(io.StringIO(capsys.readouterr().out))][1:]
    assert names == ["BTC-PERPETUAL", "ETH-PERPETUAL", "BTC", "ETH", "USDC"]


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        (["--instrument", "BTC-32DEC26-1-C"], "--instrument"),
        (["--instrument", "SOL-PERPETUAL"], "SOL"),
        (["--instrument", "BTC-30DEC26-100000-C"], "underlyings.BTC.smiles"),  # no smile for that expiry
        (["--instrument", "BTC-26MAR27-1000-X"], "option type"),
        (["--out", "/nonexistent-dir/arrays.csv"], "--out"),
        (["--portfolio", "/nonexistent.json"], "nonexistent.json"),
    ],
)
def test_bad_input_exits_2_naming_it(extra: list[str], needle: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["risk-arrays", "--market", MARKET, *extra]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert needle in captured.err


def read_crif(path: pathlib.Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        assert tuple(reader.fieldnames or ()) == CRIF_COLUMNS
        return list(reader)


def test_margin_crif_rows_of_the_market_maker(tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    crif = tmp_path / "book.crif.csv"
    portfolio = EXAMPLES / "portfolios" / "market_maker.json"
    assert main(["margin", str(portfolio), "--market", MARKET, "--json", "--crif", str(crif)]) == 0
    report = json.loads(capsys.readouterr().out)
    rows = read_crif(crif)
    assert {(r["ProductClass"], r["Bucket"], r["AmountCurrency"], r["IMModel"]) for r in rows} == {
        ("Equity", "Residual", "USD", "SIMM")
    }
    assert all(r["Amount"] == r["AmountUSD"] and r["Qualifier"] == "BTC" for r in rows)
    assert [(r["TradeID"], r["RiskType"], r["Label1"]) for r in rows] == [
        ("BTC-27DEC26-95000-C", "Risk_Equity", ""),
        ("BTC-27DEC26-95000-C", "Risk_EquityVol", "1m"),  # 32 days: between 1m and 3m, mostly 1m
        ("BTC-27DEC26-95000-C", "Risk_EquityVol", "3m"),
        ("BTC-27DEC26-95000-P", "Risk_Equity", ""),
        ("BTC-27DEC26-95000-P", "Risk_EquityVol", "1m"),
        ("BTC-27DEC26-95000-P", "Risk_EquityVol", "3m"),
        ("BTC-PERPETUAL", "Risk_Equity", ""),
    ]  # USDC collateral moves with nothing: no row
    assert rows[-1]["Amount"] == "788.500000"  # 0.83 BTC x 95000 x 1%
    # the vega rows add up to the report's vega per vol point (options' deltas are on their forwards, not the index)
    vega = sum(float(r["Amount"]) for r in rows if r["RiskType"] == "Risk_EquityVol")
    assert vega == pytest.approx(report["greeks"]["BTC"]["vega"], rel=1e-6)


def test_margin_crif_unwritable_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    portfolio = str(EXAMPLES / "portfolios" / "covered_call.json")
    assert main(["margin", portfolio, "--market", MARKET, "--crif", "/nonexistent-dir/x.csv"]) == 2
    captured = capsys.readouterr()
    assert "--crif" in captured.err and captured.out == ""


def test_a_dampened_document_runs_in_margin_risk_arrays_and_crif(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``extreme.dampener_usd`` (refused by a node) runs in the CLI: ``margin --json`` adds each scenario's counted
    P&L, ``risk-arrays`` each scenario's amount (the per-unit rows are the same), ``--crif`` the same sensitivities."""
    deribit = (EXAMPLES / "params" / "deribit-pm.toml").read_text()
    damped = tmp_path / "deribit-damped.toml"
    damped.write_text(deribit.replace("[extreme]\n", '[extreme]\ndampener_usd = "25000"\n', 1))
    portfolio = str(EXAMPLES / "portfolios" / "naked_short.json")
    reports, crifs, arrays = [], [], []
    for k, params in enumerate((str(EXAMPLES / "params" / "deribit-pm.toml"), str(damped))):
        crif = tmp_path / f"{k}.crif.csv"
        assert main(["margin", portfolio, "--market", MARKET, "--params", params, "--json", "--crif", str(crif)]) == 0
        reports.append(json.loads(capsys.readouterr().out))
        crifs.append(read_crif(crif))
        out = tmp_path / f"{k}.json"
        assert main(["risk-arrays", "--market", MARKET, "--params", params, "--format", "json", "--out", str(out),
                     "--portfolio", portfolio]) == 0  # fmt: skip
        arrays.append(json.loads(out.read_text()))
    plain, damped_report = reports
    assert crifs[0] == crifs[1]
    assert [r["risk_array"] for r in arrays[0]["instruments"]] == [r["risk_array"] for r in arrays[1]["instruments"]]
    assert all("dampener_usd" not in s for s in arrays[0]["scenarios"])
    amounts = {s["label"]: s["dampener_usd"] for s in arrays[1]["scenarios"]}
    assert amounts["together: extreme BTC -66.0% ETH -82.5% vol up (24.2424% cover)"] == "78125.00000000"
    assert all("counted_pnl" not in r for r in plain["risk_array"])
    assert [r["pnl"] for r in plain["risk_array"]] == [r["pnl"] for r in damped_report["risk_array"]]
    counted = [Decimal(r["counted_pnl"]) for r in damped_report["risk_array"]]
    mm = Decimal(damped_report["maintenance_margin"])
    assert Decimal(plain["maintenance_margin"]) > mm >= max(Decimal(0), -min(counted))  # 79,115.61 -> 44,511.19
    assert damped_report["params_hash"] != plain["params_hash"]
