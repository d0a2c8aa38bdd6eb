"""Deribit's published ``private/pme/simulate`` outputs (tests/vectors/deribit_pme/), every input and every output of
the risk matrix reproduced by the grid engine with ``deribit-pm.toml``: the standard and extended risk vectors of
each instrument, the worst case and its bucket, the roll shock, the risk matrix margin and the MM / IM ratio."""

from __future__ import annotations

import json
import pathlib
from fractions import Fraction
from typing import Any

import pytest

from pmoracle.risk.inputs import (
    MONEY_SCALE,
    PRICE_SCALE,
    SIZE_SCALE,
    Instrument,
    InstrumentKind,
    MarketSnapshot,
    Portfolio,
    Position,
    UnderlyingMarket,
)
from pmoracle.risk.margin import Book
from pmoracle.risk.params import RiskParams, parse_params

from .factories import account

ROOT = pathlib.Path(__file__).resolve().parents[3]
VECTORS = sorted((ROOT / "tests" / "vectors" / "deribit_pme").glob("*.json"))
DERIBIT = (ROOT / "examples" / "params" / "deribit-pm.toml").read_text()
# Deribit's sizes have 9 decimals, the engine's 4: the book x 1e5 holds whole engine sizes. Every figure compared is
# linear in the sizes (the delta shock, which is not, is 0 in both responses and not expressed).
SCALE = 10**5
EXTENDED = ("-0.66", "-0.33", "0.5", "1", "2", "3", "4", "5")  # Deribit's extended moves
# Deribit publishes binary64 values (17 significant digits); the engine's rows of these linear positions are exact
TOLERANCE = Fraction(1, 10**12)
# Deribit's risk_matrix_margin differs from its own worst_case + roll_shock by 6.1e-9 (BTC) and 1.7e-9 (ETH) relative
DERIBIT_ROUNDING = Fraction(1, 10**8)


def _case(path: pathlib.Path) -> dict[str, Any]:
    return dict(json.loads(path.read_text()))


def _params(case: dict[str, Any]) -> RiskParams:
    """Return ``deribit-pm.toml`` at the case's price range, extended moves and roll-shock rates."""
    symbol, model = case["currency"], case["model_params"]
    scan = Fraction(model["price_range"])
    text = DERIBIT.replace("BTC = 0.16", f"BTC = {model['price_range']}", 1)
    text = text.replace("ETH = 0.20", f"ETH = {model['price_range']}", 1)
    moves = ", ".join(f'"{Fraction(m) / scan}"' for m in EXTENDED)
    text = text.replace('"-33/8", "-33/16", "25/8", "25/4", "25/2", "75/4", "25", "125/4"', moves, 1)
    params = parse_params(text)
    assert params.roll_shock is not None
    assert params.scan_range_of(symbol) == float(scan)
    assert dict(params.roll_shock.min_move)[symbol] == Fraction(model["min_annualised_move"])
    assert dict(params.roll_shock.annual_move)[symbol] == Fraction(model["annualised_move_risk"])
    assert len(params.price_moves) == 2 * model["buckets_count"] + 1
    assert len(params.vol_shocks) == model["vol_scenarios_count"]
    assert params.extreme_cover == Fraction(model["extended_table_factor"])
    return params


def _instrument(case: dict[str, Any], name: str) -> Instrument:
    symbol = case["currency"]
    if name == f"{symbol}-PERPETUAL":
        return Instrument(symbol, InstrumentKind.PERPETUAL)
    return Instrument(symbol, InstrumentKind.FUTURE, expiry=case["expiries"][name])


def _book(case: dict[str, Any]) -> tuple[Book, list[Fraction], list[Fraction]]:
    """Return the engine's book of the case x SCALE, Deribit's sizes and each scenario's exact price multiplier."""
    index = Fraction(case["index_price"])
    market = MarketSnapshot(
        time=case["time"], underlyings=(UnderlyingMarket(case["currency"], int(index * PRICE_SCALE)),)
    )
    params = _params(case)
    sizes = [Fraction(q) for q in case["positions"].values()]
    positions = tuple(
        Position(_instrument(case, name), int(q * SCALE * SIZE_SCALE))
        for name, q in zip(case["positions"], sizes, strict=True)
    )
    assert all(p.size == q * SCALE * SIZE_SCALE for p, q in zip(positions, sizes, strict=True))  # exact sizes
    book = Book(market, params, [Portfolio(positions=positions, account=account(1))])
    scan = Fraction(case["model_params"]["price_range"])
    mults = [1 + m * scan for m in params.price_moves for _ in params.vol_shocks]
    mults += [1 + Fraction(m) for m in EXTENDED]
    assert len(mults) == len(book.scenarios)  # one underlying: the joint modes coincide
    assert all(
        float(m) == pytest.approx(float(x), rel=1e-15)
        for m, x in zip(mults, book.scenarios.price_mult[:, 0], strict=True)
    )
    return book, sizes, mults


def _valued_at(mults: list[Fraction], s: int) -> Fraction:
    """Return the price multiplier at which Deribit states scenario ``s``'s coin P&L: the scenario's own, or for an
    extended move the edge of the range on its side (its counted P&L, a fraction range / |move| of the move's P&L in
    USD, stated in coin at the edge price: docs/parameters.md)."""
    grid = mults[:27]
    if s < len(grid):
        return mults[s]
    return max(grid) if mults[s] > 1 else min(grid)


def _relative(got: Fraction, want: Fraction) -> Fraction:
    return abs(got - want) / abs(want) if want else abs(got)


@pytest.mark.parametrize("path", VECTORS, ids=lambda p: p.stem)
def test_every_risk_vector_value(path: pathlib.Path) -> None:
    """Each instrument's 27 standard values (9 price buckets x 3 vol states) and 8 extended values: Deribit's coin
    P&L of the position equals the engine's counted USD P&L divided by the index it is stated at."""
    case = _case(path)
    book, sizes, mults = _book(case)
    index = Fraction(case["index_price"])
    cover_den = book.scenarios.cover_den
    worst = Fraction(0)
    for name, q in zip(case["positions"], sizes, strict=True):
        row = book.arrays.instruments.index(_instrument(case, name))
        published = case["expected"]["initial_risk_vectors"][name]
        want = [Fraction(v) for v in published["standard"] + published["extended"]]
        assert len(want) == len(book.scenarios) == 35
        for s, value in enumerate(want):
            usd_per_coin = Fraction(int(book.arrays.r[row, s]) * SIZE_SCALE, MONEY_SCALE)
            usd_per_coin *= Fraction(int(book.scenarios.cover_num[s]), cover_den)
            coin = q * usd_per_coin / (index * _valued_at(mults, s))
            worst = max(worst, _relative(coin, value))
            assert _relative(coin, value) < TOLERANCE, (name, s, float(coin), float(value))
        # a linear position's vol states are equal, in Deribit's vector and in the engine's rows
        assert all(len(set(want[3 * b : 3 * b + 3])) == 1 for b in range(9))
        assert all(len(set(book.arrays.r[row, 3 * b : 3 * b + 3].tolist())) == 1 for b in range(9))
    print(f"{path.stem}: worst relative error of a risk-vector value {float(worst):.2e}")


@pytest.mark.parametrize("path", VECTORS, ids=lambda p: p.stem)
def test_the_worst_case_the_roll_shock_and_the_risk_matrix_margin(path: pathlib.Path) -> None:
    """The engine's MM is Deribit's risk matrix margin (its initial margin): the worst scenario's loss plus the roll
    shock; Deribit's MM is ``mm_factor`` times it, and the engine's IM / MM ratio is ``1 / mm_factor``."""
    case = _case(path)
    expected, model = case["expected"], case["model_params"]
    book, _, mults = _book(case)
    index = Fraction(case["index_price"])
    margin = book.account_margin(0)
    roll = book.roll_shock(0)
    scan = margin.maintenance_margin - roll  # MONEY: the worst scenario's loss (no option, no other add-on)
    s = margin.worst_scenario
    assert not book.scenarios.is_extreme[s]  # the extended table never beats the range edge for a linear book
    assert s // 3 == expected["worst_case_bucket"]["index"] // 3  # Deribit's bucket: the same price move
    worst = Fraction(scan, MONEY_SCALE) / (index * mults[s]) / SCALE  # coin at the scenario's index
    roll_coin = Fraction(roll, MONEY_SCALE) / index / SCALE
    assert _relative(worst, Fraction(expected["worst_case"])) < TOLERANCE
    # the roll shock is charged in USD at the index, rounded up to 1e-8 USD per bucket
    assert _relative(roll_coin, Fraction(expected["roll_shock"])) < TOLERANCE
    assert Fraction(expected["delta_shock"]) == 0 == Fraction(expected["correlation_contingency"])
    risk_matrix = Fraction(expected["risk_matrix_margin"])
    # Deribit's own sum of its parts differs from its risk_matrix_margin by its rounding (6.1e-9 and 1.7e-9 relative)
    parts = Fraction(expected["worst_case"]) + Fraction(expected["roll_shock"])
    assert _relative(parts, risk_matrix) < DERIBIT_ROUNDING
    assert _relative(worst + roll_coin, parts) < TOLERANCE
    assert _relative(worst + roll_coin, risk_matrix) < DERIBIT_ROUNDING
    # Deribit: MM = mm_factor x the risk matrix margin, exactly; the engine: IM = MM x im_multiplier = MM / mm_factor
    mm_factor = Fraction(model["mm_factor"])
    assert Fraction(expected["maintenance_margin"]) == mm_factor * risk_matrix
    params = _params(case)
    assert params.im_multiplier == 1 / mm_factor
    mm = margin.maintenance_margin
    assert margin.initial_margin == max(-(-mm * params.im_multiplier // 1), mm + params.im_min_buffer)
    errors = [
        _relative(worst, Fraction(expected["worst_case"])),
        _relative(roll_coin, Fraction(expected["roll_shock"])),
    ]
    errors.append(_relative(worst + roll_coin, risk_matrix))
    print(f"{path.stem}: worst case, roll shock, risk matrix margin: {', '.join(f'{float(e):.2e}' for e in errors)}")
