"""Expired instruments before settlement: valued at expiry value on the index, checked by independent arithmetic.

The expected values below are computed here from the rule in docs/risk-model.md ("Expired instruments") with plain
float arithmetic and Python's round-half-even, never through the engine's pricing code; only the scenario price
multipliers (an input of the rule) come from the engine's scenario set.
"""

from __future__ import annotations

import pytest

from pmoracle.config.params import default_params
from pmoracle.risk.inputs import MONEY_SCALE, SIZE_SCALE, Instrument, InstrumentKind, Portfolio, Position
from pmoracle.risk.margin import Book, compute_account_report
from pmoracle.risk.reference import reference_row
from pmoracle.risk.scenarios import compute_scenarios

from .factories import DAY, EXPIRIES, T0, account, make_market, option, size

PARAMS = default_params()
QUANT = 10_000  # MONEY per SIZE unit: 1e-8 USD per 1e-4 unit
BTC, ETH = 95_000.0, 3_000.0
# the market has moved on: EXPIRIES[0] expired a day ago, EXPIRIES[2] (an ETH expiry with a quoted forward) is
# exactly now; the later expiries are live
NOW = EXPIRIES[2]
ITM_CALL = option("BTC", EXPIRIES[0], 90_000, True)
OTM_PUT = option("BTC", EXPIRIES[0], 80_000, False)
ITM_PUT_AT_NOW = option("ETH", NOW, 3_250, False)
OTM_CALL_AT_NOW = option("ETH", NOW, 3_500, True)
FUTURE = Instrument("ETH", InstrumentKind.FUTURE, expiry=NOW)  # quoted forward 3030: ignored once expired
LIVE_PUT = option("BTC", EXPIRIES[3], 90_000, False)


def _market():  # type: ignore[no-untyped-def]
    return make_market(btc=BTC, eth=ETH, time=NOW)


def _expected_row(kind: str, index: float, strike: float, mults: list[float]) -> tuple[int, list[int]]:
    """Return (base, per-scenario P&L) of one unit, quantized, by the rule written out by hand."""

    def value(level: float) -> float:
        if kind == "future":
            return level
        payoff = level - strike if kind == "call" else strike - level
        return payoff if payoff > 0.0 else 0.0

    v0 = value(index)
    base = round(v0 * QUANT)  # a future's mark is the index; an option's its intrinsic value
    return base, [round((value(index * m) - v0) * QUANT) for m in mults]


@pytest.mark.parametrize(
    ("inst", "kind", "index", "strike", "u"),
    [
        (ITM_CALL, "call", BTC, 90_000.0, 0),
        (OTM_PUT, "put", BTC, 80_000.0, 0),
        (ITM_PUT_AT_NOW, "put", ETH, 3_250.0, 1),
        (OTM_CALL_AT_NOW, "call", ETH, 3_500.0, 1),
        (FUTURE, "future", ETH, 0.0, 1),
    ],
)
def test_expired_row_matches_an_independent_computation(
    inst: Instrument, kind: str, index: float, strike: float, u: int
) -> None:
    market = _market()
    book = Book(market, PARAMS, [Portfolio(positions=(Position(inst, size(-3)),), account=account(1))])
    arrays = book.arrays
    i = arrays.instruments.index(inst)
    assert book.scenarios.underlyings[u] == inst.underlying
    mults = [float(row[u]) for row in book.scenarios.price_mult]
    base, pnl = _expected_row(kind, index, strike, mults)
    assert int(arrays.base[i]) == base
    assert [int(x) for x in arrays.r[i]] == pnl
    assert int(arrays.addon[i]) == 0  # no optionality left: no short-option minimum
    assert any(x != 0 for x in pnl)  # every one of these moves within the scan range
    if kind == "future":
        assert base == round(index * QUANT)
    else:
        in_the_money = index - strike if kind == "call" else strike - index
        assert base == (round(in_the_money * QUANT) if in_the_money > 0 else 0)  # intrinsic, undiscounted


def test_vol_shocks_do_not_move_an_expired_option() -> None:
    market = _market()
    arrays = Book(market, PARAMS, [Portfolio(positions=((Position(ITM_CALL, size(1))),))]).arrays
    scenarios = arrays.scenarios
    i = arrays.instruments.index(ITM_CALL)
    by_move: dict[float, set[int]] = {}
    for s in range(len(scenarios)):
        by_move.setdefault(float(scenarios.price_mult[s][0]), set()).add(int(arrays.r[i, s]))
    assert any(float(v[0]) != 0.0 for v in scenarios.vol_shock)  # the scenario set does shock vols
    assert all(len(values) == 1 for values in by_move.values())  # same price move, same P&L, whatever the vol


def test_account_of_expired_and_live_positions() -> None:
    """Equity, risk array and MM of a book of expired options, an expired future and a live hedge."""
    market = _market()
    positions = (
        Position(ITM_CALL, size(2)),
        Position(OTM_PUT, size(-5)),
        Position(FUTURE, size(-4), cost=-4 * 2_990 * 10**18),  # sold at 2990
        Position(LIVE_PUT, size(-1)),
    )
    portfolio = Portfolio(positions=positions, collateral=(("USDC", size(50_000)),), account=account(7))
    report = compute_account_report(market, PARAMS, portfolio)
    book = Book(market, PARAMS, [portfolio])
    arrays = book.arrays
    live = arrays.instruments.index(LIVE_PUT)
    mults = [(float(row[0]), float(row[1])) for row in book.scenarios.price_mult]
    call_base, call_pnl = _expected_row("call", BTC, 90_000.0, [m[0] for m in mults])
    put_base, put_pnl = _expected_row("put", BTC, 80_000.0, [m[0] for m in mults])
    fut_base, fut_pnl = _expected_row("future", ETH, 0.0, [m[1] for m in mults])
    usdc = 50_000 * SIZE_SCALE * QUANT  # a stable asset without haircut: its price, never moved
    live_base = int(arrays.base[live])  # the live put is priced by the engine (Black-76): taken as given here
    future_pnl = -4 * SIZE_SCALE * fut_base + 4 * 2_990 * MONEY_SCALE  # size x index - cost
    assert future_pnl == -4 * (3_000 - 2_990) * MONEY_SCALE
    options = 2 * SIZE_SCALE * call_base - 5 * SIZE_SCALE * put_base - SIZE_SCALE * live_base
    assert report.equity == options + future_pnl + usdc
    assert call_base == 5_000 * QUANT and put_base == 0
    expected = [
        2 * SIZE_SCALE * c - 5 * SIZE_SCALE * p - 4 * SIZE_SCALE * f - SIZE_SCALE * int(arrays.r[live, s])
        for s, (c, p, f) in enumerate(zip(call_pnl, put_pnl, fut_pnl, strict=True))
    ]
    assert list(report.risk_array) == expected
    # only the live short put carries the short-option minimum
    addon = SIZE_SCALE * int(arrays.addon[live])
    assert addon > 0
    assert report.maintenance_margin >= addon
    delta_btc = next(g.delta for g in report.greeks if g.underlying == "BTC")
    delta_eth = next(g.delta for g in report.greeks if g.underlying == "ETH")
    assert delta_eth == -4.0  # the expired future moves one for one with the index
    assert delta_btc > 2.0  # the ITM call's delta 1 per unit, the OTM put's 0, the short live put's positive delta


def test_expired_rows_equal_the_reference_bit_for_bit() -> None:
    market = make_market(btc=61_234.5678, eth=2_345.678, time=T0 + 2 * DAY)
    instruments = [
        option(u, e, k, c)
        for u, ks in (("BTC", (1, 30_000.5, 61_234.5678, 61_234.5679, 90_000)), ("ETH", (2_000, 2_345.678, 9_999)))
        for e in EXPIRIES[:2]  # the first expired a day ago; the second is live
        for k in ks
        for c in (True, False)
    ]
    instruments += [Instrument(u, InstrumentKind.FUTURE, expiry=e) for u in ("BTC", "ETH") for e in EXPIRIES[:2]]
    book = Book(market, PARAMS, [Portfolio(positions=tuple(Position(inst, size(1)) for inst in instruments))])
    arrays = book.arrays
    assert compute_scenarios(PARAMS, market).labels == book.scenarios.labels
    expired = 0
    for i, inst in enumerate(arrays.instruments):
        row = reference_row(arrays.table, arrays.scenarios, i)
        assert (row.pnl, row.base, row.addon, row.status) == (
            tuple(int(x) for x in arrays.r[i]), int(arrays.base[i]), int(arrays.addon[i]), 0,
        ), inst  # fmt: skip
        if isinstance(inst, Instrument) and inst.expiry <= market.time:
            expired += 1
            assert float(arrays.table.tau[i]) == 0.0
    assert expired == 18  # 8 strikes x call/put + 2 futures
