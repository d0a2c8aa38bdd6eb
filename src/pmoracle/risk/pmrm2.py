"""Derive's PMRM_2 portfolio margin, implemented from its published maths (docs/parameters.md, "PMRM_2").

One underlying, valued in the stable (settlement) asset:

- **Scenarios**: each is a spot multiplier, a vol direction and a dampening factor. ``up``/``none``/``down`` price
  every option of an expiry with Black-76 at the shocked forward (only its variable portion moves) and the vol
  scaled by the expiry's up or down multiplier ``1 +/- range * (30 days / max(T, floor)) ** power`` (the power
  is the short-term one up to 30 days, else the long-term one; an up-shocked vol is at least ``min_vol_up``).
  ``linear``/``abs`` are skew scenarios: each option's vol is scaled by ``1 + clamp(k * cap / k*, +/-cap)`` with
  ``k = ln(K / F)`` (``|k|`` for ``abs``), ``cap = c_base * sqrt(T) + base_cap`` and
  ``k* = max(min_k_star, sqrt(T) * width_scale * (vol_param_static + sqrt(T) * vol_param_scale))``; an expiry can
  only lose in a skew scenario (its P&L is ``-|P&L|``).
- **Static discounting**: a shocked expiry value is multiplied by ``long_base * exp(-T (r * long_mult +
  long_add))`` when positive, by ``min(1 / discount, short_base / exp(-T (r * short_mult + short_add)))`` when
  negative; its P&L is against the undiscounted mark, times the scenario's dampening.
- **Risk-cancelling collateral** moves with the spot; perpetuals move with the perp price.
- **Basis contingency**: per expiry ``min(0, up - mark, down - mark) * (add + mult * T)`` at the basis spot moves
  (vols unshocked), summed; it is the starting point of the worst loss, which is the minimum over the scenarios.
- **Contingencies** (subtracted, in USD): perpetual notional times the perp IM/MM percentages, naked short options
  times the spot times the option IM/MM percentages, collateral value times its haircuts, and, for IM only, the
  oracle-confidence contingency ``(1 - confidence) * margin * notional`` wherever a feed's confidence is below the
  threshold.
- **Margin** (a signed surplus, as Derive reports it): ``worst * factor - contingencies + mark-to-market``, with
  the IM factor raised by ``(threshold - stable price) * peg_loss_factor`` when the stable asset is below its peg
  threshold. This module returns the requirement ``equity - surplus`` and the equity (the mark-to-market).

The arithmetic is IEEE-754 binary64 with the engine's deterministic ``exp``/``log``/normal CDF
(:mod:`pmoracle.risk.detmath`) in one fixed order, so every node computes the same bits; the results are
quantized to USD with 18 decimals (the chain's unit) by exact rounding.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from fractions import Fraction

from pmoracle.errors import InputError
from pmoracle.risk.detmath import det_exp, det_log, det_pow, norm_cdf
from pmoracle.risk.errors import PricingError
from pmoracle.risk.inputs import SECONDS_PER_YEAR, WAD
from pmoracle.risk.pmrm2_params import (
    SKEW_DIRECTIONS,
    Pmrm2Collateral,
    Pmrm2Contingency,
    Pmrm2Params,
    Pmrm2Scenario,
    Pmrm2SkewShock,
)

THIRTY_DAYS = 30 * 86400
DAY = 86400


@dataclass(frozen=True, slots=True)
class Pmrm2Feed:
    """A price with its oracle confidence in [0, 1]."""

    price: float
    confidence: float


@dataclass(frozen=True, slots=True)
class Pmrm2ExpiryMarket:
    """Feeds of one expiry: forward (fixed and variable portions), rate, and implied vols by strike."""

    expiry: int  # unix seconds
    forward_fixed: float  # the part already fixed by the settlement average; does not move with the spot
    forward_variable: float
    forward_confidence: float
    rate: float  # continuously compounded per year; floored at 0 by the model
    rate_confidence: float
    vol_confidence: float
    vols: tuple[tuple[float, float], ...]  # (strike, vol), sorted by strike

    def vol_at(self, strike: float) -> float | None:
        """Return the implied vol quoted at ``strike`` or None."""
        for k, vol in self.vols:
            if k == strike:
                return vol
        return None


@dataclass(frozen=True, slots=True)
class Pmrm2Market:
    """Everything PMRM_2 reads of the market at one valuation time (prices in USD, not in the stable asset)."""

    time: int
    underlying: str
    spot: Pmrm2Feed
    perp: Pmrm2Feed
    stable: Pmrm2Feed
    expiries: tuple[Pmrm2ExpiryMarket, ...]
    assets: tuple[tuple[str, Pmrm2Feed], ...]  # collateral prices, sorted by symbol

    def expiry(self, expiry: int) -> Pmrm2ExpiryMarket | None:
        """Return the feeds of ``expiry`` or None."""
        for e in self.expiries:
            if e.expiry == expiry:
                return e
        return None

    def asset(self, symbol: str) -> Pmrm2Feed | None:
        """Return the price feed of collateral ``symbol`` or None."""
        for s, feed in self.assets:
            if s == symbol:
                return feed
        return None


@dataclass(frozen=True, slots=True)
class Pmrm2Option:
    """A signed option holding."""

    expiry: int
    strike: float
    is_call: bool
    amount: float


@dataclass(frozen=True, slots=True)
class Pmrm2Book:
    """One account: options (document order), a perpetual, collateral amounts and cash (USD, counted at par)."""

    options: tuple[Pmrm2Option, ...]
    perp_amount: float
    perp_cost: float  # size x entry price; the perp's value is size x perp price - cost - funding
    perp_funding: float  # funding owed
    collateral: tuple[tuple[str, float], ...]
    cash: float


@dataclass(frozen=True, slots=True)
class Pmrm2Result:
    """Margin of one book; money in USD with 18 decimals (int), the scenario P&Ls as computed (float)."""

    equity: int  # the mark-to-market: cash + options + perp value + collateral
    initial_margin: int  # equity - initial_margin is Derive's IM (a signed surplus)
    maintenance_margin: int
    worst_scenario: int  # index into the scenarios; len(scenarios) when the basis contingency is the worst
    scenario_pnls: tuple[float, ...]
    basis_contingency: float


@dataclass(frozen=True, slots=True)
class _Expiry:
    """An expiry of the book with everything precomputed once (Derive's ``addPrecomputes``)."""

    seconds: int
    market: Pmrm2ExpiryMarket
    options: tuple[Pmrm2Option, ...]
    vols: tuple[float, ...]
    discount: float
    mark: float
    vol_up: float
    vol_down: float
    static_pos: float
    static_neg: float


def _black76(is_call: bool, forward: float, strike: float, seconds: int, vol: float, discount: float) -> float:
    """Return the Black-76 price; intrinsic value times the discount at expiry or at zero vol."""
    if seconds <= 0 or vol <= 0.0:
        intrinsic = forward - strike if is_call else strike - forward
        return discount * max(intrinsic, 0.0)
    std = vol * math.sqrt(seconds / SECONDS_PER_YEAR)
    d1 = (det_log(forward / strike) + 0.5 * std * std) / std
    d2 = d1 - std
    if is_call:
        return discount * (forward * norm_cdf(d1) - strike * norm_cdf(d2))
    return discount * (strike * norm_cdf(-d2) - forward * norm_cdf(-d1))


def _value_expiry(e: _Expiry, spot_shock: float, vols: tuple[float, ...]) -> float:
    """Return the value of an expiry's options at a spot multiplier (on the forward's variable portion)."""
    forward = e.market.forward_variable * spot_shock + e.market.forward_fixed
    total = 0.0
    for option, vol in zip(e.options, vols, strict=True):
        price = _black76(option.is_call, forward, option.strike, e.seconds, vol, e.discount)
        total += price * option.amount
    return total


def _scaled_vols(e: _Expiry, multiplier: float, floor: float) -> tuple[float, ...]:
    """Return each option's vol times ``multiplier``, at least ``floor``."""
    return tuple(max(floor, vol * multiplier) for vol in e.vols)


def _skew_vols(e: _Expiry, skew: Pmrm2SkewShock, linear: bool) -> tuple[float, ...]:
    """Return each option's vol in the linear or absolute skew scenario."""
    sqrt_tau = math.sqrt(e.seconds / SECONDS_PER_YEAR)
    if linear:
        cap = skew.linear_c_base * sqrt_tau + skew.linear_base_cap
    else:
        cap = skew.abs_c_base * sqrt_tau + skew.abs_base_cap
    vol_param = skew.vol_param_static + sqrt_tau * skew.vol_param_scale
    k_star = max(skew.min_k_star, sqrt_tau * skew.width_scale * vol_param)
    if k_star <= 0.0:  # Derive's contract reverts on this division by zero too
        raise PricingError("pmrm2.skew_shock.min_k_star", f"the skew width k* is {k_star!r} at T = {e.seconds} s")
    forward = e.market.forward_variable + e.market.forward_fixed
    vols = []
    for option, vol in zip(e.options, e.vols, strict=True):
        k = det_log(option.strike / forward)
        if not linear:
            k = abs(k)
        tilt = min(cap, k * cap / k_star) if k >= 0 else max(-cap, k * cap / k_star)
        vols.append(vol * max(1.0 + tilt, 0.0))
    return tuple(vols)


def compute_naked_shorts(options: tuple[Pmrm2Option, ...]) -> float:
    """Return the short option amount not offset by a long at the same strike (calls and puts alike, per pair)."""
    naked = 0.0
    seen = [False] * len(options)
    for i, option in enumerate(options):
        if seen[i]:
            continue
        paired = False
        for j in range(i + 1, len(options)):
            other = options[j]
            if other.strike != option.strike:
                continue
            seen[j] = True
            paired = True
            a, b = option.amount, other.amount
            if a * b < 0:
                naked += abs(a) - min(-a, b) if a < 0 else abs(b) - min(a, -b)
            elif a < 0:
                naked += abs(a) + abs(b)
        if not paired and option.amount < 0:
            naked += abs(option.amount)
    return naked


def _confidence_contingency(c: Pmrm2Contingency, confidence: float, notional: float) -> float:
    """Return the IM add-on of a notional priced by a feed of low confidence (0 at or above the threshold)."""
    if confidence < c.confidence_threshold:
        return (1.0 - confidence) * c.confidence_margin * notional
    return 0.0


def to_wad(value: float) -> int:
    """Return ``value`` in units of 1e-18, rounded half to even (exact: no binary-to-decimal drift)."""
    scaled: Fraction = Fraction(value) * WAD
    return round(scaled)


def _precompute_expiry(
    params: Pmrm2Params, market: Pmrm2Market, expiry: int, options: tuple[Pmrm2Option, ...]
) -> _Expiry:
    """Return an expiry's discount, mark, vol multipliers and static discount factors."""
    feeds = market.expiry(expiry)
    if feeds is None:
        raise InputError("expiries", f"no forward, rate or vols for expiry {expiry} (unix seconds)")
    vols = []
    for option in options:
        vol = feeds.vol_at(option.strike)
        if vol is None:
            raise InputError("expiries", f"no vol for strike {option.strike!r} of expiry {expiry} (unix seconds)")
        vols.append(vol)
    seconds = max(expiry - market.time, 0)
    tau = seconds / SECONDS_PER_YEAR
    rate = max(feeds.rate, 0.0)
    discount = det_exp(-rate * seconds / SECONDS_PER_YEAR)
    vs = params.vol_shock
    floor = max(float(seconds), vs.dte_floor_days * DAY)
    if floor <= 0.0:  # an expired option with no floor: Derive's contract reverts on this division by zero too
        raise PricingError("pmrm2.vol_shock.dte_floor_days", f"0 with expiry {expiry} at or before the market time")
    tenor = THIRTY_DAYS / floor
    scale = det_pow(tenor, vs.short_term_power if seconds <= THIRTY_DAYS else vs.long_term_power)
    m = params.margin
    static_pos = m.long_base_static_discount * det_exp(-(tau * (rate * m.long_rate_mult_scale + m.long_rate_add_scale)))
    static_neg = m.short_base_static_discount / det_exp(
        -(tau * (rate * m.short_rate_mult_scale + m.short_rate_add_scale))
    )
    e = _Expiry(
        seconds=seconds,
        market=feeds,
        options=options,
        vols=tuple(vols),
        discount=discount,
        mark=0.0,
        vol_up=1.0 + vs.range_up * scale,
        vol_down=max(0.0, 1.0 - vs.range_down * scale),
        static_pos=static_pos,
        static_neg=min(1.0 / discount, static_neg),
    )
    return replace(e, mark=_value_expiry(e, 1.0, e.vols))


def _expiry_pnl(params: Pmrm2Params, e: _Expiry, scenario: Pmrm2Scenario) -> float:
    """Return one expiry's dampened P&L in one scenario (never positive in a skew scenario)."""
    if scenario.vol in SKEW_DIRECTIONS:
        shocked = _value_expiry(e, 1.0, _skew_vols(e, params.skew_shock, scenario.vol == "linear"))
    elif scenario.vol == "up":
        shocked = _value_expiry(e, scenario.spot_shock, _scaled_vols(e, e.vol_up, params.vol_shock.min_vol_up))
    elif scenario.vol == "down":
        shocked = _value_expiry(e, scenario.spot_shock, _scaled_vols(e, e.vol_down, 0.0))
    else:
        shocked = e.mark if scenario.spot_shock == 1.0 else _value_expiry(e, scenario.spot_shock, e.vols)
    shocked = shocked * (e.static_pos if shocked >= 0 else e.static_neg)
    pnl = (shocked - e.mark) * scenario.dampening
    return -abs(pnl) if scenario.vol in SKEW_DIRECTIONS else pnl


def compute_pmrm2_margin(params: Pmrm2Params, market: Pmrm2Market, book: Pmrm2Book) -> Pmrm2Result:
    """Return the PMRM_2 equity, initial and maintenance margin of one book.

    Errors: ``InputError`` naming the expiry, strike or collateral the market or the parameters do not cover.
    """
    c = params.contingency
    spot = market.spot.price
    portfolio_confidence = market.spot.confidence
    if book.perp_amount != 0:
        portfolio_confidence = min(portfolio_confidence, market.perp.confidence)
    perp_notional = abs(book.perp_amount) * spot
    perp_value = book.perp_amount * market.perp.price - book.perp_cost - book.perp_funding
    mark_to_market = perp_value
    mm_contingency = perp_notional * c.mm_perp_percent
    im_contingency = perp_notional * c.im_perp_percent
    im_contingency += _confidence_contingency(c, portfolio_confidence, perp_notional)

    expiries: list[_Expiry] = []
    basis = 0.0
    by_expiry: dict[int, list[Pmrm2Option]] = {}
    for option in book.options:
        by_expiry.setdefault(option.expiry, []).append(option)
    b = params.basis
    for expiry, options in by_expiry.items():
        e = _precompute_expiry(params, market, expiry, tuple(options))
        expiries.append(e)
        mark_to_market += e.mark
        up = _value_expiry(e, b.spot_up, e.vols)
        down = _value_expiry(e, b.spot_down, e.vols)
        basis += min(up - e.mark, down - e.mark, 0.0) * (b.add_factor + b.mult_factor * e.seconds / SECONDS_PER_YEAR)
        naked_notional = compute_naked_shorts(e.options) * spot
        mm_contingency += naked_notional * c.mm_option_percent
        im_contingency += naked_notional * c.im_option_percent
        confidence = min(
            portfolio_confidence, e.market.forward_confidence, e.market.rate_confidence, e.market.vol_confidence
        )
        net_options = sum((abs(o.amount) for o in e.options), 0.0)
        im_contingency += _confidence_contingency(c, confidence, net_options * spot)

    collateral_values: list[tuple[Pmrm2Collateral, float]] = []
    for symbol, amount in book.collateral:
        feed = market.asset(symbol)
        if feed is None:
            raise InputError(f"collateral.{symbol}", f"the market has no price for collateral {symbol!r}")
        asset = params.collateral_of(symbol)
        if asset is None:
            raise InputError(f"collateral.{symbol}", f"the parameters have no haircuts for collateral {symbol!r}")
        value = amount * feed.price / market.stable.price
        collateral_values.append((asset, value))
        mark_to_market += value
        mm_contingency += value * asset.mm_haircut
        im_contingency += value * asset.im_haircut
        # the collateral's confidence meets the spot's, not the perp's (Derive folds the perp's in afterwards)
        im_contingency += _confidence_contingency(c, min(feed.confidence, market.spot.confidence), value)

    worst = basis
    worst_index = len(params.scenarios)
    pnls = []
    for index, scenario in enumerate(params.scenarios):
        pnl = book.perp_amount * ((scenario.spot_shock - 1.0) * market.perp.price) * scenario.dampening
        for e in expiries:
            pnl += _expiry_pnl(params, e, scenario)
        for asset, value in collateral_values:
            if asset.risk_cancelling:
                pnl += value * (scenario.spot_shock - 1.0) * scenario.dampening
        pnls.append(pnl)
        if pnl < worst:
            worst, worst_index = pnl, index

    im_factor = params.margin.im_loss_factor
    if market.stable.price < c.peg_loss_threshold:
        im_factor += (c.peg_loss_threshold - market.stable.price) * c.peg_loss_factor
    equity = mark_to_market + book.cash
    initial = -(worst * im_factor) + im_contingency + mm_contingency
    maintenance = -(worst * params.margin.mm_loss_factor) + mm_contingency
    return Pmrm2Result(
        equity=to_wad(equity),
        initial_margin=to_wad(initial),
        maintenance_margin=to_wad(maintenance),
        worst_scenario=worst_index,
        scenario_pnls=tuple(pnls),
        basis_contingency=basis,
    )
