"""The cascade stress test: a joint shock, then re-margin, liquidate and price impact until no account breaches.

Each step re-margins every account with the engine (``compute_accounts`` on the step's market), liquidates every
account below maintenance margin with the Liquidator's fractional rule (``pmoracle.keeper.decision``: the largest
fraction ``f*`` at the modelled discount, the whole book when ``E < d M``, the insurance fund paying the subsidy
``d M - E`` of a whole book), and moves each underlying by the net delta the liquidators received and unwind through
the square-root law ``move = Y x sigma x sqrt(Q / ADV)``. It stops when no account breaches, when a step moves no
price (the same market cannot breach an account the step restored, up to the rounding docs/liquidation.md bounds)
or at the depth limit. See docs/stress.md.

Deterministic: prices, sizes, cash, fractions and moves are integers (the engine's fixed-point units, WAD fractions),
the margins come from the engine's exact integer sums, and the only floats (an option's delta, an ATM vol) are
computed with + - * / sqrt and the project's deterministic ``exp``/``log``, then quantized.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from fractions import Fraction

import numpy as np
import numpy.typing as npt

from pmoracle.errors import InputError
from pmoracle.keeper.decision import AuctionParams, max_fraction, quote
from pmoracle.risk import kernel
from pmoracle.risk.concentration import DELTA_SCALE
from pmoracle.risk.errors import AccountOverflowError, MissingSmileError
from pmoracle.risk.inputs import (
    MAX_PRICE,
    MONEY_DECIMALS,
    PRICE_DECIMALS,
    SIZE_DECIMALS,
    WAD,
    MarketSnapshot,
    Portfolio,
    Smile,
)
from pmoracle.risk.margin import (
    WAD_PER_MONEY,
    Book,
    RiskArrays,
    compute_accounts,
    compute_risk_arrays,
)
from pmoracle.risk.params import STANDARD_STRESS, NamedStress, RiskParams, StressParams
from pmoracle.risk.scenarios import compute_atm_vol, compute_scenarios
from pmoracle.risk.table import CollateralRef, RiskInstrument, check_feeds

IntArray = npt.NDArray[np.int64]

MAX_MOVE = WAD * 99 // 100  # one step moves a price by at most 99% either way
SMILE_LIMIT = 10 * WAD  # the largest SVI a and b a Smile accepts
# size (1e-4 units) x price (1e-8 USD) is 1e-12 USD; MONEY is 1e-8 USD
NOTIONAL_DIVISOR = 10 ** (SIZE_DECIMALS + PRICE_DECIMALS - MONEY_DECIMALS)
SIZE_UNITS = 10**SIZE_DECIMALS
DAYS_PER_YEAR = 365
_HALF = 10**9  # WAD = _HALF**2: the base of compute_moved's split products


@dataclass(frozen=True, slots=True)
class Shock:
    """A joint shock: relative price moves per underlying (each > -1) and one relative move of every implied vol."""

    moves: tuple[tuple[str, Fraction], ...]
    vol_shock: Fraction = Fraction(0)

    @classmethod
    def of(cls, stress: NamedStress) -> Shock:
        """Return the shock of a named stress of the parameters document."""
        return cls(stress.moves, stress.vol_shock)


@dataclass(frozen=True, slots=True)
class LiquidationModel:
    """How the cascade liquidates: the Liquidator's parameters, the discount bids land at, the fund's balance."""

    auction: AuctionParams
    discount: int  # WAD fraction of MM; the keeper's plateau bids land at auction.max_discount
    insurance_fund: int  # USD WAD, the fund's balance before the stress

    def __post_init__(self) -> None:
        if not 0 <= self.discount <= self.auction.max_discount:
            raise InputError("discount", f"{self.discount} is outside [0, max_discount {self.auction.max_discount}]")


@dataclass(frozen=True, slots=True)
class CascadeStep:
    """One step: who breached, what was sold and what it did to prices and to the fund."""

    step: int  # 1-based
    accounts_breached: int  # equity below maintenance margin at this step's prices
    accounts_whole: int  # of which liquidated whole (E < d M, insolvent included)
    notional_liquidated: int  # MONEY: sum of |size moved| x price, every position and collateral
    forced_volume: tuple[tuple[str, int], ...]  # per underlying: net delta received and sold (SIZE units, + = sold)
    price_moves: tuple[tuple[str, int], ...]  # per underlying: the impact applied after the step (WAD, signed)
    shortfall: int  # USD WAD: subsidies the fund paid for whole books this step
    fees: int  # USD WAD: the fund's share of partial bids' discounts this step


@dataclass(frozen=True, slots=True)
class StressResult:
    """The outcome of a cascade (USD WAD for money)."""

    steps: tuple[CascadeStep, ...]
    shortfall: int  # every subsidy the fund paid
    fees: int  # every fee the fund received
    insurance_fund: int  # the fund's balance before the stress
    account_shortfall: tuple[tuple[bytes, int], ...]  # per defaulting account, largest first (address breaks ties)
    price_path: tuple[tuple[str, tuple[int, ...]], ...]  # per underlying: index before, after the shock, after steps
    truncated: bool  # stopped at the depth limit while prices still moved

    @property
    def cascade_depth(self) -> int:
        """Return the number of steps in which some account was liquidated."""
        return sum(1 for s in self.steps if s.accounts_breached)

    @property
    def cover1(self) -> int:
        """Return the shortfall of the largest defaulting account (Cover 1)."""
        return sum(x for _, x in self.account_shortfall[:1])

    @property
    def cover2(self) -> int:
        """Return the shortfall of the two largest defaulting accounts (Cover 2)."""
        return sum(x for _, x in self.account_shortfall[:2])

    @property
    def fund_after(self) -> int:
        """Return the fund's balance after the stress (negative: a loss socialized on cash holders)."""
        return self.insurance_fund + self.fees - self.shortfall


# --- market moves -------------------------------------------------------------------------------------------------


def _scale(value: int, num: int, den: int) -> int:
    """Return value x num / den rounded toward minus infinity, at least 1 and at most MAX_PRICE (a price)."""
    return max(1, min(int(MAX_PRICE), value * num // den))


def _move_underlying(market: MarketSnapshot, symbol: str, num: int, den: int) -> MarketSnapshot:
    """Return ``market`` with the index, forwards and collateral prices of ``symbol`` multiplied by num / den."""
    unds = tuple(
        replace(u, index=_scale(u.index, num, den), forwards=tuple((e, _scale(p, num, den)) for e, p in u.forwards))
        if u.symbol == symbol
        else u
        for u in market.underlyings
    )
    assets = tuple(replace(a, price=_scale(a.price, num, den)) if a.underlying == symbol else a for a in market.assets)
    return replace(market, underlyings=unds, assets=assets)


def _shock_smile(smile: Smile, factor: Fraction, field: str) -> Smile:
    """Return ``smile`` with its total variance multiplied by ``factor`` (a and b scale, the shape stays)."""
    a = smile.a * factor.numerator // factor.denominator
    b = smile.b * factor.numerator // factor.denominator
    if abs(a) > SMILE_LIMIT or b > SMILE_LIMIT:
        raise InputError(field, f"the shocked smile of {smile.expiry} leaves the SVI bounds (a={a}, b={b})")
    return replace(smile, a=a, b=b)


def shock_market(market: MarketSnapshot, shock: Shock) -> MarketSnapshot:
    """Return ``market`` after the shock: prices x (1 + move), implied vols x (1 + vol_shock).

    Errors: ``InputError`` naming ``shock.SYMBOL`` for an unknown underlying or a move <= -1, ``vol_shock`` for
    a vol move <= -1 or one that leaves the SVI bounds.
    """
    symbols = {u.symbol for u in market.underlyings}
    for symbol, move in shock.moves:
        if symbol not in symbols:
            raise InputError(f"shock.{symbol}", f"unknown underlying {symbol!r} (the market has {sorted(symbols)})")
        if move <= -1:
            raise InputError(f"shock.{symbol}", f"{move} must exceed -1")
    if shock.vol_shock <= -1:
        raise InputError("vol_shock", f"{shock.vol_shock} must exceed -1")
    out = market
    for symbol, move in shock.moves:
        factor = 1 + move
        out = _move_underlying(out, symbol, factor.numerator, factor.denominator)
    if shock.vol_shock:
        variance = (1 + shock.vol_shock) ** 2
        out = replace(
            out,
            underlyings=tuple(
                replace(u, smiles=tuple(_shock_smile(s, variance, "vol_shock") for s in u.smiles))
                for u in out.underlyings
            ),
        )
    return out


def compute_impact(volume: int, adv: Fraction, sigma: int, impact: Fraction) -> int:
    """Return the relative price move (WAD, signed) of selling ``volume`` SIZE units (buying if negative):
    -sign(volume) x Y x sigma x sqrt(|volume| / ADV), rounded toward zero, at most MAX_MOVE in size."""
    if volume == 0 or impact == 0 or sigma == 0:
        return 0
    # sqrt(|Q| / ADV) in WAD: isqrt(|Q| / SIZE_UNITS / ADV x WAD^2), exact integer square root
    root = math.isqrt(abs(volume) * adv.denominator * WAD * WAD // (adv.numerator * SIZE_UNITS))
    size = min(MAX_MOVE, impact.numerator * sigma * root // (impact.denominator * WAD))
    return -size if volume > 0 else size


def compute_daily_vols(market: MarketSnapshot, stress: StressParams) -> dict[str, int]:
    """Return each underlying's daily sigma in WAD: the document's ``daily_vol``, else ATM implied vol / sqrt(365).

    Errors: ``InputError`` naming ``stress.daily_vol.SYMBOL`` when neither exists (no smile to read a vol from).
    """
    overrides = dict(stress.daily_vol)
    out: dict[str, int] = {}
    for und in market.underlyings:
        if und.symbol in overrides:
            vol = overrides[und.symbol]
            out[und.symbol] = vol.numerator * WAD // vol.denominator
            continue
        try:
            annual = compute_atm_vol(market, und)
        except MissingSmileError:
            out[und.symbol] = -1  # unknown: an error only if the underlying is ever sold
            continue
        out[und.symbol] = int(annual / math.sqrt(DAYS_PER_YEAR) * WAD)
    return out


# --- per-instrument figures ---------------------------------------------------------------------------------------


def _unit_price(market: MarketSnapshot, arrays: RiskArrays, row: int) -> int:
    """Return the price (PRICE_SCALE) a unit of row ``row`` is counted at in the liquidated notional."""
    inst = arrays.instruments[row]
    if isinstance(inst, CollateralRef):
        return market.asset(inst.symbol).price
    return market.underlying(inst.underlying).index


def _underlying_of(market: MarketSnapshot, arrays: RiskArrays, row: int) -> str | None:
    inst = arrays.instruments[row]
    if isinstance(inst, CollateralRef):
        return market.asset(inst.symbol).underlying
    return inst.underlying


def compute_moved(amount: IntArray, fraction: IntArray) -> IntArray:
    """Return trunc(amount x fraction / WAD) elementwise, exactly (toward zero, as the contract moves sizes and
    balances), for |amount| <= 2**62 and 0 <= fraction <= WAD: the product is split in base 1e9 so that every
    partial product fits int64."""
    x = np.abs(amount)
    xh, xl = np.divmod(x, _HALF)
    fh, fl = np.divmod(fraction, _HALF)
    mid = xh * fl + xl * fh  # < 4.7e9 x 1e9 + 1e9 x 1e9
    moved = xh * fh + mid // _HALF + ((mid % _HALF) * _HALF + xl * fl) // (_HALF * _HALF)
    signed: IntArray = np.where(amount < 0, -moved, moved)
    return signed


def _account_positions(layout: kernel.Positions, accounts: IntArray) -> tuple[IntArray, IntArray]:
    """Return the position indices of ``accounts`` (in account order) and how many each holds."""
    counts = layout.ends[accounts] - layout.starts[accounts]
    firsts = np.cumsum(counts) - counts
    total = int(counts.sum())
    index = np.repeat(layout.starts[accounts], counts) + np.arange(total, dtype=np.int64) - np.repeat(firsts, counts)
    return index, counts


def _sum_by_row(rows: IntArray, values: IntArray) -> dict[int, int]:
    """Return the exact sum of ``values`` per row (int64 when no partial sum can overflow, else Python ints)."""
    if float(np.abs(values).astype(np.float64).sum()) < 2.0**62:
        totals = np.zeros(int(rows.max()) + 1 if rows.size else 0, dtype=np.int64)
        np.add.at(totals, rows, values)
        return {int(r): int(totals[r]) for r in np.unique(rows)}
    out: dict[int, int] = {}
    for row, value in zip(rows.tolist(), values.tolist(), strict=True):
        out[row] = out.get(row, 0) + value
    return out


def _liquidate(
    model: LiquidationModel,
    out: kernel.AccountArrays,
    breached: IntArray,
    layout: kernel.Positions,
    shortfall_of: dict[int, int],
) -> tuple[int, int, int, dict[int, int], dict[int, int]]:
    """Liquidate every breached account in ``layout`` (in place); return (whole books, subsidies, fees, net and
    gross size moved per row). ``shortfall_of`` gains each whole book's subsidy."""
    fractions = np.empty(breached.size, dtype=np.int64)
    payments: list[int] = []
    whole = shortfall = fees = 0
    for k, a in enumerate(breached.tolist()):
        equity = int(out.equity[a]) * WAD_PER_MONEY
        mm = int(out.maintenance_margin[a]) * WAD_PER_MONEY
        fraction = max_fraction(model.auction, equity, mm, model.discount)
        bid = quote(model.auction, fraction, equity, mm, model.discount)
        fractions[k] = fraction
        payments.append(bid.payment)
        fees += bid.fee
        if fraction == WAD:
            whole += 1
            subsidy = max(0, -bid.payment)
            shortfall += subsidy
            shortfall_of[a] = shortfall_of.get(a, 0) + subsidy
    index, counts = _account_positions(layout, breached)
    moved = compute_moved(layout.size[index], np.repeat(fractions, counts))
    layout.size[index] -= moved  # a whole book (fraction WAD) moves every size: zero remains
    rows = layout.inst[index]
    kept = layout.cash[breached] - compute_moved(layout.cash[breached], fractions)
    for k, a in enumerate(breached.tolist()):
        # the bidder pays the account (rounded down to MONEY); a whole book's cash went with it, the fund pays
        layout.cash[a] = 0 if fractions[k] == WAD else int(kept[k]) + payments[k] // WAD_PER_MONEY
    return whole, shortfall, fees, _sum_by_row(rows, moved), _sum_by_row(rows, np.abs(moved))


# --- the cascade --------------------------------------------------------------------------------------------------


def run_cascade(
    market: MarketSnapshot,
    params: RiskParams,
    portfolios: Sequence[Portfolio],
    shock: Shock,
    stress: StressParams,
    model: LiquidationModel,
) -> StressResult:
    """Return the cascade of ``shock`` on the book ``portfolios`` (see the module docstring).

    Errors: as ``shock_market`` and ``compute_book``; ``InputError`` naming ``stress.adv.SYMBOL`` or
    ``stress.daily_vol.SYMBOL`` when an underlying with forced sales lacks the figure its impact needs.
    """
    book = Book(shock_market(market, shock), params, portfolios)
    accounts = tuple(p.account for p in book.portfolios)
    return run_cascade_on_layout(market, params, book.arrays.instruments, book.layout(), accounts, shock, stress, model)


def run_cascade_on_layout(
    market: MarketSnapshot,
    params: RiskParams,
    instruments: Sequence[RiskInstrument],
    layout: kernel.Positions,
    accounts: Sequence[bytes],
    shock: Shock,
    stress: StressParams,
    model: LiquidationModel,
) -> StressResult:
    """Return the cascade of ``shock`` on a book already laid out for the kernel (``Book.layout()``: account ``a``
    holds ``size[j]`` of ``instruments[inst[j]]`` for starts[a] <= j < ends[a]); ``layout`` is consumed (its sizes
    and cash are liquidated in place).

    Errors: as ``run_cascade``.
    """
    shocked = shock_market(market, shock)
    check_feeds(shocked, params)
    arrays = compute_risk_arrays(shocked, params, instruments, compute_scenarios(params, shocked))
    symbols = [u.symbol for u in market.underlyings]
    path: dict[str, list[int]] = {s: [market.underlying(s).index, shocked.underlying(s).index] for s in symbols}
    adv = dict(stress.adv)
    sigmas: dict[str, int] | None = None
    current = shocked
    shortfall_of: dict[int, int] = {}
    steps: list[CascadeStep] = []
    truncated = False
    for step in range(1, stress.max_depth + 1):
        if step > 1:
            arrays = compute_risk_arrays(current, params, arrays.instruments, compute_scenarios(params, current))
        out = compute_accounts(arrays, params, *layout)
        for bad in np.flatnonzero(out.status).tolist():
            raise AccountOverflowError(accounts[bad], bad, math.inf)
        breached = np.flatnonzero(out.equity < out.maintenance_margin)
        if breached.size == 0:
            break
        liquidation = _liquidate(model, out, breached, layout, shortfall_of)
        whole, shortfall, fees, moved_net, moved_gross = liquidation
        volume: dict[str, int] = {}
        notional = 0
        for row in sorted(moved_net):
            notional += moved_gross[row] * _unit_price(current, arrays, row) // NOTIONAL_DIVISOR
            und = _underlying_of(current, arrays, row)
            if und is not None and moved_net[row]:
                volume[und] = volume.get(und, 0) + moved_net[row] * int(arrays.delta[row])
        forced = {u: int(Fraction(v, DELTA_SCALE)) for u, v in volume.items()}
        moves: dict[str, int] = {}
        for und in symbols:
            q = forced.get(und, 0)
            if q == 0 or stress.impact == 0:
                moves[und] = 0
                continue
            if und not in adv:
                raise InputError(f"stress.adv.{und}", f"missing: {und} has forced sales to price (volume {q})")
            if sigmas is None:
                sigmas = compute_daily_vols(shocked, stress)
            if sigmas[und] < 0:
                raise InputError(f"stress.daily_vol.{und}", f"missing: {und} has no smile to read a volatility from")
            moves[und] = compute_impact(q, adv[und], sigmas[und], stress.impact)
        steps.append(
            CascadeStep(
                step=step,
                accounts_breached=int(breached.size),
                accounts_whole=whole,
                notional_liquidated=notional,
                forced_volume=tuple((u, forced.get(u, 0)) for u in symbols),
                price_moves=tuple((u, moves[u]) for u in symbols),
                shortfall=shortfall,
                fees=fees,
            )
        )
        for und in symbols:
            if moves[und]:
                current = _move_underlying(current, und, WAD + moves[und], WAD)
            path[und].append(current.underlying(und).index)
        if not any(moves.values()):
            break
        truncated = step == stress.max_depth
    ranked = sorted(((accounts[a], x) for a, x in shortfall_of.items() if x > 0), key=lambda p: (-p[1], p[0]))
    return StressResult(
        steps=tuple(steps),
        shortfall=sum(s.shortfall for s in steps),
        fees=sum(s.fees for s in steps),
        insurance_fund=model.insurance_fund,
        account_shortfall=tuple(ranked),
        price_path=tuple((u, tuple(path[u])) for u in symbols),
        truncated=truncated,
    )


def run_standard_stress(
    market: MarketSnapshot,
    params: RiskParams,
    portfolios: Sequence[Portfolio],
    auction: AuctionParams,
    insurance_fund: int,
) -> StressResult | None:
    """Return the cascade of the document's ``standard`` stress on a round's book, bids at the auction's maximum
    discount (where the keeper bids); None when the document defines no standard stress.

    Errors: as ``run_cascade``.
    """
    named = None if params.stress is None else params.stress.scenario(STANDARD_STRESS)
    if params.stress is None or named is None:
        return None
    model = LiquidationModel(auction, auction.max_discount, insurance_fund)
    return run_cascade(market, params, portfolios, Shock.of(named), params.stress, model)
