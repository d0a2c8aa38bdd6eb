"""The public margin API: risk arrays of a market snapshot, a book of accounts, per-account reports.

- ``compute_book(market, params, portfolios)``: every account's IM, MM, equity and worst scenario (the node).
- ``Book``: risk arrays + account layout held in memory; ``update_account`` recomputes one account only.
- ``compute_account_report(market, params, portfolio)``: the full report of one account (the CLI).

Money is MONEY (USD with 8 decimals) in Python ints: the round (``pmoracle.node.round``) turns an account's
``AccountMargin`` into its on-chain leaf. Equity counts the account's ledger balances (settlement cash, futures
costs, accrued funding: USD WAD) folded into MONEY once per account (``compute_account_cash``); margins never depend
on them. See docs/risk-model.md for the model.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from pmoracle.risk import kernel
from pmoracle.risk.concentration import compute_concentration_addon, compute_concentration_terms, exposure_of
from pmoracle.risk.detscalar import det_exp, det_log
from pmoracle.risk.errors import AccountOverflowError, PricingError
from pmoracle.risk.inputs import (
    MONEY_DECIMALS,
    MONEY_SCALE,
    PRICE_SCALE,
    SIZE_SCALE,
    WAD_DECIMALS,
    Instrument,
    InstrumentKind,
    MarketSnapshot,
    Portfolio,
)
from pmoracle.risk.kernel import AccountArrays
from pmoracle.risk.params import RiskParams
from pmoracle.risk.pricing import black76, svi_total_variance
from pmoracle.risk.roll import compute_roll_terms
from pmoracle.risk.scenarios import ScenarioSet, compute_scenarios
from pmoracle.risk.table import (
    KIND_ASSET,
    CollateralRef,
    InstrumentTable,
    RiskInstrument,
    build_instrument_table,
    check_feeds,
    instrument_field,
)

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]

WAD_PER_MONEY: int = 10 ** (WAD_DECIMALS - MONEY_DECIMALS)
# A folded cash beyond this cannot be passed to the kernel as int64: it is clamped here, where the kernel's overflow
# bound (|cash| + ..., limit just under 2**62) reports the account instead of summing it.
CASH_CLAMP = 2**62


@dataclass(frozen=True, eq=False)
class RiskArrays:
    """Instrument x scenario P&L of one unit (``r``, int64 MONEY per SIZE unit) with base values and add-ons."""

    scenarios: ScenarioSet
    table: InstrumentTable
    r: IntArray  # (I, S)
    base: IntArray  # (I,) mark value per unit
    addon: IntArray  # (I,) short-option add-on per unit
    bound: FloatArray  # (I,) max|r| + addon + |base|, the per-unit term of the overflow bound
    delta: IntArray  # (I,) delta of one unit on its underlying, concentration.DELTA_SCALE
    concentration_coef: FloatArray  # (U,) c_u of the concentration add-on; empty without [concentration]
    concentration_threshold: IntArray  # (U,) exposure free of charge (SIZE x DELTA units)
    roll_bucket: IntArray  # (I,) the row's roll-shock bucket (roll.py), -1 for none
    roll_coef: FloatArray  # (B,) c_b of the roll shock, MONEY per exposure unit; empty without [roll_shock]
    r_narrow: npt.NDArray[np.int32] | None = None  # ``r`` as int32 when every value fits: half the memory traffic

    @property
    def instruments(self) -> tuple[RiskInstrument, ...]:
        """Return the instruments in row order."""
        return self.table.instruments


@dataclass(frozen=True, slots=True)
class AccountMargin:
    """One account's attested values (MONEY) and its worst scenario."""

    account: bytes
    initial_margin: int
    maintenance_margin: int
    equity: int
    worst_scenario: int
    is_empty: bool  # no position, no collateral and no cash (folded to MONEY): no leaf


@dataclass(frozen=True, slots=True)
class BookResult:
    """Every account of a round, in input order, with the parameters and scenarios they were computed under."""

    params_hash: bytes
    scenario_labels: tuple[str, ...]
    accounts: tuple[AccountMargin, ...]


@dataclass(frozen=True, slots=True)
class UnderlyingGreeks:
    """Net greeks of an account on one underlying (display only): delta in units, vega per vol point, theta/day."""

    underlying: str
    delta: float
    gamma: float
    vega: float
    theta: float


@dataclass(frozen=True, slots=True)
class AccountReport:
    """Everything the CLI shows for one account. Money in MONEY ints."""

    account: bytes
    params_hash: bytes
    maintenance_margin: int
    initial_margin: int
    equity: int
    worst_scenario: int
    worst_scenario_label: str
    scenario_labels: tuple[str, ...]
    risk_array: tuple[int, ...]  # P&L per scenario
    greeks: tuple[UnderlyingGreeks, ...]
    expected_shortfall: int
    expected_shortfall_level: float
    isolated_margin: int
    cross_margin: int
    capital_released: int  # isolated - maintenance margin
    # the part of MM charged for concentration; None when the document has no [concentration] section
    concentration_addon: int | None = None
    # the part of MM charged for the roll shock; None when the document has no [roll_shock] section
    roll_shock: int | None = None
    # P&L per scenario as MM counts it (compute_counted_pnl); None when the document has no extreme.dampener_usd
    counted_risk_array: tuple[int, ...] | None = None


def _instrument_key(inst: RiskInstrument) -> tuple[int, Instrument | CollateralRef]:
    return (1, inst) if isinstance(inst, CollateralRef) else (0, inst)


def portfolio_instruments(portfolio: Portfolio) -> set[RiskInstrument]:
    """Return the instruments (derivatives and collateral assets) ``portfolio`` holds."""
    held: set[RiskInstrument] = {p.instrument for p in portfolio.positions}
    held.update(CollateralRef(symbol) for symbol, _ in portfolio.collateral)
    return held


def compute_account_cash(portfolio: Portfolio) -> int:
    """Return the account's ledger balances in MONEY: floor((cash - sum of costs - sum of funding) / 1e10).

    One floor (toward minus infinity) per account, on the exact integer sum, so an account that owes a fraction of
    a MONEY unit is charged a whole one and the result never depends on the order of the positions.
    """
    total = portfolio.cash
    for p in portfolio.positions:
        total -= p.cost + p.funding
    return total // WAD_PER_MONEY


def _cash_word(cash: int) -> int:
    """Return ``cash`` clamped to [-CASH_CLAMP, CASH_CLAMP] (the clamped value is still over the overflow bound)."""
    return max(-CASH_CLAMP, min(CASH_CLAMP, cash))


def compute_risk_arrays(
    market: MarketSnapshot, params: RiskParams, instruments: Sequence[RiskInstrument], scenarios: ScenarioSet
) -> RiskArrays:
    """Return the risk arrays of ``instruments``; raise a named error if one cannot be valued or represented."""
    table = build_instrument_table(market, params, scenarios, tuple(instruments))
    n_inst, n_scen = len(instruments), len(scenarios)
    r = np.zeros((n_inst, n_scen), dtype=np.int64)
    base = np.zeros(n_inst, dtype=np.int64)
    addon = np.zeros(n_inst, dtype=np.int64)
    status = np.zeros(n_inst, dtype=np.int64)
    delta = np.zeros(n_inst, dtype=np.int64)
    if n_inst:
        kernel.compute_risk_arrays_kernel(
            table.kind, table.und, table.strike, table.tau, table.index, table.fwd, table.rate, table.haircut,
            table.svi, scenarios.price_mult, scenarios.vol_shock, table.horizon, table.vol_params,
            table.power_eighths, table.vol_shift, r, base, addon, status, delta,
        )  # fmt: skip
    for i in np.flatnonzero(status):
        field = instrument_field(instruments[int(i)])
        if status[i] == kernel.STATUS_NO_VARIANCE:
            raise PricingError(field, "the smile gives a non-positive total variance at this strike")
        raise PricingError(field, "a scenario value is out of the int64 range (non-finite or >= 2**62)")
    maxabs = np.abs(r).max(axis=1) if n_scen else np.zeros(n_inst, dtype=np.int64)
    bound = maxabs.astype(np.float64) + addon.astype(np.float64) + np.abs(base).astype(np.float64)
    coef, threshold = compute_concentration_terms(params.concentration, market, scenarios.underlyings)
    roll_bucket, roll_coef = compute_roll_terms(params.roll_shock, market, table)
    return RiskArrays(
        scenarios, table, r, base, addon, bound, delta, coef, threshold, roll_bucket, roll_coef, _narrow(r)
    )


def _narrow(r: IntArray) -> npt.NDArray[np.int32] | None:
    """Return ``r`` as int32 if every value fits (the products are still formed in int64: same results)."""
    if r.size and int(np.abs(r).max()) >= 2**31:
        return None
    return r.astype(np.int32)


def extreme_scenarios(scenarios: ScenarioSet) -> IntArray:
    """Return the indices (ascending) of the scenarios counted at a cover fraction other than 1 or dampened."""
    return np.flatnonzero(~_plain(scenarios)).astype(np.int64)


_NO_DAMP = np.zeros(0, dtype=np.int64)  # MarginTerms.damp of a document without extreme.dampener_usd


def _plain(scenarios: ScenarioSet) -> npt.NDArray[np.bool_]:
    """Return which scenarios count their whole loss: a cover of 1 and no dampening."""
    plain: npt.NDArray[np.bool_] = (scenarios.cover_num == scenarios.cover_den) & (scenarios.damp == 0)
    return plain


def compute_counted_pnl(pnl: Sequence[int], scenarios: ScenarioSet) -> list[int]:
    """Return each scenario's P&L (MONEY) as MM counts it: a loss at its cover fraction (rounded up, a gain at its
    cover rounded down), then an extended move's dampened toward zero by its amount (``extreme.dampener_usd``), at
    most to zero. MM's scenario term is ``max(0, -min)`` of it (the kernel's arithmetic, in Python ints)."""
    den = scenarios.cover_den
    out = []
    for s, value in enumerate(pnl):
        counted = (value * int(scenarios.cover_num[s])) // den  # -ceil(loss x cover / den), loss = -value
        damp = int(scenarios.damp[s])
        out.append(counted - damp if counted > damp else counted + damp if counted < -damp else 0)
    return out


def _margin_terms(
    arrays: RiskArrays, params: RiskParams, r: npt.NDArray[np.int64] | npt.NDArray[np.int32], extremes: IntArray
) -> kernel.MarginTerms:
    scenarios, im = arrays.scenarios, params.im_multiplier
    return kernel.MarginTerms(
        r, arrays.base, arrays.addon, arrays.bound, scenarios.cover_num, scenarios.cover_den, extremes,
        _plain(scenarios).astype(np.int64), scenarios.damp if scenarios.is_dampened else _NO_DAMP,
        im.numerator, im.denominator, params.im_min_buffer, arrays.table.und, arrays.delta,
        arrays.concentration_coef, arrays.concentration_threshold, arrays.roll_bucket, arrays.roll_coef,
    )  # fmt: skip


def compute_accounts(
    arrays: RiskArrays,
    params: RiskParams,
    starts: IntArray,
    ends: IntArray,
    inst: IntArray,
    size: IntArray,
    cash: IntArray,
    narrow: bool = True,
) -> AccountArrays:
    """Return every account's margin; account ``a`` holds ``size[j]`` of row ``inst[j]`` for starts[a] <= j < ends[a]
    and ``cash[a]`` MONEY (its ledger balances folded by ``compute_account_cash``, within [-2**62, 2**62]).

    The low-level entry of the node and the benchmark: no Python work per account. ``narrow`` reads the int32
    copy of the risk arrays when there is one (identical results, less memory traffic).
    """
    r = arrays.r_narrow if narrow and arrays.r_narrow is not None else arrays.r
    n_acc = starts.shape[0]
    out = AccountArrays(*(np.zeros(n_acc, dtype=np.int64) for _ in AccountArrays._fields))
    terms = _margin_terms(arrays, params, r, extreme_scenarios(arrays.scenarios))
    kernel.compute_accounts_kernel(terms, kernel.Positions(starts, ends, inst, size, cash), out)
    return out


def _account_layout(
    portfolio: Portfolio, rows: dict[RiskInstrument, int]
) -> tuple[list[tuple[int, int]], list[RiskInstrument]]:
    """Return the canonical (row, size) list (duplicates merged, zeros dropped, sorted) and unknown instruments."""
    merged: dict[int, int] = {}
    missing: list[RiskInstrument] = []
    for p in portfolio.positions:
        row = rows.get(p.instrument)
        if row is None:
            missing.append(p.instrument)
        else:
            merged[row] = merged.get(row, 0) + p.size
    for symbol, amount in portfolio.collateral:
        ref = CollateralRef(symbol)
        row = rows.get(ref)
        if row is None:
            missing.append(ref)
        else:
            merged[row] = merged.get(row, 0) + amount
    return sorted((row, size) for row, size in merged.items() if size != 0), missing


def _account_positions(portfolio: Portfolio, rows: dict[RiskInstrument, int]) -> list[tuple[int, int]]:
    """Return the canonical (row, size) list of a portfolio whose instruments all have rows."""
    return _account_layout(portfolio, rows)[0]


class Book:
    """A round's book: the risk arrays and the account layout, kept for incremental updates."""

    def __init__(self, market: MarketSnapshot, params: RiskParams, portfolios: Sequence[Portfolio]) -> None:
        check_feeds(market, params)
        self.market = market
        self.params = params
        self.scenarios = compute_scenarios(params, market)
        held: set[RiskInstrument] = {p.instrument for portfolio in portfolios for p in portfolio.positions}
        held.update(CollateralRef(symbol) for portfolio in portfolios for symbol, _ in portfolio.collateral)
        self.arrays = compute_risk_arrays(market, params, sorted(held, key=_instrument_key), self.scenarios)
        self._rows = {inst: i for i, inst in enumerate(self.arrays.instruments)}
        self.portfolios = list(portfolios)
        layouts = [_account_positions(p, self._rows) for p in self.portfolios]
        counts = np.array([len(x) for x in layouts], dtype=np.int64)
        self._ends = np.cumsum(counts, dtype=np.int64)
        self._starts = self._ends - counts
        flat = [pos for layout in layouts for pos in layout]
        self._inst = np.array([row for row, _ in flat], dtype=np.int64)
        self._size = np.array([size for _, size in flat], dtype=np.int64)
        self._cash = np.array([_cash_word(compute_account_cash(p)) for p in self.portfolios], dtype=np.int64)
        self._scratch = np.zeros(len(self.scenarios), dtype=np.int64)
        self._extremes = extreme_scenarios(self.scenarios)
        self._out = compute_accounts(self.arrays, params, self._starts, self._ends, self._inst, self._size, self._cash)

    def __len__(self) -> int:
        return len(self.portfolios)

    def _extend(self, instruments: Sequence[RiskInstrument]) -> None:
        extra = compute_risk_arrays(self.market, self.params, instruments, self.scenarios)
        a = self.arrays
        old, add = a.table, extra.table
        columns: dict[str, Any] = {
            name: np.concatenate([getattr(old, name), getattr(add, name)])
            for name in ("kind", "und", "strike", "tau", "index", "fwd", "rate", "haircut", "svi")
        }
        table = dataclasses.replace(old, instruments=old.instruments + add.instruments, **columns)
        roll_bucket, roll_coef = compute_roll_terms(self.params.roll_shock, self.market, table)  # new expiries
        self.arrays = RiskArrays(
            scenarios=self.scenarios,
            table=table,
            r=np.vstack([a.r, extra.r]),
            base=np.concatenate([a.base, extra.base]),
            addon=np.concatenate([a.addon, extra.addon]),
            bound=np.concatenate([a.bound, extra.bound]),
            delta=np.concatenate([a.delta, extra.delta]),
            concentration_coef=a.concentration_coef,
            concentration_threshold=a.concentration_threshold,
            roll_bucket=roll_bucket,
            roll_coef=roll_coef,
        )
        self.arrays = dataclasses.replace(self.arrays, r_narrow=_narrow(self.arrays.r))
        self._rows = {inst: i for i, inst in enumerate(self.arrays.instruments)}

    def update_account(self, index: int, portfolio: Portfolio) -> AccountMargin:
        """Replace account ``index``'s portfolio and recompute that account only; return its new margin.

        Errors: a named ``InputError`` if a new instrument cannot be valued (the book is then unchanged);
        ``AccountOverflowError`` if the new portfolio's exposure bound exceeds the int64 limit.
        """
        if not 0 <= index < len(self.portfolios):
            raise IndexError(f"no account #{index}")
        layout, missing = _account_layout(portfolio, self._rows)
        if missing:
            self._extend(sorted(set(missing), key=_instrument_key))
            layout = _account_positions(portfolio, self._rows)
        start, end = int(self._starts[index]), int(self._ends[index])
        if len(layout) <= end - start:
            j = start
        else:  # relocate the account to the end of the position arrays
            j = self._inst.shape[0]
            self._inst = np.concatenate([self._inst, np.zeros(len(layout), dtype=np.int64)])
            self._size = np.concatenate([self._size, np.zeros(len(layout), dtype=np.int64)])
            self._starts[index] = j
        for row, size in layout:
            self._inst[j] = row
            self._size[j] = size
            j += 1
        self._ends[index] = j
        self._cash[index] = _cash_word(compute_account_cash(portfolio))
        self.portfolios[index] = portfolio
        terms = _margin_terms(self.arrays, self.params, self.arrays.r, self._extremes)
        positions = kernel.Positions(self._starts, self._ends, self._inst, self._size, self._cash)
        kernel.compute_one_account_kernel(index, terms, positions, self._scratch, self._out)
        return self.account_margin(index)

    def account_margin(self, index: int) -> AccountMargin:
        """Return account ``index``'s margin; raise ``AccountOverflowError`` if its bound exceeded the limit."""
        o = self._out
        portfolio = self.portfolios[index]
        if o.status[index] != kernel.STATUS_OK:
            start, end = int(self._starts[index]), int(self._ends[index])
            bound = abs(float(compute_account_cash(portfolio)))
            for j in range(start, end):
                bound += abs(float(self._size[j])) * float(self.arrays.bound[self._inst[j]])
            raise AccountOverflowError(portfolio.account, index, bound)
        return AccountMargin(
            account=portfolio.account,
            initial_margin=int(o.initial_margin[index]),
            maintenance_margin=int(o.maintenance_margin[index]),
            equity=int(o.equity[index]),
            worst_scenario=int(o.worst[index]),
            is_empty=bool(self._ends[index] == self._starts[index] and self._cash[index] == 0),
        )

    def roll_shock(self, index: int) -> int:
        """Return the roll shock (MONEY) inside account ``index``'s MM (0 without the section)."""
        return int(self._out.roll[index])

    def concentration_addon(self, index: int) -> int:
        """Return the concentration add-on (MONEY) inside account ``index``'s MM (0 without the section)."""
        return int(self._out.concentration[index])

    def exposures(self, index: int) -> list[int]:
        """Return account ``index``'s net delta-equivalent exposure per underlying (scenario column order), in
        SIZE x DELTA units (``concentration.EXPOSURE_SCALE`` a unit): the add-on's ``Q``."""
        n_und = len(self.scenarios.underlyings)
        table, delta = self.arrays.table, self.arrays.delta
        return exposure_of(self.positions_of(index), table.und.tolist(), delta.tolist(), n_und)

    def layout(self) -> kernel.Positions:
        """Return a copy of every account's canonical positions and folded cash, as the kernel reads them."""
        return kernel.Positions(
            self._starts.copy(), self._ends.copy(), self._inst.copy(), self._size.copy(), self._cash.copy()
        )

    def positions_of(self, index: int) -> list[tuple[int, int]]:
        """Return account ``index``'s canonical (row, size) positions."""
        start, end = int(self._starts[index]), int(self._ends[index])
        return [(int(self._inst[j]), int(self._size[j])) for j in range(start, end)]

    def result(self) -> BookResult:
        """Return every account's margin; raise ``AccountOverflowError`` for the first account over the bound."""
        o = self._out
        # the arrays read once as Python ints (reading them one account at a time was the engine's largest cost at a
        # million accounts); the values are account_margin's
        over = np.flatnonzero(o.status != kernel.STATUS_OK)
        if over.size:
            self.account_margin(int(over[0]))  # raises the first account's AccountOverflowError
        empty = ((self._ends == self._starts) & (self._cash == 0)).tolist()
        columns = zip(o.initial_margin.tolist(), o.maintenance_margin.tolist(), o.equity.tolist(), o.worst.tolist(),
                      empty, strict=True)  # fmt: skip
        return BookResult(
            params_hash=self.params.params_hash,
            scenario_labels=self.scenarios.labels,
            accounts=tuple(
                AccountMargin(p.account, im, mm, equity, worst, is_empty)
                for p, (im, mm, equity, worst, is_empty) in zip(self.portfolios, columns, strict=True)
            ),
        )


def compute_book(market: MarketSnapshot, params: RiskParams, portfolios: Sequence[Portfolio]) -> BookResult:
    """Return the margin of every account of a round.

    Errors: ``StaleFeedError``, ``MissingSmileError`` (a live option), ``UnknownUnderlyingError``,
    ``UnknownCollateralError``, ``PricingError`` (all ``InputError``), ``AccountOverflowError``.
    """
    return Book(market, params, portfolios).result()


def _python(f: object) -> object:
    return getattr(f, "py_func", f)


def compute_option_state(table: InstrumentTable, i: int) -> tuple[float, float, float]:
    """Return (forward, discount factor, base vol) of option row ``i`` (same formulas as the kernel)."""
    t = float(table.tau[i])
    rate = float(table.rate[i])
    fwd = float(table.fwd[i])
    f = fwd if fwd > 0.0 else float(table.index[i]) * det_exp(rate * t)
    df = det_exp(-(rate * t))
    a, b, rho, m, sig = (float(x) for x in table.svi[i])
    svi = _python(svi_total_variance)
    w = svi(a, b, rho, m, sig, det_log(float(table.strike[i]) / f))  # type: ignore[operator]
    return f, df, math.sqrt(w / t)


def _greeks(arrays: RiskArrays, positions: list[tuple[int, int]]) -> tuple[UnderlyingGreeks, ...]:
    table = arrays.table
    symbols = arrays.scenarios.underlyings
    sums = {u: [0.0, 0.0, 0.0, 0.0] for u in range(len(symbols))}
    b76 = _python(black76)
    for i, size in positions:
        u = int(table.und[i])
        if u < 0:
            continue
        units = size / SIZE_SCALE
        kind = int(table.kind[i])
        if kind == KIND_ASSET:
            sums[u][0] += units * (1.0 - float(table.haircut[i]))
        elif kind in (InstrumentKind.PERPETUAL, InstrumentKind.FUTURE):
            sums[u][0] += units
        elif not float(table.tau[i]) > 0.0:  # expired option: intrinsic value, delta 1 (call) or -1 (put) in the money
            moneyness = float(table.index[i]) - float(table.strike[i])
            if kind == InstrumentKind.CALL and moneyness > 0.0:
                sums[u][0] += units
            elif kind == InstrumentKind.PUT and moneyness < 0.0:
                sums[u][0] -= units
        else:
            f, df, vol = compute_option_state(table, i)
            _, delta, gamma, vega, theta = b76(  # type: ignore[operator]
                kind == InstrumentKind.CALL, f, float(table.strike[i]), float(table.tau[i]), vol, df
            )
            sums[u][0] += units * delta
            sums[u][1] += units * gamma
            sums[u][2] += units * vega / 100.0
            sums[u][3] += units * theta / 365.0
    return tuple(UnderlyingGreeks(symbols[u], *sums[u]) for u in range(len(symbols)))


def compute_expected_shortfall(pnl: Sequence[int], weights: Sequence[float], level: float) -> int:
    """Return the weighted mean loss (MONEY) of the worst ``1 - level`` of the scenario weight."""
    tail = (1.0 - level) * sum(weights)
    taken = 0.0
    total = 0.0
    for s in sorted(range(len(pnl)), key=lambda s: (pnl[s], s)):
        w = min(weights[s], tail - taken)
        if w <= 0.0:
            break
        total += w * -pnl[s]
        taken += w
    return round(total / taken) if taken > 0.0 else 0


def compute_account_report(market: MarketSnapshot, params: RiskParams, portfolio: Portfolio) -> AccountReport:
    """Return the full margin report of one account.

    Isolated margin: each position and each collateral holding alone through the same kernel, summed (so it is
    never below the portfolio MM: the max loss over a common scenario set is sub-additive). Cross margin: per
    underlying |net delta of the positions and the haircut collateral| * index * scan range + short options *
    charge * index.

    Errors: as ``compute_book``.
    """
    singles = [Portfolio(positions=(p,), account=portfolio.account) for p in portfolio.positions if p.size != 0]
    singles += [
        Portfolio(collateral=((symbol, amount),), account=portfolio.account)
        for symbol, amount in portfolio.collateral
        if amount != 0
    ]
    book = Book(market, params, [portfolio, *singles])
    margin = book.account_margin(0)
    arrays = book.arrays
    positions = book.positions_of(0)
    n_scen = len(book.scenarios)
    pnl = [0] * n_scen
    for i, size in positions:
        row = arrays.r[i]
        for s in range(n_scen):
            pnl[s] += size * int(row[s])
    # Isolated margin nets nothing, so its concentration add-on is charged on each underlying's gross exposure (the
    # sum of every position's |size x delta|), never below the portfolio's net one: the add-on grows with |Q|.
    parts = range(1, len(book))
    singles_linear = sum(book.account_margin(k).maintenance_margin - book.concentration_addon(k) for k in parts)
    isolated = singles_linear
    if arrays.concentration_coef.size:
        unsigned = np.abs(arrays.delta).tolist()
        n_und = len(book.scenarios.underlyings)
        gross = exposure_of([(i, abs(size)) for i, size in positions], arrays.table.und.tolist(), unsigned, n_und)
        coef, threshold = arrays.concentration_coef.tolist(), arrays.concentration_threshold.tolist()
        isolated += compute_concentration_addon(coef, threshold, gross)
    greeks = _greeks(arrays, [(i, size) for i, size in positions if int(arrays.table.kind[i]) != KIND_ASSET])
    net = _greeks(arrays, positions)  # collateral included: its haircut value moves with its underlying
    cross = 0.0
    for u, g in enumerate(net):
        index = market.underlying(g.underlying).index / PRICE_SCALE
        cross += abs(g.delta) * index * float(book.scenarios.price_range[u])
    for p in portfolio.positions:
        if p.instrument.is_option and p.size < 0:
            index = market.underlying(p.instrument.underlying).index / PRICE_SCALE
            cross += (-p.size / SIZE_SCALE) * params.cross_short_option_charge * index
    es = compute_expected_shortfall(pnl, [float(w) for w in book.scenarios.es_weight], params.es_level)
    return AccountReport(
        account=portfolio.account,
        params_hash=params.params_hash,
        maintenance_margin=margin.maintenance_margin,
        initial_margin=margin.initial_margin,
        equity=margin.equity,
        worst_scenario=margin.worst_scenario,
        worst_scenario_label=book.scenarios.labels[margin.worst_scenario],
        scenario_labels=book.scenarios.labels,
        risk_array=tuple(pnl),
        greeks=greeks,
        expected_shortfall=es,
        expected_shortfall_level=params.es_level,
        isolated_margin=isolated,
        cross_margin=round(cross * MONEY_SCALE),
        capital_released=isolated - margin.maintenance_margin,
        concentration_addon=None if params.concentration is None else book.concentration_addon(0),
        roll_shock=None if params.roll_shock is None else book.roll_shock(0),
        counted_risk_array=None if params.extreme_dampener is None else tuple(compute_counted_pnl(pnl, book.scenarios)),
    )
