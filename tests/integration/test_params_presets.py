"""The venue presets in examples/params/: each parses, satisfies the schema, lays out its venue's published scenario
grid, and margins every example book through ``pmoracle margin``."""

from __future__ import annotations

import json
import pathlib
from decimal import Decimal
from fractions import Fraction

import pytest

from pmoracle.cli import main
from pmoracle.config.params import check_params_schema
from pmoracle.risk.documents import parse_market
from pmoracle.risk.params import parse_params
from pmoracle.risk.scenarios import compute_scenarios

ROOT = pathlib.Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
MARKET = EXAMPLES / "market.json"
PRESETS = ("span16.toml", "deribit-pm.toml")
PORTFOLIOS = sorted((EXAMPLES / "portfolios").glob("*.json"))


def btc_only_scenarios(name: str) -> list[tuple[float, float, Fraction]]:
    """Return (BTC price multiplier, vol shock, cover) of each scenario of preset ``name`` on a BTC-only market."""
    doc = json.loads(MARKET.read_text())
    doc["underlyings"] = {"BTC": doc["underlyings"]["BTC"]}
    doc["assets"] = {"USDC": doc["assets"]["USDC"]}
    scenarios = compute_scenarios(parse_params((EXAMPLES / "params" / name).read_text()), parse_market(doc))
    return [
        (float(scenarios.price_mult[s, 0]), float(scenarios.vol_shock[s, 0]), Fraction(int(c), scenarios.cover_den))
        for s, c in enumerate(scenarios.cover_num)
    ]


def test_span16_is_spans_standard_table_in_order() -> None:
    # CME SPAN's 16 scenarios: (price move in scan ranges, vol move in vol scan ranges, fraction of loss counted)
    span = [(0, 1), (0, -1), (1, 1), (1, -1), (-1, 1), (-1, -1), (2, 1), (2, -1), (-2, 1), (-2, -1),
            (3, 1), (3, -1), (-3, 1), (-3, -1)]  # fmt: skip
    expected = [(1 + thirds * 0.16 / 3, vol, Fraction(1)) for thirds, vol in span]
    expected += [(1 + 2 * 0.16, 0.0, Fraction(35, 100)), (1 - 2 * 0.16, 0.0, Fraction(35, 100))]
    got = btc_only_scenarios("span16.toml")
    assert len(got) == 16
    for (mult, vol, cover), (want_mult, want_vol, want_cover) in zip(got, expected, strict=True):
        assert mult == pytest.approx(want_mult, rel=1e-15)
        assert (vol, cover) == (want_vol, want_cover)
    params = parse_params((EXAMPLES / "params" / "span16.toml").read_text())
    assert params.vol_power == 0 and params.horizon_seconds == 86400  # one vol scan range; one-day look-ahead


def test_deribit_pm_is_nine_price_buckets_by_three_vol_states_plus_extended_moves() -> None:
    params = parse_params((EXAMPLES / "params" / "deribit-pm.toml").read_text())
    got = btc_only_scenarios("deribit-pm.toml")
    grid, extended = got[:27], got[27:]
    buckets = sorted({round(m - 1, 12) for m, _, _ in grid})
    assert buckets == [round(-0.16 + 0.04 * k, 12) for k in range(9)]  # +-16% in 9 evenly spaced buckets
    # vol up +50%, same, down -25% (relative, at 30 days): shock x shift
    assert sorted({v * params.vol_shift for _, v, _ in grid}) == [-0.25, 0.0, 0.5]
    assert all(cover == 1 for _, _, cover in grid)
    # Deribit's extended table: -66%, -33%, +50% .. +500%, on vol range up only (the grid's up state), each counting
    # extended_table_factor (1) x range / |move| of its P&L
    moves = [-0.66, -0.33, 0.5, 1.0, 2.0, 3.0, 4.0, 5.0]
    assert [round(m - 1, 12) for m, _, _ in extended] == moves
    assert all(vol == max(v for _, v, _ in grid) == 1.0 for _, vol, _ in extended)
    assert [cover for _, _, cover in extended] == [Fraction("0.16") / abs(Fraction(str(m))) for m in moves]


@pytest.mark.parametrize("preset", PRESETS)
@pytest.mark.parametrize("portfolio", PORTFOLIOS, ids=lambda p: p.stem)
def test_every_preset_margins_every_example(
    preset: str, portfolio: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = EXAMPLES / "params" / preset
    assert check_params_schema(path.read_text()) == ()
    argv = ["margin", str(portfolio), "--market", str(MARKET), "--params", str(path), "--json"]
    assert main(argv) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["params_hash"] == "0x" + parse_params(path.read_text()).params_hash.hex()
    mm, im = Decimal(report["maintenance_margin"]), Decimal(report["initial_margin"])
    assert 0 <= mm <= im
    assert (report["roll_shock"] is None) == (preset != "deribit-pm.toml")  # Deribit's roll shock, inside MM
    # at least every scenario's loss at its cover
    scenarios = compute_scenarios(parse_params(path.read_text()), parse_market(json.loads(MARKET.read_text())))
    assert len(report["risk_array"]) == len(scenarios)
    for row, cover in zip(report["risk_array"], scenarios.cover_num, strict=True):
        assert Fraction(mm) >= -Fraction(Decimal(row["pnl"])) * Fraction(int(cover), scenarios.cover_den)


def test_derive_pmrm2_is_derives_published_scenario_set() -> None:
    params = parse_params((EXAMPLES / "params" / "derive-pmrm2.toml").read_text()).pmrm2
    assert params is not None
    grid = [(round(s.spot_shock - 1, 12), s.vol) for s in params.scenarios[:22]]
    # +-18% in 4.5% steps, vol up/none/down inside +-13.5%, vol up only at +-18%
    expected = [(0.18, "up")]
    for k in (3, 2, 1, 0, -1, -2, -3):
        expected += [(round(0.045 * k, 12), v) for v in ("down", "none", "up")]
    assert grid == expected
    assert [(s.spot_shock, s.vol) for s in params.scenarios[22:29]] == [
        (0.82, "up"), (0.34, "up"), (0.67, "up"), (1.5, "up"), (2.0, "up"), (3.0, "up"), (4.0, "up")
    ]  # fmt: skip
    assert all(s.dampening < 1 for s in params.scenarios[23:29])  # the tails are dampened
    assert [(s.spot_shock, s.vol) for s in params.scenarios[29:]] == [(1.0, "linear"), (1.0, "abs")]


def test_derive_pmrm2_margins_an_imported_case(tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    case = ROOT / "tests" / "vectors" / "derive_pmrm2" / "test_104_BasisContingencyParameters_ADD_FACTOR_min.json"
    assert main(["import", "derive-pmrm2", str(case), "--out", str(tmp_path)]) == 0
    capsys.readouterr()
    preset = EXAMPLES / "params" / "derive-pmrm2.toml"
    argv = ["margin", str(tmp_path / "portfolio.json"), "--market", str(tmp_path / "market.json")]
    assert main([*argv, "--params", str(preset), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["model"] == "pmrm2"
    assert report["params_hash"] == "0x" + parse_params(preset.read_text()).params_hash.hex()
    mm, im = Decimal(report["maintenance_margin"]), Decimal(report["initial_margin"])
    assert 0 < mm <= im
