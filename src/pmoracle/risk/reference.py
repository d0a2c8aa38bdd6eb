"""The pure-Python reference of the kernels: the same algorithm, written again with loops and Python ints.

It calls the same scalar functions (pricing, detscalar) from Python, so its floats carry the same bits as the
kernel's; its sums are unbounded Python ints, so agreement with the kernel also shows the kernel never wrapped.
Slow by design: tests compare it with the kernel on random books.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from pmoracle.risk.concentration import DELTA_SCALE, concentration_charge_float
from pmoracle.risk.detscalar import det_exp, det_log, det_pow_eighths
from pmoracle.risk.pricing import black76, svi_total_variance
from pmoracle.risk.scenarios import ScenarioSet
from pmoracle.risk.table import KIND_ASSET, InstrumentTable

QUANT = 10.0**4
VALUE_LIMIT = 2.0**62
ACCOUNT_LIMIT = 2.0**62 * (1.0 - 2.0**-20)


def _python(f: Any) -> Callable[..., Any]:
    result: Callable[..., Any] = getattr(f, "py_func", f)
    return result  # an njit function's Python original; register_jitable ones are plain


_black76 = _python(black76)
_svi = _python(svi_total_variance)


@dataclass(frozen=True, slots=True)
class ReferenceRow:
    """One instrument's quantized risk row, base value, short-option add-on and delta per unit."""

    pnl: tuple[int, ...]
    base: int
    addon: int
    status: int
    delta: int = 0  # DELTA_SCALE, on the row's underlying
    underlying: int = -1  # scenario column of the underlying, -1 for none


@dataclass(frozen=True, slots=True)
class ReferenceAccount:
    """One account's results (MONEY ints) or an overflow status."""

    maintenance_margin: int
    initial_margin: int
    equity: int
    worst: int
    status: int
    concentration: int = 0  # the concentration add-on inside MM


@dataclass(frozen=True, slots=True)
class ReferenceRoll:
    """The roll shock's bucket per row and coefficient per bucket (``RiskArrays`` carries the same, roll.py)."""

    bucket: tuple[int, ...]
    coef: tuple[float, ...]


@dataclass(frozen=True, slots=True)
class ReferenceConcentration:
    """The concentration add-on's per-underlying coefficient and threshold (``RiskArrays`` carries the same)."""

    coef: tuple[float, ...]
    threshold: tuple[int, ...]


def quantize(x: float) -> int | None:
    """Return round-half-even(x * QUANT) or None when it reaches 2**62 (or is not finite)."""
    q = x * QUANT
    if not abs(q) < VALUE_LIMIT:
        return None
    return round(q)


def intrinsic(is_call: bool, level: float, strike: float) -> float:
    """Return an option's undiscounted value at expiry on ``level``."""
    x = level - strike if is_call else strike - level
    return x if x > 0.0 else 0.0


def reference_row(table: InstrumentTable, scenarios: ScenarioSet, i: int) -> ReferenceRow:
    """Return the risk row of instrument ``i``."""
    kind = int(table.kind[i])
    u = int(table.und[i])
    mults = [[float(x) for x in row] for row in scenarios.price_mult]
    vols = [[float(x) for x in row] for row in scenarios.vol_shock]
    delta_ok = True
    pnls: list[float] = []
    base = 0.0
    addon = 0.0
    delta = 0
    index = float(table.index[i])
    rate = float(table.rate[i])
    t = float(table.tau[i])
    fwd = float(table.fwd[i])
    if kind == KIND_ASSET:
        value = index * (1.0 - float(table.haircut[i]))
        base = value
        pnls = [value * m[u] - value if u >= 0 else 0.0 for m in mults]
        delta = DELTA_SCALE if u >= 0 else 0
    elif kind in (0, 1):  # perpetual at the index, future at its forward (expired: the index): its mark
        level = index if kind == 0 or not t > 0.0 else (fwd if fwd > 0.0 else index * det_exp(rate * t))
        base = level
        pnls = [level * m[u] - level for m in mults]
        delta = DELTA_SCALE
    elif not t > 0.0:  # expired option before settlement: intrinsic on the (shocked) index, no add-on
        is_call = kind == 2
        strike = float(table.strike[i])
        base = intrinsic(is_call, index, strike)
        pnls = [intrinsic(is_call, index * m[u], strike) - base for m in mults]
        if is_call and index > strike:
            delta = DELTA_SCALE
        elif not is_call and index < strike:
            delta = -DELTA_SCALE
    else:
        f = fwd if fwd > 0.0 else index * det_exp(rate * t)
        df = det_exp(-(rate * t))
        strike = float(table.strike[i])
        a, b, rho, mm, sig = (float(x) for x in table.svi[i])
        w = _svi(a, b, rho, mm, sig, det_log(strike / f))
        if not w > 0.0:
            return ReferenceRow(tuple(0 for _ in mults), 0, 0, 2)
        vol = math.sqrt(w / t)
        vp = [float(x) for x in table.vol_params]
        k = float(table.vol_shift[u])
        shift = min(k * det_pow_eighths(vp[1] / max(t * 365.0, vp[2]), table.power_eighths), vp[3])
        is_call = kind == 2
        valued = _black76(is_call, f, strike, t, vol, df)
        v0 = valued[0]
        base = v0
        d = valued[1] * DELTA_SCALE
        delta = round(d) if abs(d) < VALUE_LIMIT else 0
        delta_ok = abs(d) < VALUE_LIMIT
        addon = vp[6] * index
        ts = t - table.horizon
        dfs = det_exp(-(rate * ts)) if ts > 0.0 else 1.0
        for m, v in zip(mults, vols, strict=True):
            moved = vol + v[u] * shift if vp[7] != 0.0 else vol * (1.0 + v[u] * shift)  # vol.shift_unit
            vol_s = vol if v[u] == 0.0 else min(max(moved, vp[4]), vp[5])
            pnls.append(_black76(is_call, f * m[u], strike, ts, vol_s, dfs)[0] - v0)
    quantized = [quantize(x) for x in [*pnls, base, addon]]
    status = 1 if any(q is None for q in quantized) or not delta_ok else 0
    values = [0 if q is None else q for q in quantized]
    return ReferenceRow(tuple(values[:-2]), values[-2], values[-1], status, delta, u)


def reference_cash(cash: int, costs: Sequence[int], fundings: Sequence[int]) -> int:
    """Return an account's ledger balances (USD WAD) in MONEY: floor((cash - sum costs - sum funding) / 1e10)."""
    total = cash - sum(costs) - sum(fundings)
    return total // 10**10  # Python's floor division rounds toward minus infinity


def reference_account(
    rows: Sequence[ReferenceRow],
    positions: Sequence[tuple[int, int]],
    scenarios: ScenarioSet,
    im_multiplier: tuple[int, int],
    im_buffer: int,
    cash: int = 0,
    concentration: ReferenceConcentration | None = None,
    roll: ReferenceRoll | None = None,
) -> ReferenceAccount:
    """Return one account's margin from its (instrument row, size) positions, in canonical order, its folded
    cash (MONEY, :func:`reference_cash`), the concentration add-on's terms and the roll shock's (None: none)."""
    bound = abs(float(cash))
    for i, size in positions:
        row = rows[i]
        per_unit = float(max(abs(x) for x in row.pnl)) + float(row.addon) + float(abs(row.base))
        bound += abs(float(size)) * per_unit
    if not bound < ACCOUNT_LIMIT:
        return ReferenceAccount(0, 0, 0, -1, 1)
    conc = 0
    if concentration is not None and concentration.coef:
        added = reference_concentration(rows, positions, concentration, bound)
        if added is None:
            return ReferenceAccount(0, 0, 0, -1, 1)
        conc = added
    rolled = 0
    if roll is not None and roll.coef:
        charged = reference_roll(rows, positions, roll, bound + float(conc))
        if charged is None:
            return ReferenceAccount(0, 0, 0, -1, 1)
        rolled = charged
    n_scen = len(scenarios)
    pnl = [0] * n_scen
    equity = cash
    add = 0
    for i, size in positions:
        row = rows[i]
        equity += size * row.base
        if size < 0:
            add += -size * row.addon
        for s in range(n_scen):
            pnl[s] += size * row.pnl[s]
    den = scenarios.cover_den
    best, worst = 0, 0
    for s in range(n_scen):
        cover = int(scenarios.cover_num[s])
        loss = -pnl[s]
        if cover != den:
            loss = -((-loss * cover) // den)  # ceil(loss * cover / den), exact
        damp = int(scenarios.damp[s])  # extreme.dampener_usd: toward zero by damp, at most to zero
        loss = loss - damp if loss > damp else loss + damp if loss < -damp else 0
        if s == 0 or loss > best:
            best, worst = loss, s
    mm = max(best, 0) + add + conc + rolled
    num, den_im = im_multiplier
    im = max(-((-mm * num) // den_im), mm + im_buffer) if mm > 0 else 0
    return ReferenceAccount(mm, im, equity, worst, 0, conc)


def _net_exposure(
    rows: Sequence[ReferenceRow], positions: Sequence[tuple[int, int]], keys: Sequence[int], n_keys: int
) -> list[int] | None:
    """Return the exact sum of size x delta per key (a row's underlying column or roll bucket; -1: none), or None when
    the float ``sum |size| x |delta|`` reaches the account limit (a row without an underlying has delta 0)."""
    reach = 0.0
    for i, size in positions:
        reach += abs(float(size)) * abs(float(rows[i].delta))
    if not reach < ACCOUNT_LIMIT:
        return None
    exposure = [0] * n_keys
    for i, size in positions:
        if keys[i] >= 0:
            exposure[keys[i]] += size * rows[i].delta
    return exposure


def reference_concentration(
    rows: Sequence[ReferenceRow],
    positions: Sequence[tuple[int, int]],
    concentration: ReferenceConcentration,
    bound: float,
) -> int | None:
    """Return the concentration add-on (MONEY) of the positions, or None when the account's float bound plus the
    float exposure, or plus the add-ons, reaches the account limit (the kernel reports an overflow)."""
    keys = [row.underlying for row in rows]
    exposure = _net_exposure(rows, positions, keys, len(concentration.coef))
    if exposure is None:
        return None
    total = 0
    running = bound
    for coef, threshold, q in zip(concentration.coef, concentration.threshold, exposure, strict=True):
        value = concentration_charge_float(coef, threshold, q)
        if value > 0.0:
            running += value
            if not running < ACCOUNT_LIMIT:
                return None
            total += math.ceil(value)
    return total


def reference_roll(
    rows: Sequence[ReferenceRow], positions: Sequence[tuple[int, int]], roll: ReferenceRoll, running: float
) -> int | None:
    """Return the roll shock (MONEY) of the positions, or None when the float exposure, or ``running`` (the
    account's bound so far) plus the charges, reaches the account limit (the kernel reports an overflow)."""
    exposure = _net_exposure(rows, positions, roll.bucket, len(roll.coef))
    if exposure is None:
        return None
    total = 0
    for coef, q in zip(roll.coef, exposure, strict=True):
        if q != 0 and coef > 0.0:
            value = coef * float(abs(q))
            running += value
            if not running < ACCOUNT_LIMIT:
                return None
            total += math.ceil(value)
    return total
