"""Deribit's extended table in the grid engine: extreme moves on a vol state (``extreme.vol_shock``) and each counted
at ``cover / |move|`` (``extreme.cover_scaling = "inverse_move"``); documents without the fields keep their hash."""

from __future__ import annotations

import dataclasses
import math
import pathlib
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pmoracle.config.params import default_params_text
from pmoracle.risk.inputs import MONEY_SCALE, SIZE_SCALE, Instrument, InstrumentKind, Portfolio, Position
from pmoracle.risk.margin import Book, compute_risk_arrays
from pmoracle.risk.params import MAX_COVER_DEN, compute_cover_den, compute_extreme_covers, parse_params
from pmoracle.risk.scenarios import compute_scenarios
from pmoracle.risk.table import RiskInstrument

from .factories import EXPIRIES, account, make_market, option, params_problems, with_table_lines

ROOT = pathlib.Path(__file__).resolve().parents[3]
PRESETS = ROOT / "examples" / "params"
DERIBIT = (PRESETS / "deribit-pm.toml").read_text()


@pytest.mark.parametrize("name", ["default", "span16.toml", "deribit9x3.toml", "stress.toml", "concentration.toml"])
def test_a_document_without_the_fields_keeps_its_canonical_bytes(name: str) -> None:
    text = default_params_text() if name == "default" else (PRESETS / name).read_text()
    params = parse_params(text)
    assert params.extreme_vol_shock is None and params.extreme_cover_scaling is None
    assert b"extreme_vol_shock" not in params.canonical_bytes
    assert b"extreme_cover_scaling" not in params.canonical_bytes
    # writing the defaults out is the same document: vol unchanged, the same cover for every move
    explicit = parse_params(with_table_lines(text, "extreme", 'vol_shock = "0"\ncover_scaling = "constant"\n'))
    assert explicit.canonical_bytes == params.canonical_bytes
    assert explicit.params_hash == params.params_hash


def test_the_fields_are_in_the_canonical_bytes_and_the_hash() -> None:
    base = parse_params(default_params_text())
    vol_up = parse_params(with_table_lines(default_params_text(), "extreme", 'vol_shock = "1"\n'))
    scaled = parse_params(with_table_lines(default_params_text(), "extreme", 'cover_scaling = "inverse_move"\n'))
    assert b'"extreme_vol_shock":"1"' in vol_up.canonical_bytes
    assert b'"extreme_cover_scaling":"inverse_move"' in scaled.canonical_bytes
    assert len({base.params_hash, vol_up.params_hash, scaled.params_hash}) == 3


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ('vol_shock = "3/2"\n', "extreme.vol_shock: '3/2' is outside [-1, 1]"),
        ("vol_shock = 0.5\n", "extreme.vol_shock: expected an exact rational"),
        ('vol_shock = "up"\n', "extreme.vol_shock: 'up' is not a rational number"),
        ('cover_scaling = "linear"\n', "extreme.cover_scaling: expected one of constant, inverse_move, got 'linear'"),
        ("cover_scaling = 1\n", "extreme.cover_scaling: expected one of constant, inverse_move, got 1"),
    ],
)
def test_bad_values_are_refused_naming_the_field(extra: str, field: str) -> None:
    plain = DERIBIT.replace('vol_shock = "1"\n', "").replace('cover_scaling = "inverse_move"\n', "")
    problems = params_problems(with_table_lines(plain, "extreme", extra))
    assert any(p.startswith(field) for p in problems), problems


def test_inverse_move_needs_moves_of_at_least_one_range() -> None:
    text = DERIBIT.replace('moves = ["-33/8", "-33/16",', 'moves = ["-1/2", "0", "-33/16",', 1)
    problems = params_problems(text)
    assert any(p.startswith("extreme.moves[0]: -1/2 is inside one range") for p in problems), problems
    assert any(p.startswith("extreme.moves[1]: 0 is inside one range") for p in problems), problems
    parse_params(text.replace('cover_scaling = "inverse_move"\n', ""))  # the constant rule takes any move


def test_a_cover_denominator_beyond_the_kernels_exact_range_is_refused() -> None:
    # primes of about 1300 as numerators: the lcm of the covers' denominators exceeds 2**31
    text = DERIBIT.replace('["-33/8", "-33/16",', '["1301/1000", "1303/1000", "1307/1000", "-33/16",', 1)
    problems = params_problems(text)
    want = 'extreme.cover_scaling: "inverse_move" gives the covers a common denominator'
    assert any(p.startswith(want) for p in problems), problems


def test_extreme_moves_reach_forty_ranges_and_no_further() -> None:
    parse_params(DERIBIT.replace('"125/4"]', '"40"]', 1))
    problems = params_problems(DERIBIT.replace('"125/4"]', '"401/10"]', 1))
    assert any(p.startswith("extreme.moves[7]: '401/10' is outside [-40, 40]") for p in problems), problems


@settings(max_examples=200, deadline=None)
@given(
    moves=st.lists(st.fractions(min_value=1, max_value=40, max_denominator=16), min_size=1, max_size=6, unique=True),
    signs=st.lists(st.booleans(), min_size=6, max_size=6),
    cover_millionths=st.integers(0, 10**6),
)
def test_the_common_denominator_carries_every_cover_exactly(
    moves: list[Fraction], signs: list[bool], cover_millionths: int
) -> None:
    signed = tuple(m if s else -m for m, s in zip(moves, signs, strict=False))
    if len(set(signed)) != len(signed):
        return
    cover = Fraction(cover_millionths, 10**6)
    den = compute_cover_den(signed, cover, "inverse_move")
    covers = compute_extreme_covers(signed, cover, "inverse_move")
    if den > MAX_COVER_DEN:
        return
    for k, c in zip(signed, covers, strict=True):
        assert c == cover / abs(k) <= cover <= 1
        assert (c * den).denominator == 1  # an exact integer numerator over the common denominator
    assert den == math.lcm(*(c.denominator for c in covers))


def test_the_extended_scenarios_are_on_vol_up_at_range_over_move() -> None:
    params = parse_params(DERIBIT)
    scenarios = compute_scenarios(params, make_market(btc=100_000.0))
    extreme = [s for s in range(len(scenarios)) if scenarios.is_extreme[s]]
    assert scenarios.cover_den == 4125
    assert {float(v) for s in extreme for v in scenarios.vol_shock[s]} == {1.0}  # vol range up, every underlying
    together = [s for s in extreme if not scenarios.labels[s].startswith(("alone", "opposite"))]
    assert [Fraction(int(scenarios.cover_num[s]), 4125) for s in together] == [
        Fraction(8, 33), Fraction(16, 33), Fraction(8, 25), Fraction(4, 25), Fraction(2, 25), Fraction(4, 75),
        Fraction(1, 25), Fraction(4, 125),
    ]  # fmt: skip
    assert scenarios.labels[together[0]] == "together: extreme BTC -66.0% ETH -82.5% vol up (24.2424% cover)"
    # the grid keeps full cover; the joint modes repeat the extended moves for each leader
    assert all(int(scenarios.cover_num[s]) == 4125 for s in range(len(scenarios)) if not scenarios.is_extreme[s])
    assert len(extreme) == 8 * 5  # together, then alone and opposite for each of BTC and ETH


def _risk_row(params_text: str, instrument: RiskInstrument) -> tuple[list[int], list[bool], list[Fraction]]:
    market = make_market(btc=100_000.0)
    params = parse_params(params_text)
    scenarios = compute_scenarios(params, market)
    arrays = compute_risk_arrays(market, params, [instrument], scenarios)
    covers = [Fraction(int(c), scenarios.cover_den) for c in scenarios.cover_num]
    return [int(x) for x in arrays.r[0]], [bool(x) for x in scenarios.is_extreme], covers


def test_the_vol_state_moves_an_options_extended_pnl() -> None:
    call = option("BTC", EXPIRIES[2], 300_000.0, call=True)  # far out of the money: the extended table's target
    vol_up, extreme, _ = _risk_row(DERIBIT, call)
    unchanged, extreme_too, _ = _risk_row(DERIBIT.replace('vol_shock = "1"\n', ""), call)
    assert extreme == extreme_too
    pairs = [(a, b) for a, b, e in zip(vol_up, unchanged, extreme, strict=True) if e]
    assert all(a >= b for a, b in pairs)  # a long call gains more when the vol goes up with the move ...
    assert sum(a > b for a, b in pairs) >= len(pairs) // 2  # ... strictly unless the crash leaves it worthless
    grid = [(a, b) for a, b, e in zip(vol_up, unchanged, extreme, strict=True) if not e]
    assert all(a == b for a, b in grid)  # the grid is not touched


@pytest.mark.parametrize("kind", [InstrumentKind.PERPETUAL, InstrumentKind.FUTURE])
@pytest.mark.parametrize("units", [-3, 5])
def test_a_linear_positions_extended_loss_is_its_loss_at_the_edge_of_the_range(
    kind: InstrumentKind, units: int
) -> None:
    """Deribit's published pme/simulate output for one short ETH-PERPETUAL shows every extended-table P&L equal to
    the P&L at the edge of the standard range on the same side: what ``cover / |move|`` with cover 1 gives."""
    instrument = Instrument("BTC", kind, expiry=0 if kind == InstrumentKind.PERPETUAL else EXPIRIES[3])
    market = make_market(btc=100_000.0)
    params = dataclasses.replace(parse_params(DERIBIT), roll_shock=None)  # the scenarios' margin alone
    book = Book(market, params, [Portfolio(positions=(Position(instrument, units * SIZE_SCALE),), account=account(1))])
    scenarios = book.scenarios
    row = [int(x) for x in book.arrays.r[0]]
    together = [s for s in range(len(scenarios)) if not scenarios.labels[s].startswith(("alone", "opposite"))]
    edge_up = max(together, key=lambda s: (not scenarios.is_extreme[s], float(scenarios.price_mult[s, 0])))
    edge_down = min(together, key=lambda s: (scenarios.is_extreme[s], float(scenarios.price_mult[s, 0])))
    size = units * SIZE_SCALE
    for s in together:
        if not scenarios.is_extreme[s]:
            continue
        edge = edge_up if scenarios.price_mult[s, 0] > 1 else edge_down
        counted = Fraction(size * row[s]) * Fraction(int(scenarios.cover_num[s]), scenarios.cover_den)
        # quantized rows: each per-unit value within half a unit (1e-4 USD) of its exact value
        assert abs(counted - size * row[edge]) <= abs(size)
    # and the account's margin: the worst of its extended losses is no more than the edge loss (plus rounding)
    mm = book.account_margin(0).maintenance_margin
    worst_edge = max(-size * row[edge_up], -size * row[edge_down])
    assert abs(mm - worst_edge) <= abs(size) + 1
    assert mm > 0.15 * abs(units) * 100_000 * MONEY_SCALE  # about 16% of the notional


# Deribit's published private/pme/simulate outputs (docs/parameters.md), extended_table_factor 1: the 8 extended-table
# values of one perpetual (coin, before pnl_offset and extended_dampener), for -66%, -33%, +50% .. +500%. Each is the
# standard table's edge value on its side.
# (underlying, index, price_range, Deribit's size, the engine's nearest 4-decimal size, edge down, edge up)
PUBLISHED = {
    # the API documentation's example (17 Jun 2024): long BTC-PERPETUAL, BTC index 65666.19, range 16%
    "btc-api-docs": ("BTC", "65666.19", "0.16", "0.314538364", "0.3145", "-0.05991206933333334", "0.04338460193103449"),
    # a response captured on 15 Feb 2026: short ETH-PERPETUAL, ETH index 1949.34, range 18%
    "eth-capture": ("ETH", "1949.34", "0.18", "-0.999487053", "-0.9995", "0.21939959699999997", "-0.15246412672881357"),
}


@pytest.mark.parametrize("case", sorted(PUBLISHED))
def test_deribits_published_extended_vector_for_a_perpetual(case: str) -> None:
    """The engine (USD) gives Deribit's published extended-table values (coin at the range's edge price) for the same
    position, to within the engine's 4-decimal sizes: every extended value equals the edge value on its side."""
    symbol, index_text, range_text, size_text, units_text, edge_down, edge_up = PUBLISHED[case]
    scan = Fraction(range_text)
    moves = [Fraction(m) / scan for m in ("-0.66", "-0.33", "0.5", "1", "2", "3", "4", "5")]
    listed = ", ".join(f'"{k}"' for k in moves)
    text = DERIBIT.replace("BTC = 0.16", f"BTC = {range_text}", 1).replace("ETH = 0.20", f"ETH = {range_text}", 1)
    text = text.replace('"-33/8", "-33/16", "25/8", "25/4", "25/2", "75/4", "25", "125/4"', listed, 1)
    params = parse_params(text)
    assert params.extreme_moves == tuple(moves) and params.scan_range_of(symbol) == float(range_text)
    index = Fraction(index_text)
    market = make_market(**{symbol.lower(): float(index)})
    units = Fraction(units_text)
    perp = Instrument(symbol, InstrumentKind.PERPETUAL)
    book = Book(market, params, [Portfolio(positions=(Position(perp, int(units * SIZE_SCALE)),), account=account(1))])
    scenarios = book.scenarios
    u = scenarios.underlying_index(symbol)
    together = [s for s in range(len(scenarios)) if scenarios.labels[s].startswith("together")]
    extended = [s for s in together if scenarios.is_extreme[s]]
    published = [Fraction(edge_down)] * 2 + [Fraction(edge_up)] * 6
    assert len(extended) == 8
    for s, value in zip(extended, published, strict=True):
        counted_usd = Fraction(int(units * SIZE_SCALE) * int(book.arrays.r[0, s]), MONEY_SCALE)
        counted_usd *= Fraction(int(scenarios.cover_num[s]), scenarios.cover_den)
        side = 1 if scenarios.price_mult[s, u] > 1 else -1
        coin = counted_usd / (index * (1 + side * scan))  # Deribit's unit: coin at the edge price
        assert abs(coin / (value * units / Fraction(size_text)) - 1) < Fraction(1, 10**6), (s, float(coin))
