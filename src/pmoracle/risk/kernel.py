# mypy: allow-untyped-defs
"""The numba kernels: instrument risk arrays (instrument x scenario, int64) and per-account margin sums.

Determinism (DESIGN section 4): fastmath off; floating point only through + - * / sqrt, the deterministic scalar
functions of ``detscalar`` and ``pricing`` and their bit-identical branch-free forms in ``detlanes``; every P&L is
quantized to int64 with round-half-even (``np.rint``) before any sum, and account sums are exact int64 arithmetic,
so thread count, batch order and incremental updates cannot change a bit. ``reference.py`` implements the same
algorithm in pure Python.

Units: ``R[i, s] = rint(pnl_usd_per_unit * QUANT)`` with ``QUANT = 10**(MONEY_DECIMALS - SIZE_DECIMALS)``, so
``size * R[i, s]`` (size in SIZE_SCALE units) is MONEY (1e-8 USD) exactly.

Equity: ``cash + sum size * base`` where ``base`` is a unit's mark (an option's value, a future's forward, a
perpetual's index, a collateral asset's haircut value) and ``cash`` the account's ledger balances already folded into
MONEY (``margin.compute_account_cash``: settlement cash less futures costs less accrued funding). Cash is a constant
across scenarios: it moves equity, never a margin.

Concentration (``concentration.py``): with a ``[concentration]`` section, MM adds per underlying
``ceil((c_u * x) * sqrt(x))``, ``x = float(max(0, |Q_u| - T_u))`` and ``Q_u`` the exact int64 sum of size x delta per
unit; the account's float bound then also covers ``sum |size| x |delta|`` and the add-on itself.

Overflow: a value whose quantized magnitude reaches 2**62 marks its instrument invalid (status); an account whose
float64 bound ``|cash| + sum |size| * (max|R| + addon + |base|)`` reaches ``ACCOUNT_LIMIT`` (2**62 less a margin for
the bound's own rounding) is reported (status 1) and never summed. Below the bound every partial sum, equity, the
maximum loss plus add-ons (< 2**62) and IM (<= 3/2 MM + 2**60 < 2**63) fit int64.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import numpy.typing as npt
from numba import njit, prange

from pmoracle.risk.detlanes import black76_lanes
from pmoracle.risk.detscalar import det_exp, det_log, det_pow_eighths
from pmoracle.risk.inputs import MONEY_DECIMALS, SIZE_DECIMALS
from pmoracle.risk.pricing import black76, svi_total_variance

QUANT = float(10 ** (MONEY_DECIMALS - SIZE_DECIMALS))
VALUE_LIMIT = 2.0**62
ACCOUNT_LIMIT = 2.0**62 * (1.0 - 2.0**-20)
CHUNK = 64  # accounts per parallel work item (one scratch row each)
INT64_MAX = np.int64(2**63 - 1)
DELTA_SCALE = 1e6  # concentration.DELTA_SCALE

STATUS_OK = 0
STATUS_OVERFLOW = 1  # a value or an account bound out of the int64 range
STATUS_NO_VARIANCE = 2  # the smile gives a non-positive total variance at the strike

IntArray = npt.NDArray[np.int64]


class MarginTerms(NamedTuple):
    """What turns positions into margin: the instruments' per-unit rows and the scenario and IM rule."""

    r: npt.NDArray[np.int64] | npt.NDArray[np.int32]  # (I, S) P&L of one unit per scenario, MONEY per SIZE unit
    base: IntArray  # (I,) mark value of one unit
    addon: IntArray  # (I,) short-option add-on of one unit
    bound: npt.NDArray[np.float64]  # (I,) max|r| + addon + |base|, the per-unit term of the overflow bound
    cover_num: IntArray  # (S,) fraction of each scenario's loss counted, over cover_den
    cover_den: int
    extremes: IntArray  # the scenarios counted at less than full cover or dampened, ascending
    plain: IntArray  # (S,) 1 where a scenario's loss counts in full (cover 1, no dampening), else 0
    damp: IntArray  # (S,) MONEY: an extended move's dampening amount (extreme.dampener_usd); empty: no dampener
    im_num: int  # IM = max(MM * im_num / im_den rounded up, MM + im_buffer)
    im_den: int
    im_buffer: int
    und: IntArray  # (I,) scenario column of the row's underlying, -1 for none
    delta: IntArray  # (I,) delta of one unit on its underlying, DELTA_SCALE (concentration.py)
    conc_coef: npt.NDArray[np.float64]  # (U,) the add-on's c_u; empty: no [concentration] section
    conc_threshold: IntArray  # (U,) exposure free of charge, SIZE x DELTA units
    roll_bucket: IntArray  # (I,) the row's roll-shock bucket (roll.py), -1 for none
    roll_coef: npt.NDArray[np.float64]  # (B,) MONEY per exposure unit of each bucket; empty: no [roll_shock]


class Positions(NamedTuple):
    """Every account's holdings: account ``a`` holds ``size[j]`` of row ``inst[j]`` for starts[a] <= j < ends[a],
    and ``cash[a]`` MONEY (its ledger balances, folded)."""

    starts: IntArray
    ends: IntArray
    inst: IntArray  # row of the instrument in MarginTerms
    size: IntArray  # SIZE units
    cash: IntArray  # (A,) MONEY: floor((cash - costs - funding) / 1e10) of the account's ledger (USD WAD)


class AccountArrays(NamedTuple):
    """Per-account kernel results (MONEY int64) and status (0 ok, 1 overflow bound exceeded)."""

    maintenance_margin: IntArray
    initial_margin: IntArray
    equity: IntArray
    worst: IntArray
    status: IntArray
    concentration: IntArray  # the concentration add-on inside MM (0 without a [concentration] section)
    roll: IntArray  # the roll shock inside MM (0 without a [roll_shock] section)


@njit(cache=True)
def _quantize(x: float) -> tuple[bool, int]:
    q = x * QUANT
    if not abs(q) < VALUE_LIMIT:  # also catches NaN and infinities
        return False, 0
    return True, int(np.rint(q))


@njit(cache=True)
def _forward(fwd: float, index: float, rate: float, tau: float) -> float:
    if fwd > 0.0:
        return fwd
    return index * det_exp(rate * tau)


@njit(cache=True)
def _intrinsic(is_call: bool, level: float, strike: float) -> float:
    """Return an option's value at expiry on ``level``: max(level - strike, 0) for a call, max(strike - level, 0)
    for a put, undiscounted."""
    x = level - strike if is_call else strike - level
    return x if x > 0.0 else 0.0


@njit(cache=True, parallel=True)
def compute_risk_arrays_kernel(
    kind,
    und,
    strike,
    tau,
    index,
    fwd,
    rate,
    haircut,
    svi,
    price_mult,
    vol_shock,
    horizon,
    vol_params,
    power8,
    vol_shift,
    out_r,
    out_base,
    out_addon,
    out_status,
    out_delta,
):
    """Fill R (I, S), base value, short-option add-on and delta per unit (all quantized) and a status per instrument.

    A row with ``tau == 0`` is an expired option or future (``table.py``): valued at expiry value on the index and,
    per scenario, on the shocked index; vol shocks do not move it and an expired option has no add-on.
    """
    n_inst = kind.shape[0]
    n_scen = price_mult.shape[0]
    # one contiguous row of shocks per underlying, so an option's scenario loop reads unit-stride
    mult_rows = np.ascontiguousarray(price_mult.T)
    vol_rows = np.ascontiguousarray(vol_shock.T)
    for i in prange(n_inst):
        k = kind[i]
        u = und[i]
        status = STATUS_OK
        base_q = 0
        addon_q = 0
        delta_q = 0
        if k == 4:  # collateral asset: price * (1 - haircut), moved by its underlying (stable: never)
            value = index[i] * (1.0 - haircut[i])
            ok, base_q = _quantize(value)
            if not ok:
                status = STATUS_OVERFLOW
            if u >= 0:
                delta_q = int(DELTA_SCALE)  # closing a unit sells a unit
            for s in range(n_scen):
                pnl = 0.0
                if u >= 0:
                    pnl = value * price_mult[s, u] - value
                ok, q = _quantize(pnl)
                if not ok:
                    status = STATUS_OVERFLOW
                out_r[i, s] = q
        elif k == 0 or k == 1:  # perpetual at the index, future at its forward (expired: the index): its mark
            level = index[i]
            if k == 1 and tau[i] > 0.0:
                level = _forward(fwd[i], index[i], rate[i], tau[i])
            ok, base_q = _quantize(level)
            if not ok:
                status = STATUS_OVERFLOW
            delta_q = int(DELTA_SCALE)
            for s in range(n_scen):
                ok, q = _quantize(level * price_mult[s, u] - level)
                if not ok:
                    status = STATUS_OVERFLOW
                out_r[i, s] = q
        elif not tau[i] > 0.0:  # expired option, not yet settled: intrinsic on the (shocked) index, no add-on
            is_call = k == 2
            v0 = _intrinsic(is_call, index[i], strike[i])
            ok, base_q = _quantize(v0)
            if not ok:
                status = STATUS_OVERFLOW
            if is_call and index[i] > strike[i]:
                delta_q = int(DELTA_SCALE)
            elif not is_call and index[i] < strike[i]:
                delta_q = -int(DELTA_SCALE)
            mult = mult_rows[u]
            for s in range(n_scen):
                ok, q = _quantize(_intrinsic(is_call, index[i] * mult[s], strike[i]) - v0)
                if not ok:
                    status = STATUS_OVERFLOW
                out_r[i, s] = q
        else:  # European option: Black-76 on the forward, sticky-strike SVI vol, shocked per scenario
            t = tau[i]
            f = _forward(fwd[i], index[i], rate[i], t)
            df = det_exp(-(rate[i] * t))
            kk = det_log(strike[i] / f)
            w = svi_total_variance(svi[i, 0], svi[i, 1], svi[i, 2], svi[i, 3], svi[i, 4], kk)
            if not w > 0.0:
                out_status[i] = STATUS_NO_VARIANCE
                for s in range(n_scen):
                    out_r[i, s] = 0
                out_base[i] = 0
                out_addon[i] = 0
                out_delta[i] = 0
                continue
            vol = math.sqrt(w / t)
            dte = t * 365.0
            ratio = vol_params[1] / max(dte, vol_params[2])
            shift = min(vol_shift[u] * det_pow_eighths(ratio, power8), vol_params[3])
            is_call = k == 2
            valued = black76(is_call, f, strike[i], t, vol, df)
            v0 = valued[0]
            ok, base_q = _quantize(v0)
            if not ok:
                status = STATUS_OVERFLOW
            d = valued[1] * DELTA_SCALE
            if abs(d) < VALUE_LIMIT:
                delta_q = int(np.rint(d))
            else:  # also NaN
                status = STATUS_OVERFLOW
            ok, addon_q = _quantize(vol_params[6] * index[i])
            if not ok:
                status = STATUS_OVERFLOW
            ts = t - horizon
            dfs = 1.0
            if ts > 0.0:
                dfs = det_exp(-(rate[i] * ts))
            # The scenario values in one branch-free loop (black76_lanes: black76's bits, vectorized), then the
            # quantization. An unshocked scenario keeps the unclamped vol.
            mult = mult_rows[u]
            shocks = vol_rows[u]
            strike_i = strike[i]
            vol_lo = vol_params[4]
            vol_hi = vol_params[5]
            absolute = vol_params[7] != 0.0  # vol.shift_unit: vol + shock x k (vol points), else vol x (1 + shock x k)
            values = np.empty(n_scen)
            for s in range(n_scen):
                vs = shocks[s]
                moved = vol + vs * shift if absolute else vol * (1.0 + vs * shift)
                shocked = min(max(moved, vol_lo), vol_hi)
                vol_s = shocked if vs != 0.0 else vol
                values[s] = black76_lanes(is_call, f * mult[s], strike_i, ts, vol_s, dfs)[0]
            for s in range(n_scen):
                ok, q = _quantize(values[s] - v0)
                if not ok:
                    status = STATUS_OVERFLOW
                out_r[i, s] = q
        out_base[i] = base_q
        out_addon[i] = addon_q
        out_delta[i] = delta_q
        out_status[i] = status


@njit(cache=True)
def _counted(loss, c, den):
    """Return ceil(loss * c / den) exactly, without forming loss * c."""
    q = loss // den
    rem = loss - q * den
    return q * c + (rem * c + den - 1) // den


@njit(cache=True)
def _dampened(loss, d):
    """Return ``loss`` moved toward zero by ``d`` >= 0, at most to zero (a loss never becomes a gain, nor a gain a
    loss); exact, and never larger in magnitude than ``loss``."""
    if loss > d:
        return loss - d
    if loss < -d:
        return loss + d
    return 0


@njit(cache=True)
def _net_exposure(lo, hi, inst, size, key, delta, exposure):
    """Fill ``exposure[k]`` with the exact sum of size x delta of positions lo..hi whose row has key ``k`` (its
    underlying's column, or its roll-shock bucket; -1: none)."""
    for k in range(exposure.shape[0]):
        exposure[k] = 0
    for j in range(lo, hi):
        i = inst[j]
        k = key[i]
        if k >= 0:
            exposure[k] += size[j] * delta[i]


@njit(cache=True)
def _concentration(lo, hi, inst, size, und, delta, coef, threshold, exposure, bound):
    """Return (ok, add-on in MONEY) of positions lo..hi, whose float ``sum |size| x |delta|`` the caller checked
    under ACCOUNT_LIMIT (so every exposure sum is exact int64): per underlying ceil((c * x) * sqrt(x)),
    x = float(max(0, |Q| - T)), Q the exact sum of size x delta; not ok when ``bound`` plus the add-ons reaches
    ACCOUNT_LIMIT (so MM stays inside int64)."""
    _net_exposure(lo, hi, inst, size, und, delta, exposure)
    total = 0
    running = bound
    for u in range(coef.shape[0]):
        excess = abs(exposure[u]) - threshold[u]
        if excess > 0 and coef[u] > 0.0:
            x = float(excess)
            value = coef[u] * x * math.sqrt(x)
            running += value
            if not running < ACCOUNT_LIMIT:  # also inf and NaN
                return False, 0
            total += math.ceil(value)
    return True, total


@njit(cache=True)
def _roll(lo, hi, inst, size, bucket, delta, coef, exposure, running):
    """Return (ok, add-on in MONEY) of the roll shock of positions lo..hi, whose float ``sum |size| x |delta|`` the
    caller checked under ACCOUNT_LIMIT (so every bucket's sum is exact int64): per bucket ceil(c * float(|Q|)); not
    ok when ``running`` (the account's bound so far) plus the charges reaches ACCOUNT_LIMIT."""
    _net_exposure(lo, hi, inst, size, bucket, delta, exposure)
    total = 0
    for b in range(coef.shape[0]):
        q = exposure[b]
        if q != 0 and coef[b] > 0.0:
            value = coef[b] * float(abs(q))
            running += value
            if not running < ACCOUNT_LIMIT:  # also inf and NaN
                return False, 0
            total += math.ceil(value)
    return True, total


@njit(cache=True)
def _account(a, terms, positions, scratch, exposure, roll_exposure, out):
    r, base, addon, bound, cover_num, cover_den, extremes, im_num, im_den, im_buffer = (
        terms.r, terms.base, terms.addon, terms.bound, terms.cover_num, terms.cover_den, terms.extremes,
        terms.im_num, terms.im_den, terms.im_buffer,
    )  # fmt: skip
    plain, damp = terms.plain, terms.damp
    has_damp = damp.shape[0] > 0
    und, delta, conc_coef, conc_threshold = terms.und, terms.delta, terms.conc_coef, terms.conc_threshold
    roll_bucket, roll_coef = terms.roll_bucket, terms.roll_coef
    starts, ends, inst, size, cash = positions
    lo = starts[a]
    hi = ends[a]
    n_scen = r.shape[1]
    b = abs(float(cash[a]))
    equity = cash[a]
    add = 0
    has_conc = conc_coef.shape[0] > 0
    has_roll = roll_coef.shape[0] > 0
    reach = 0.0  # sum |size| x |delta|: a row without an underlying has delta 0
    for j in range(lo, hi):
        i = inst[j]
        sz = size[j]
        b += abs(float(sz)) * bound[i]
        equity += sz * base[i]  # discarded below if the bound is exceeded
        if sz < 0:
            add += -sz * addon[i]
        if has_conc or has_roll:
            reach += abs(float(sz)) * abs(float(delta[i]))
    conc = 0
    roll = 0
    ok = b < ACCOUNT_LIMIT and reach < ACCOUNT_LIMIT
    if ok and has_conc:
        ok, conc = _concentration(lo, hi, inst, size, und, delta, conc_coef, conc_threshold, exposure, b)
    if ok and has_roll:
        ok, roll = _roll(lo, hi, inst, size, roll_bucket, delta, roll_coef, roll_exposure, b + float(conc))
    if not ok:
        out.maintenance_margin[a] = 0
        out.initial_margin[a] = 0
        out.equity[a] = 0
        out.worst[a] = -1
        out.status[a] = STATUS_OVERFLOW
        out.concentration[a] = 0
        out.roll[a] = 0
        return
    # P&L per scenario. Four positions per pass cut the scratch traffic; the first pass stores instead of adding
    # to zeros. Integer sums are exact in any grouping (bound above).
    j = lo
    if hi - lo >= 4:
        row0 = r[inst[j]]
        row1 = r[inst[j + 1]]
        row2 = r[inst[j + 2]]
        row3 = r[inst[j + 3]]
        sz0 = size[j]
        sz1 = size[j + 1]
        sz2 = size[j + 2]
        sz3 = size[j + 3]
        for s in range(n_scen):
            scratch[s] = (sz0 * row0[s] + sz1 * row1[s]) + (sz2 * row2[s] + sz3 * row3[s])
        j += 4
    elif hi > lo:
        row0 = r[inst[j]]
        sz0 = size[j]
        for s in range(n_scen):
            scratch[s] = sz0 * row0[s]
        j += 1
    else:
        for s in range(n_scen):
            scratch[s] = 0
    while j + 3 < hi:
        row0 = r[inst[j]]
        row1 = r[inst[j + 1]]
        row2 = r[inst[j + 2]]
        row3 = r[inst[j + 3]]
        sz0 = size[j]
        sz1 = size[j + 1]
        sz2 = size[j + 2]
        sz3 = size[j + 3]
        for s in range(n_scen):
            scratch[s] += (sz0 * row0[s] + sz1 * row1[s]) + (sz2 * row2[s] + sz3 * row3[s])
        j += 4
    while j < hi:
        row0 = r[inst[j]]
        sz0 = size[j]
        for s in range(n_scen):
            scratch[s] += sz0 * row0[s]
        j += 1
    # Largest counted loss: over the fully counted scenarios it is -min P&L (a branch-free, vectorized minimum;
    # |P&L| < 2**62 by the bound, so the sentinel is never a P&L); the few extremes are counted exactly.
    sentinel = INT64_MAX
    low = sentinel
    for s in range(n_scen):
        v = scratch[s] if plain[s] != 0 else sentinel
        low = min(low, v)
    has_best = low != sentinel
    best = -low if has_best else 0
    for e in range(extremes.shape[0]):
        s = extremes[e]
        loss = _counted(-scratch[s], cover_num[s], cover_den)
        if has_damp:
            loss = _dampened(loss, damp[s])
        if not has_best or loss > best:
            best = loss
            has_best = True
    # The worst scenario: the first one whose counted loss is the largest.
    worst = n_scen
    for e in range(extremes.shape[0]):
        s = extremes[e]
        loss = _counted(-scratch[s], cover_num[s], cover_den)
        if (_dampened(loss, damp[s]) if has_damp else loss) == best:
            worst = s
            break
    for s in range(worst):
        if scratch[s] == -best and plain[s] != 0:
            worst = s
            break
    if worst == n_scen:  # no scenario at all
        worst = 0
    mm = max(best, 0) + add + conc + roll
    im = 0
    if mm > 0:
        q = mm // im_den
        rem = mm - q * im_den
        im = max(q * im_num + (rem * im_num + im_den - 1) // im_den, mm + im_buffer)
    out.maintenance_margin[a] = mm
    out.initial_margin[a] = im
    out.equity[a] = equity
    out.worst[a] = worst
    out.status[a] = STATUS_OK
    out.concentration[a] = conc
    out.roll[a] = roll


@njit(cache=True, parallel=True)
def compute_accounts_kernel(terms, positions, out):
    """Fill ``out`` (an AccountArrays) for every account of ``positions``: MM, IM, equity, worst scenario, status."""
    n_acc = positions.starts.shape[0]
    n_chunks = (n_acc + CHUNK - 1) // CHUNK
    for c in prange(n_chunks):
        scratch = np.empty(terms.r.shape[1], dtype=np.int64)
        exposure = np.empty(terms.conc_coef.shape[0], dtype=np.int64)
        roll_exposure = np.empty(terms.roll_coef.shape[0], dtype=np.int64)
        end = min(n_acc, (c + 1) * CHUNK)
        for a in range(c * CHUNK, end):
            _account(a, terms, positions, scratch, exposure, roll_exposure, out)


@njit(cache=True)
def compute_one_account_kernel(a, terms, positions, scratch, out):
    """Recompute account ``a`` only (the incremental path; same arithmetic as the full kernel)."""
    exposure = np.empty(terms.conc_coef.shape[0], dtype=np.int64)
    roll_exposure = np.empty(terms.roll_coef.shape[0], dtype=np.int64)
    _account(a, terms, positions, scratch, exposure, roll_exposure, out)
