"""Market and portfolio documents: exact conversion, and every bad input named by its field path."""

from __future__ import annotations

import copy
import json
import pathlib
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pmoracle.errors import InputError
from pmoracle.risk.documents import (
    DocumentError,
    MissingMarketDataError,
    parse_market,
    parse_portfolio,
    parse_utc_time,
    to_fixed,
)
from pmoracle.risk.errors import UnknownCollateralError, UnknownUnderlyingError
from pmoracle.risk.inputs import MAX_SIZE, PRICE_SCALE, SECONDS_PER_YEAR, SIZE_SCALE, WAD, InstrumentKind
from pmoracle.risk.naming import parse_expiry_code

EXAMPLES = pathlib.Path(__file__).resolve().parents[3] / "examples"
MARKET_DOC: dict[str, Any] = json.loads((EXAMPLES / "market.json").read_text())
T0 = parse_utc_time("2026-11-25T08:00:00Z")


def market_doc() -> dict[str, Any]:
    return copy.deepcopy(MARKET_DOC)


ENTRY = "90000.5"  # the entry price the helper gives every future and perpetual (the format requires one)


def portfolio_doc(*positions: tuple[str, object], **collateral: object) -> dict[str, Any]:
    """Return a portfolio document; a future or perpetual (a name of three parts or fewer) gets ``ENTRY``."""
    return {
        "positions": [
            {"instrument": name, "size": size} | ({} if name.count("-") == 3 else {"entry_price": ENTRY})
            for name, size in positions
        ],
        "collateral": collateral or {"USDC": "1000"},
    }


def position_doc(name: str, **fields: object) -> dict[str, Any]:
    """Return a portfolio document of one position of size 2 with exactly ``fields`` besides name and size."""
    return {"positions": [{"instrument": name, "size": "2", **fields}]}


def fields_of(exc: pytest.ExceptionInfo[DocumentError]) -> list[str]:
    return [e.field for e in exc.value.errors]


# --- numbers -----------------------------------------------------------------------------------------------


def test_decimal_strings_convert_exactly() -> None:
    assert to_fixed("95000.12345678", 8, "x") == 9_500_012_345_678
    assert to_fixed("-2.5", 4, "x") == -25_000
    assert to_fixed("1e3", 4, "x") == 10_000_000
    assert to_fixed("0.10000", 4, "x") == 1_000
    assert to_fixed(0.1, 18, "x") == WAD // 10  # a JSON float is read through its shortest repr
    assert to_fixed(7, 4, "x") == 70_000


@pytest.mark.parametrize("value", ["0.00001", 1e-20, "1e-5"])
def test_more_decimals_than_the_unit_is_rejected(value: object) -> None:
    with pytest.raises(InputError, match="more than 4 decimals") as info:
        to_fixed(value, 4, "positions[0].size")
    assert info.value.field == "positions[0].size"


@pytest.mark.parametrize("value", ["NaN", "inf", "-Infinity", float("nan"), float("inf"), "abc", "", True, None, [1]])
def test_non_numbers_and_non_finite_are_rejected(value: object) -> None:
    with pytest.raises(InputError) as info:
        to_fixed(value, 8, "underlyings.BTC.index")
    assert info.value.field == "underlyings.BTC.index"


def test_absurd_exponent_is_rejected_without_building_huge_integers() -> None:
    with pytest.raises(InputError, match="too large"):
        to_fixed("1e999999999", 4, "x")
    with pytest.raises(InputError, match="decimals"):
        to_fixed("1e-999999999", 4, "x")


# --- time --------------------------------------------------------------------------------------------------


def test_iso_time_is_parsed_with_offsets() -> None:
    assert T0 == 1795593600
    assert parse_utc_time("2026-11-25T10:00:00+02:00") == T0
    assert parse_utc_time(T0) == T0


@pytest.mark.parametrize("value", ["2026-11-25", "2026-02-30T08:00:00Z", "2026-11-25T24:00:00Z", "yesterday", 1.5])
def test_bad_time_is_rejected(value: object) -> None:
    with pytest.raises(InputError) as info:
        parse_utc_time(value)
    assert info.value.field == "time"


# --- market ------------------------------------------------------------------------------------------------


def test_example_market_parses_to_exact_integers() -> None:
    market = parse_market(market_doc())
    assert market.time == T0
    btc = market.underlying("BTC")
    assert btc.index == 95_000 * PRICE_SCALE
    assert btc.rate == 5 * WAD // 100
    dec = btc.smile(parse_expiry_code("27DEC26"))
    assert dec is not None
    assert (dec.a, dec.b, dec.rho, dec.sigma) == (159 * WAD // 10_000, 6 * WAD // 100, -3 * WAD // 10, WAD // 10)
    assert btc.forward(parse_expiry_code("26MAR27")) == 96_650 * PRICE_SCALE
    eth_asset = market.asset("ETH")
    assert (eth_asset.price, eth_asset.haircut, eth_asset.underlying) == (3000 * PRICE_SCALE, WAD // 10, "ETH")
    assert [a.symbol for a in market.assets] == ["BTC", "ETH", "USDC"]


def test_flat_vol_is_total_variance_vol_squared_times_t() -> None:
    doc = market_doc()
    doc["underlyings"]["BTC"]["smiles"]["27DEC26"] = {"vol": "0.5"}
    smile = parse_market(doc).underlying("BTC").smile(parse_expiry_code("27DEC26"))
    assert smile is not None
    dt = parse_expiry_code("27DEC26") - T0
    assert smile.a == (WAD // 4 * dt + SECONDS_PER_YEAR // 2) // SECONDS_PER_YEAR
    assert (smile.b, smile.sigma) == (0, 0)


@pytest.mark.parametrize(
    ("edit", "field"),
    [
        (lambda d: d["underlyings"]["BTC"].__setitem__("index", "0"), "underlyings.BTC.index"),
        (lambda d: d["underlyings"]["BTC"].__setitem__("index", "-95000"), "underlyings.BTC.index"),
        (lambda d: d["underlyings"]["BTC"].__setitem__("index", "NaN"), "underlyings.BTC.index"),
        (lambda d: d["underlyings"]["BTC"].__setitem__("index", float("inf")), "underlyings.BTC.index"),
        (lambda d: d["underlyings"]["BTC"].__delitem__("index"), "underlyings.BTC.index"),
        (lambda d: d["underlyings"]["ETH"].__setitem__("rate", "2"), "underlyings.ETH.rate"),
        (
            lambda d: d["underlyings"]["BTC"]["smiles"]["27DEC26"]["svi"].__setitem__("b", "-0.1"),
            "underlyings.BTC.smiles.27DEC26.svi.b",
        ),
        (
            lambda d: d["underlyings"]["BTC"]["smiles"]["27DEC26"]["svi"].__setitem__("b", "NaN"),
            "underlyings.BTC.smiles.27DEC26.svi.b",
        ),
        (
            lambda d: d["underlyings"]["BTC"]["smiles"]["27DEC26"]["svi"].__setitem__("rho", "1"),
            "underlyings.BTC.smiles.27DEC26.svi.rho",
        ),
        (
            lambda d: d["underlyings"]["BTC"]["smiles"]["27DEC26"]["svi"].__setitem__("a", "-1"),
            "underlyings.BTC.smiles.27DEC26.svi.a",
        ),
        (
            lambda d: d["underlyings"]["BTC"]["smiles"]["27DEC26"]["svi"].__delitem__("sigma"),
            "underlyings.BTC.smiles.27DEC26.svi.sigma",
        ),
        (
            lambda d: d["underlyings"]["BTC"]["smiles"].__setitem__("27DEC26", {"vol": "0"}),
            "underlyings.BTC.smiles.27DEC26.vol",
        ),
        (
            lambda d: d["underlyings"]["BTC"]["smiles"].__setitem__("27DEC26", {"vol": "-0.5"}),
            "underlyings.BTC.smiles.27DEC26.vol",
        ),
        (
            lambda d: d["underlyings"]["BTC"]["smiles"].__setitem__("27DEC26", {"vol": "Infinity"}),
            "underlyings.BTC.smiles.27DEC26.vol",
        ),
        (
            lambda d: d["underlyings"]["BTC"]["smiles"].__setitem__("27XYZ26", {"vol": "0.5"}),
            "underlyings.BTC.smiles.27XYZ26",
        ),
        (
            lambda d: d["underlyings"]["BTC"]["smiles"].__setitem__("20NOV26", {"vol": "0.5"}),
            "underlyings.BTC.smiles.20NOV26",
        ),
        (lambda d: d["underlyings"]["BTC"]["forwards"].__setitem__("26MAR27", "0"), "underlyings.BTC.forwards.26MAR27"),
        (lambda d: d["underlyings"].__setitem__("btc", d["underlyings"]["BTC"]), "underlyings.btc"),
        (lambda d: d["underlyings"]["BTC"].__setitem__("idx", "1"), "underlyings.BTC.idx"),
        (lambda d: d["assets"]["ETH"].__setitem__("price", "0"), "assets.ETH.price"),
        (lambda d: d["assets"]["ETH"].__setitem__("price", "3000.000000001"), "assets.ETH.price"),
        (lambda d: d["assets"]["ETH"].__setitem__("haircut", "1"), "assets.ETH.haircut"),
        (lambda d: d["assets"]["ETH"].__setitem__("underlying", "DOGE"), "assets.ETH.underlying"),
        (lambda d: d.__setitem__("time", "2026-13-01T00:00:00Z"), "time"),
        (lambda d: d.__delitem__("time"), "time"),
        (lambda d: d.__delitem__("underlyings"), "underlyings"),
    ],
)
def test_bad_market_names_the_field(edit: Any, field: str) -> None:
    doc = market_doc()
    edit(doc)
    with pytest.raises(DocumentError) as info:
        parse_market(doc)
    assert info.value.field == field
    assert field in str(info.value)


def test_all_market_errors_are_reported_at_once() -> None:
    doc = market_doc()
    doc["underlyings"]["BTC"]["index"] = "0"
    doc["underlyings"]["ETH"]["smiles"]["4DEC26"]["svi"]["sigma"] = "x"
    doc["assets"]["USDC"]["haircut"] = "-0.1"
    with pytest.raises(DocumentError) as info:
        parse_market(doc)
    assert fields_of(info) == [
        "underlyings.BTC.index",
        "underlyings.ETH.smiles.4DEC26.svi.sigma",
        "assets.USDC.haircut",
    ]
    assert "and 2 more" in str(info.value)


# --- portfolio ---------------------------------------------------------------------------------------------

MARKET = parse_market(MARKET_DOC)


def test_example_portfolio_keeps_document_order_and_exact_sizes() -> None:
    doc = portfolio_doc(("BTC-27DEC26-95000-C", "-10"), ("BTC-PERPETUAL", 0.83), ETH="2.5", USDC="100")
    portfolio = parse_portfolio(doc, MARKET)
    assert [p.size for p in portfolio.positions] == [-10 * SIZE_SCALE, 8_300]
    assert portfolio.positions[1].instrument.kind == InstrumentKind.PERPETUAL
    assert [p.cost for p in portfolio.positions] == [0, 74_700_415 * WAD // 1000]  # 0.83 x 90000.5 USD
    assert portfolio.cash == 0
    assert portfolio.collateral == (("ETH", 25_000), ("USDC", 100 * SIZE_SCALE))


@pytest.mark.parametrize(
    ("doc", "field", "error_type", "text"),
    [
        (portfolio_doc(("BTC-27DEC26-95000-X", "1")), "positions[0].instrument", InputError, "option type"),
        (
            portfolio_doc(("BTC-27DEC26-95000-C", "1"), ("BTC-99DEC26", "1")),
            "positions[1].instrument",
            InputError,
            "expiry",
        ),
        (portfolio_doc(("SOL-27DEC26-200-C", "1")), "positions[0].instrument", UnknownUnderlyingError, "SOL"),
        (portfolio_doc(("BTC-1JAN27-95000-C", "1")), "positions[0].instrument", MissingMarketDataError, "smile"),
        (portfolio_doc(("BTC-PERPETUAL", "0.00001")), "positions[0].size", InputError, "decimals"),
        (portfolio_doc(("BTC-PERPETUAL", "1e13")), "positions[0].size", InputError, "largest size"),
        (portfolio_doc(("BTC-PERPETUAL", "NaN")), "positions[0].size", InputError, "finite"),
        (portfolio_doc(("BTC-PERPETUAL", "ten")), "positions[0].size", InputError, "decimal"),
        (portfolio_doc(("BTC-PERPETUAL", "1"), USDC="-5"), "collateral.USDC", InputError, "negative"),
        (
            portfolio_doc(("BTC-PERPETUAL", "1"), DOGE="5"),
            "collateral.DOGE",
            UnknownCollateralError,
            "unknown collateral asset",
        ),
        (
            {"positions": [{"instrument": "BTC-PERPETUAL", "entry_price": "1"}]},
            "positions[0].size",
            InputError,
            "missing",
        ),
        (position_doc("BTC-PERPETUAL"), "positions[0]", InputError, "needs its entry_price"),
        (position_doc("BTC-27DEC26"), "positions[0]", InputError, "needs its entry_price"),
        (position_doc("BTC-PERPETUAL", cost="1", entry_price="1"), "positions[0].entry_price", InputError, "not both"),
        (position_doc("BTC-PERPETUAL", entry_price="0"), "positions[0].entry_price", InputError, "positive"),
        (position_doc("BTC-PERPETUAL", entry_price="-90000"), "positions[0].entry_price", InputError, "positive"),
        (
            position_doc("BTC-PERPETUAL", entry_price="1.000000000000001"),
            "positions[0].entry_price",
            InputError,
            "more than 14 decimals",
        ),
        (
            position_doc("BTC-PERPETUAL", entry_price="1e12", size="1"),
            "positions[0].entry_price",
            InputError,
            "largest balance",
        ),
        (position_doc("BTC-PERPETUAL", cost="1e-19"), "positions[0].cost", InputError, "more than 18 decimals"),
        (position_doc("BTC-PERPETUAL", cost="2e10"), "positions[0].cost", InputError, "largest balance"),
        (position_doc("BTC-PERPETUAL", cost="1", funding="x"), "positions[0].funding", InputError, "decimal"),
        (position_doc("BTC-27DEC26", cost="1", funding="1"), "positions[0].funding", InputError, "only perpetuals"),
        (position_doc("BTC-27DEC26-95000-C", cost="1"), "positions[0].cost", InputError, "premium is paid in cash"),
        (position_doc("BTC-27DEC26-95000-C", entry_price="1"), "positions[0].entry_price", InputError, "an option"),
        ({"cash": "-1e11"}, "cash", InputError, "largest balance"),
        ({"cash": "ten"}, "cash", InputError, "decimal"),
        ({"positions": [{"size": "1"}]}, "positions[0].instrument", InputError, "missing"),
        (
            {"positions": [{"instrument": "BTC-PERPETUAL", "size": "1", "side": "buy"}]},
            "positions[0].side",
            InputError,
            "unknown",
        ),
        ({"positions": {"instrument": "BTC-PERPETUAL"}}, "positions", InputError, "list"),
        ({"positions": ["BTC-PERPETUAL"]}, "positions[0]", InputError, "object"),
        ({"collateral": ["USDC"]}, "collateral", InputError, "object"),
    ],
)
def test_bad_portfolio_names_the_field(doc: dict[str, Any], field: str, error_type: type, text: str) -> None:
    with pytest.raises(DocumentError) as info:
        parse_portfolio(doc, MARKET)
    assert info.value.field == field
    assert isinstance(info.value.errors[0], error_type)
    assert text in str(info.value)


def test_ledger_balances_convert_exactly() -> None:
    doc = {
        "cash": "-1234.000000000000000001",
        "positions": [
            {"instrument": "BTC-PERPETUAL", "size": "0.83", "entry_price": "94123.12345678901234", "funding": "12.5"},
            {"instrument": "ETH-PERPETUAL", "size": "-3", "cost": "-9000.75", "funding": "-0.000000000000000001"},
            {"instrument": "ETH-27DEC26", "size": "-1.5", "entry_price": "3010"},
            {"instrument": "BTC-27DEC26-95000-C", "size": "1"},
        ],
    }
    portfolio = parse_portfolio(doc, MARKET)
    assert portfolio.cash == -1234 * WAD - 1
    btc, eth, future, call = portfolio.positions
    assert btc.cost == 8_300 * 9_412_312_345_678_901_234  # 0.83 x 94123.12345678901234 USD, to the wei
    assert (btc.funding, eth.cost, eth.funding) == (12 * WAD + WAD // 2, -9000 * WAD - 3 * WAD // 4, -1)
    assert (future.cost, future.funding) == (-4515 * WAD, 0)
    assert (call.cost, call.funding) == (0, 0)
    assert parse_portfolio({"cash": 25_000}, MARKET).cash == 25_000 * WAD  # a JSON number works too


def test_all_portfolio_errors_are_reported_at_once() -> None:
    doc = portfolio_doc(("BTC-PERPETUAL", "1"), ("SOL-20NOV26", "1"), ("ETH-27DEC26-3000-C", "x"), USDC="-1")
    with pytest.raises(DocumentError) as info:
        parse_portfolio(doc, MARKET)
    assert fields_of(info) == ["positions[1].instrument", "positions[2].size", "collateral.USDC"]


@pytest.mark.parametrize("name", ["BTC-20NOV26-95000-C", "BTC-25NOV26-95000-P", "ETH-20NOV26", "BTC-1NOV26-1-C"])
def test_expired_positions_are_accepted_without_a_smile(name: str) -> None:
    # expired at or before the market time (25NOV26 is the market time itself): valued at expiry value on the
    # index, so no smile is needed (the market has none for these expiries)
    position = parse_portfolio(portfolio_doc((name, "-2")), MARKET).positions[0]
    assert position.instrument.expiry <= MARKET.time
    assert position.size == -2 * SIZE_SCALE
    assert position.cost == (0 if position.instrument.is_option else -2 * 90_000_5 * WAD // 10)


def test_expired_position_on_an_unknown_underlying_is_still_refused() -> None:
    with pytest.raises(DocumentError) as info:
        parse_portfolio(portfolio_doc(("SOL-20NOV26-200-C", "1")), MARKET)
    assert isinstance(info.value.errors[0], UnknownUnderlyingError)


def test_size_at_the_limit_is_accepted() -> None:
    doc = portfolio_doc(("BTC-27DEC26-95000-C", str(MAX_SIZE // SIZE_SCALE)))
    assert parse_portfolio(doc, MARKET).positions[0].size == MAX_SIZE


# --- robustness: any JSON either parses or raises InputError naming a field -----------------------------------

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=6), children, max_size=3),
    max_leaves=8,
)


def _paths(obj: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(obj, dict):
        for key, value in obj.items():
            out += _paths(value, (*prefix, key))
    elif isinstance(obj, list):
        for i, value in enumerate(obj):
            out += _paths(value, (*prefix, i))
    return out


def _replace(obj: Any, path: tuple[Any, ...], value: Any) -> Any:
    if not path:
        return value
    obj = copy.deepcopy(obj)
    target = obj
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return obj


MARKET_PATHS = _paths(MARKET_DOC)
PORTFOLIO_DOC = json.loads((EXAMPLES / "portfolios" / "two_asset.json").read_text())
PORTFOLIO_PATHS = _paths(PORTFOLIO_DOC)


@settings(max_examples=300, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(MARKET_PATHS), JSON_VALUES)
def test_any_corrupted_market_parses_or_names_a_field(path: tuple[Any, ...], junk: Any) -> None:
    try:
        parse_market(_replace(MARKET_DOC, path, junk))
    except InputError as exc:
        assert exc.field and exc.message


@settings(max_examples=300, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(PORTFOLIO_PATHS), JSON_VALUES)
def test_any_corrupted_portfolio_parses_or_names_a_field(path: tuple[Any, ...], junk: Any) -> None:
    try:
        parse_portfolio(_replace(PORTFOLIO_DOC, path, junk), MARKET)
    except InputError as exc:
        assert exc.field and exc.message
