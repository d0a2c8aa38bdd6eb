"""Derive's PMRM_2 model (risk/pmrm2.py), its parameters section and its documents: the rules one at a time, on books
small enough to compute by hand, plus Black-76 against scipy and homogeneity on seeded random books."""

from __future__ import annotations

import json
import math
import random
from dataclasses import replace
from pathlib import Path

import pytest
from scipy.stats import norm

from pmoracle.config.params import default_params_text
from pmoracle.errors import InputError
from pmoracle.risk.documents import DocumentError
from pmoracle.risk.errors import ParamsError
from pmoracle.risk.params import parse_params
from pmoracle.risk.pmrm2 import (
    Pmrm2Book,
    Pmrm2ExpiryMarket,
    Pmrm2Feed,
    Pmrm2Market,
    Pmrm2Option,
    _black76,
    compute_naked_shorts,
    compute_pmrm2_margin,
    to_wad,
)
from pmoracle.risk.pmrm2_documents import parse_pmrm2_market, parse_pmrm2_portfolio
from pmoracle.risk.pmrm2_params import Pmrm2Params

ROOT = Path(__file__).resolve().parents[3]
PRESET = (ROOT / "examples" / "params" / "derive-pmrm2.toml").read_text(encoding="utf-8")
T0 = 1_630_022_400  # 2021-08-27T00:00:00Z
EXPIRY = T0 + 8 * 3600 + 28 * 86400  # 24SEP21 08:00 UTC
YEAR = 365 * 86400


def preset() -> Pmrm2Params:
    params = parse_params(PRESET).pmrm2
    assert params is not None
    return params


def market(**changes: object) -> Pmrm2Market:
    base = Pmrm2Market(
        time=T0,
        underlying="BTC",
        spot=Pmrm2Feed(100_000.0, 1.0),
        perp=Pmrm2Feed(100_010.0, 1.0),
        stable=Pmrm2Feed(1.0, 1.0),
        expiries=(
            Pmrm2ExpiryMarket(EXPIRY, 0.0, 100_500.0, 1.0, 0.05, 1.0, 1.0, ((90_000.0, 0.62), (110_000.0, 0.55))),
        ),
        assets=(("LBTC", Pmrm2Feed(99_000.0, 1.0)), ("USDT", Pmrm2Feed(1.0, 1.0))),
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def book(**changes: object) -> Pmrm2Book:
    return replace(Pmrm2Book((), 0.0, 0.0, 0.0, (), 0.0), **changes)  # type: ignore[arg-type]


def usd(wad: int) -> float:
    return wad / 10**18


def test_cash_only_book_has_equity_and_no_margin() -> None:
    result = compute_pmrm2_margin(preset(), market(), book(cash=1234.5))
    assert (usd(result.equity), result.initial_margin, result.maintenance_margin) == (1234.5, 0, 0)


def test_stable_collateral_pays_its_haircuts_and_does_not_move() -> None:
    result = compute_pmrm2_margin(preset(), market(), book(collateral=(("USDT", 1000.0),)))
    assert usd(result.equity) == 1000.0
    assert result.maintenance_margin == to_wad(1000.0 * 0.02)  # mm haircut
    assert result.initial_margin == to_wad(1000.0 * 0.03 + 1000.0 * 0.02)  # im haircut on top of mm's
    assert set(result.scenario_pnls) == {0.0}


def test_short_perp_hedged_by_risk_cancelling_collateral_pays_only_the_basis_and_add_ons() -> None:
    naked = compute_pmrm2_margin(preset(), market(), book(perp_amount=-1.0, perp_cost=-100_010.0))
    hedged = compute_pmrm2_margin(
        preset(), market(), book(perp_amount=-1.0, perp_cost=-100_010.0, collateral=(("LBTC", 1.0),))
    )
    assert naked.maintenance_margin > 3 * hedged.maintenance_margin
    # the hedge leaves the perp/collateral price gap (100010 vs 99000) times the 18% move, dampened
    assert usd(hedged.maintenance_margin) == pytest.approx(0.8 * 0.18 * 1010 + 99000 * 0.03 + 100_000 * 0.015)


def test_low_confidence_adds_initial_margin_only() -> None:
    low = market(spot=Pmrm2Feed(100_000.0, 0.5))
    high = compute_pmrm2_margin(preset(), market(), book(perp_amount=2.0, perp_cost=200_020.0))
    result = compute_pmrm2_margin(preset(), low, book(perp_amount=2.0, perp_cost=200_020.0))
    assert result.maintenance_margin == high.maintenance_margin
    assert usd(result.initial_margin - high.initial_margin) == pytest.approx((1 - 0.5) * 1.0 * 200_000.0)


def test_a_depegged_stable_raises_the_im_loss_factor() -> None:
    depeg = market(stable=Pmrm2Feed(0.9, 1.0))
    pegged = compute_pmrm2_margin(preset(), market(), book(perp_amount=1.0, perp_cost=100_010.0))
    result = compute_pmrm2_margin(preset(), depeg, book(perp_amount=1.0, perp_cost=100_010.0))
    worst = -min(result.scenario_pnls)
    assert usd(result.initial_margin - pegged.initial_margin) == pytest.approx(worst * (0.98 - 0.9) * 2.0)
    assert result.maintenance_margin == pegged.maintenance_margin


def test_naked_shorts_net_longs_at_the_same_strike_calls_and_puts_alike() -> None:
    def option(strike: float, amount: float, is_call: bool = True) -> Pmrm2Option:
        return Pmrm2Option(EXPIRY, strike, is_call, amount)

    assert compute_naked_shorts((option(1, -3.0),)) == 3.0
    assert compute_naked_shorts((option(1, -3.0), option(1, 2.0, False))) == 1.0
    assert compute_naked_shorts((option(1, 2.0), option(1, -3.0))) == 1.0
    assert compute_naked_shorts((option(1, -1.0), option(1, -2.0, False))) == 3.0
    assert compute_naked_shorts((option(1, -1.0), option(2, 5.0))) == 1.0


def test_black76_agrees_with_scipy() -> None:
    rng = random.Random(17)
    for _ in range(200):
        forward, strike = rng.uniform(50, 150), rng.uniform(50, 150)
        seconds, vol, discount = rng.randint(60, 2 * YEAR), rng.uniform(0.05, 3.0), rng.uniform(0.8, 1.0)
        std = vol * math.sqrt(seconds / YEAR)
        d1 = (math.log(forward / strike) + std * std / 2) / std
        call = discount * (forward * norm.cdf(d1) - strike * norm.cdf(d1 - std))
        put = discount * (strike * norm.cdf(std - d1) - forward * norm.cdf(-d1))
        assert _black76(True, forward, strike, seconds, vol, discount) == pytest.approx(call, rel=1e-12, abs=1e-12)
        assert _black76(False, forward, strike, seconds, vol, discount) == pytest.approx(put, rel=1e-12, abs=1e-12)
    assert _black76(True, 110.0, 100.0, 0, 0.5, 1.0) == 10.0  # at expiry: intrinsic
    assert _black76(False, 110.0, 100.0, 3600, 0.0, 0.5) == 0.0


def test_margin_is_positively_homogeneous_on_random_books() -> None:
    rng = random.Random(7)
    strikes = (90_000.0, 110_000.0)
    for _ in range(20):
        options = tuple(
            Pmrm2Option(EXPIRY, rng.choice(strikes), rng.random() < 0.5, rng.uniform(-5, 5)) for _ in range(4)
        )
        base = book(options=options, perp_amount=rng.uniform(-2, 2), collateral=(("LBTC", rng.uniform(0, 3)),))
        twice = replace(
            base,
            options=tuple(replace(o, amount=2 * o.amount) for o in options),
            perp_amount=2 * base.perp_amount,
            collateral=(("LBTC", 2 * base.collateral[0][1]),),
        )
        one, two = (compute_pmrm2_margin(preset(), market(), b) for b in (base, twice))
        for a, b in ((one.initial_margin, two.initial_margin), (one.maintenance_margin, two.maintenance_margin)):
            assert b == pytest.approx(2 * a, rel=1e-12, abs=10**6)


def test_a_skew_scenario_only_loses() -> None:
    options = (Pmrm2Option(EXPIRY, 90_000.0, False, 3.0), Pmrm2Option(EXPIRY, 110_000.0, True, -3.0))
    result = compute_pmrm2_margin(preset(), market(), book(options=options))
    skews = [pnl for pnl, s in zip(result.scenario_pnls, preset().scenarios, strict=True) if s.vol in ("linear", "abs")]
    assert len(skews) == 2 and all(pnl <= 0 for pnl in skews)


def test_missing_feeds_and_haircuts_are_named() -> None:
    with pytest.raises(InputError, match="no vol for strike"):
        compute_pmrm2_margin(preset(), market(), book(options=(Pmrm2Option(EXPIRY, 95_000.0, True, 1.0),)))
    with pytest.raises(InputError, match="no haircuts for collateral 'WBTC'"):
        compute_pmrm2_margin(
            preset(), market(assets=(("WBTC", Pmrm2Feed(1.0, 1.0)),)), book(collateral=(("WBTC", 1.0),))
        )


# --- the parameters section ------------------------------------------------------------------------------------


def test_a_document_without_the_section_keeps_its_canonical_bytes() -> None:
    default = parse_params(default_params_text())
    assert default.pmrm2 is None and b"pmrm2" not in default.canonical_bytes
    with_section = parse_params(PRESET)
    assert with_section.pmrm2 is not None and b'"pmrm2":' in with_section.canonical_bytes
    assert replace(with_section, pmrm2=None).canonical_bytes == default.canonical_bytes


def test_a_bad_section_lists_every_problem_at_once() -> None:
    doc = PRESET.replace('{ spot = 1.0, vol = "abs", dampening = 1.0 }', '{ spot = 1.1, vol = "abs", dampening = 1.0 }')
    doc = doc.replace(
        '{ spot = 1.18, vol = "up", dampening = 1.0 }', '{ spot = 1.18, vol = "sideways", dampening = 1 }'
    )
    doc = doc.replace("range_up = 0.5", "range_up = 11.0").replace("mm_haircut = 0.04", "mm_haircut = 0.99")
    doc = doc.replace("[pmrm2.collateral.DAI]\n", "[pmrm2.collateral.DAI]\nwrong = 1\n")
    with pytest.raises(ParamsError) as info:
        parse_params(doc)
    fields = {p.split(":")[0] for p in info.value.problems}
    assert fields == {
        "pmrm2.scenarios[30].spot",
        "pmrm2.scenarios[0].vol",
        "pmrm2.vol_shock.range_up",
        "pmrm2.collateral.CBBTC.im_haircut",
        "pmrm2.collateral.DAI.wrong",
    }


def test_two_skew_scenarios_of_one_kind_are_refused() -> None:
    doc = PRESET.replace('vol = "abs"', 'vol = "linear"')
    with pytest.raises(ParamsError, match="more than one linear skew scenario"):
        parse_params(doc)


# --- documents -------------------------------------------------------------------------------------------------

MARKET_DOC = {
    "model": "pmrm2",
    "time": "2021-08-27T00:00:00Z",
    "underlying": "BTC",
    "spot": {"price": "100000", "confidence": "1"},
    "perp": {"price": "100010", "confidence": "1"},
    "stable": {"price": "1", "confidence": "1"},
    "expiries": {
        "24SEP21": {
            "forward_fixed": "0",
            "forward_variable": "100500",
            "forward_confidence": "1",
            "rate": "0.05",
            "rate_confidence": "1",
            "vol_confidence": "1",
            "vols": {"90000": "0.62", "110000": "0.55"},
        }
    },
    "assets": {"LBTC": {"price": "99000", "confidence": "1"}, "USDT": {"price": "1", "confidence": "1"}},
}


def test_the_documents_read_into_the_models_inputs() -> None:
    parsed = parse_pmrm2_market(MARKET_DOC)
    assert parsed == market()
    portfolio = {
        "positions": [
            {"instrument": "BTC-24SEP21-90000-P", "size": "3"},
            {"instrument": "BTC-PERPETUAL", "size": "-0.5", "cost": "-50005", "funding": "1.25"},
        ],
        "collateral": {"LBTC": "0.1"},
        "cash": "-10",
    }
    assert parse_pmrm2_portfolio(portfolio, parsed) == Pmrm2Book(
        (Pmrm2Option(EXPIRY, 90_000.0, False, 3.0),), -0.5, -50_005.0, 1.25, (("LBTC", 0.1),), -10.0
    )


def test_a_bad_document_lists_every_field() -> None:
    doc = {**MARKET_DOC, "spot": {"price": "-1", "confidence": "2"}, "extra": 1}
    with pytest.raises(DocumentError) as info:
        parse_pmrm2_market(doc)
    assert {e.field for e in info.value.errors} == {"extra", "spot.price", "spot.confidence"}
    portfolio = {
        "positions": [{"instrument": "BTC-24SEP21-95000-C", "size": "1"}, {"instrument": "BTC-24SEP21", "size": "1"}],
        "collateral": {"WBTC": "1"},
    }
    with pytest.raises(DocumentError) as info:
        parse_pmrm2_portfolio(portfolio, market())
    assert {e.field for e in info.value.errors} == {
        "positions[0].instrument",
        "positions[1].instrument",
        "collateral.WBTC",
    }


# --- golden outputs --------------------------------------------------------------------------------------------

VECTORS = ROOT / "tests" / "vectors" / "derive_pmrm2"
GOLDEN = {  # (equity, initial margin, maintenance margin) in USD WAD, worst scenario: the exact bits nodes would sign
    "test_44_skews_abs_as_worst_case_complex": (
        2836222386618709657341242, 2373655271019267849624157, 889308095688506495207548, 30
    ),
    "test_62_general_random_2": (
        6605640831497902050614357, 16464538354784863069653511, 13132078991856187582015991, 19
    ),
    "test_66_misc_post_expiry": (-191602985099999386875, 13408014925499998071, 8044808955299998843, 31),
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_golden_outputs_are_bit_exact(name: str) -> None:
    """A change to any operation or its order changes these integers: it must be deliberate (and re-pinned)."""
    from pmoracle.commands.import_case import convert_derive_case, params_document

    portfolio, market_doc, section = convert_derive_case(json.loads((VECTORS / f"{name}.json").read_text()), "BASE")
    params = parse_params(params_document(default_params_text(), section, name)).pmrm2
    assert params is not None
    parsed = parse_pmrm2_market(market_doc)
    result = compute_pmrm2_margin(params, parsed, parse_pmrm2_portfolio(portfolio, parsed))
    assert (result.equity, result.initial_margin, result.maintenance_margin, result.worst_scenario) == GOLDEN[name]


def test_a_zero_skew_width_or_tenor_floor_is_a_named_error_not_a_crash() -> None:
    options = (Pmrm2Option(EXPIRY, 90_000.0, True, 1.0),)
    params = preset()
    flat = replace(params, skew_shock=replace(params.skew_shock, min_k_star=0.0, width_scale=0.0))
    with pytest.raises(InputError, match="skew width"):
        compute_pmrm2_margin(flat, market(), book(options=options))
    no_floor = replace(params, vol_shock=replace(params.vol_shock, dte_floor_days=0.0))
    with pytest.raises(InputError, match="dte_floor_days"):
        compute_pmrm2_margin(no_floor, market(time=EXPIRY), book(options=options))
