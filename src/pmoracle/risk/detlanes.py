"""Branch-free forms of ``detmath``'s functions and of Black-76, bit-identical to them, for vectorized loops.

The functions of ``detmath`` and ``pricing.black76`` are the definitions (and, run as Python, the reference). Their
data-dependent branches keep LLVM from vectorizing a loop over many options. The ``*_lanes`` functions here compute
**every** path of the definition for every element, each path with the same IEEE-754 operations in the same order
as the definition, and then pick the definition's path with selects (``a if c else b`` on values already computed,
which LLVM turns into blends). Each element's result is therefore the definition's result, bit for bit, whichever
lane of a SIMD register it occupies; the tests check it on random inputs and on every branch boundary.

The only rewrites are exact identities, each noted where it is used:

- ``(r c) / (c - 2) == -((r c) / (2 - c))``: ``c - 2`` is ``-(2 - c)`` exactly and division is sign-symmetric, so
  det_exp's ``k = 0`` and ``k != 0`` forms share one division;
- ``x - 1.0 * LN2_HI`` (and with ``-1.0``, ``0.0``) for fdlibm's ``|x| < 1.5 ln2`` and ``|x| < 0.5 ln2`` reductions:
  multiplying by 1, -1 or 0 is exact and ``x - (-y) == x + y``, ``x - 0.0 == x``;
- a multiplication by 1.0 (or 2**0) where the definition has none: exact for every non-NaN value.

Inputs a definition does not accept (it would raise as Python, or convert an out-of-range float to int when
compiled: a NaN or infinite argument of the Gaussian factor) get a finite, unspecified value here; arguments are
clamped before every float -> int conversion so no lane ever converts an out-of-range value. The selects return
the definition's special values for NaN, infinities, zero and negative arguments.

Compiled use only (``register_jitable(forceinline=True)``: LLVM inlines them into the calling numba function, whose
loop it can then vectorize; the caller must not enable fastmath). Run as Python, the speculative paths would raise
on a division by zero or ``int(inf)``.
"""

from __future__ import annotations

import math

from numba.extending import register_jitable

from pmoracle.risk.detmath import (
    ERF_THRESH,
    ERFC_XBIG,
    EXP_3HALF_LN2_BOUND,
    EXP_HALF_LN2_BOUND,
    EXP_O_THRESHOLD,
    EXP_P1,
    EXP_P2,
    EXP_P3,
    EXP_P4,
    EXP_P5,
    EXP_U_THRESHOLD,
    INF,
    INV_LN2,
    INV_SQRT2,
    INV_SQRT_2PI,
    LN2_HI,
    LN2_LO,
    NAN,
    NORM_TAIL_ZERO,
    _bits_to_float,
    _erf_small,
    _erfc_rational_far,
    _erfc_rational_near,
    _float_to_bits,
    log_series,
)

MIN_NORMAL = 2.2250738585072014e-308
TWO_P54 = 18014398509481984.0  # 2**54
EXP_TINY = 3.725290298461914e-09  # 2**-28
MANTISSA_MASK = 0x000FFFFFFFFFFFFF
ONE_BITS = 0x3FF0000000000000


@register_jitable(forceinline=True)
def _pow2_bits(k: int) -> float:
    """Return 2**k for -1022 <= k <= 1023 by building its bits (any other k gives some finite or inf value)."""
    return _bits_to_float((k + 1023) << 52)  # type: ignore[call-arg]


@register_jitable(forceinline=True)
def det_exp_lanes(x: float) -> float:
    """Return ``det_exp(x)`` (fdlibm e_exp.c) bit for bit, without branches."""
    # clamp for the float -> int conversion; lanes outside [U, O] or NaN take a special value below
    xc = x if x > EXP_U_THRESHOLD else EXP_U_THRESHOLD
    xc = xc if xc < EXP_O_THRESHOLD else EXP_O_THRESHOLD
    ax = abs(xc)
    positive = xc > 0.0
    k_far = int(INV_LN2 * xc + (0.5 if positive else -0.5))  # definition: INV_LN2 * x +- 0.5
    k_near = 1 if positive else -1
    k = k_near if ax < EXP_3HALF_LN2_BOUND else k_far
    k = 0 if ax < EXP_HALF_LN2_BOUND else k
    t = float(k)
    hi = xc - t * LN2_HI  # t = +-1: x -+ LN2_HI exactly as the definition's near reduction; t = 0: hi = x
    lo = t * LN2_LO
    r = hi - lo  # t = 0: r = x (x - 0.0 == x, -0.0 included)
    tt = r * r
    c = r - tt * (EXP_P1 + tt * (EXP_P2 + tt * (EXP_P3 + tt * (EXP_P4 + tt * EXP_P5))))
    q = (r * c) / (2.0 - c)
    y_k0 = 1.0 - (-q - r)  # definition (k = 0): 1 - ((r c) / (c - 2) - r), and (r c) / (c - 2) == -q exactly
    y = 1.0 - ((lo - q) - hi)
    # the definition scales y by 2**k as (y * s1) * s2: s1 = 2**k, s2 = 1 for a normal result (the * 1.0 is
    # exact); s1 = 2, s2 = 2**(k - 1) when k = 1024; s1 = 2**(k + 1000), s2 = 2**-1000 for a subnormal result
    big = k > 1023
    subnormal = k < -1021
    e1 = 1 if big else (k + 1000 if subnormal else k)
    e2 = k - 1 if big else (-1000 if subnormal else 0)
    scaled = (y * _pow2_bits(e1)) * _pow2_bits(e2)
    result = y_k0 if k == 0 else scaled
    result = 1.0 + x if ax < EXP_TINY else result
    result = 0.0 if x < EXP_U_THRESHOLD else result
    result = INF if x > EXP_O_THRESHOLD else result
    return x if x != x else result


@register_jitable(forceinline=True)
def det_log_lanes(x: float) -> float:
    """Return ``det_log(x)`` (fdlibm e_log.c) bit for bit, without branches."""
    # x = m1 2**e, m1 in [1, 2): a subnormal is first scaled by 2**54 (exact; a normal x by 1.0, exact)
    subnormal = x < MIN_NORMAL
    xs = x * (TWO_P54 if subnormal else 1.0)
    bits: int = _float_to_bits(xs)  # type: ignore[call-arg]
    e = ((bits >> 52) & 0x7FF) - 1023 + (-54 if subnormal else 0)
    m1: float = _bits_to_float((bits & MANTISSA_MASK) | ONE_BITS)
    hx = int((m1 - 1.0) * 1048576.0)
    halve = hx >= 0x6A09C
    m1 = m1 * (0.5 if halve else 1.0)
    k = e + (1 if halve else 0)
    f = m1 - 1.0
    dk = float(k)
    # |f| < 2**-20
    if_zero = 0.0 if k == 0 else dk * LN2_HI + dk * LN2_LO
    r0 = f * f * (0.5 - 0.33333333333333333 * f)
    if_small = f - r0 if k == 0 else dk * LN2_HI - ((r0 - dk * LN2_LO) - f)
    if_small = if_zero if f == 0.0 else if_small
    # general case
    s, r = log_series(f)
    hfsq = 0.5 * f * f
    if_hfsq = f - (hfsq - s * (hfsq + r)) if k == 0 else dk * LN2_HI - ((hfsq - (s * (hfsq + r) + dk * LN2_LO)) - f)
    if_plain = f - s * (f - r) if k == 0 else dk * LN2_HI - ((s * (f - r) - dk * LN2_LO) - f)
    result = if_hfsq if 0x6147A <= hx <= 0x6B851 else if_plain
    result = if_small if ((2 + hx) & 0xFFFFF) < 3 else result
    result = x if x == INF else result
    result = -INF if x == 0.0 else result
    result = NAN if x < 0.0 else result
    return x if x != x else result


@register_jitable(forceinline=True)
def erfc_rational_lanes(y: float) -> float:
    """Return ``_erfc_rational(y)`` (Cody's R on both of its intervals) bit for bit, without branches."""
    near = _erfc_rational_near(y)
    far = _erfc_rational_far(y)
    return near if y <= 4.0 else far


@register_jitable(forceinline=True)
def det_erfc_lanes(x: float) -> float:
    """Return ``det_erfc(x)`` bit for bit, without branches."""
    y = abs(x)
    central = 1.0 - _erf_small(x)
    yc = y if y < ERFC_XBIG else 0.0  # the split's float -> int conversion needs a bounded argument
    tail = 0.0 if y >= ERFC_XBIG else _exp_neg_square_lanes(yc) * erfc_rational_lanes(y)
    outer = 2.0 - tail if x < 0.0 else tail
    result = central if y <= ERF_THRESH else outer
    return x if x != x else result


@register_jitable(forceinline=True)
def _exp_neg_square_lanes(y: float) -> float:
    """Return ``_exp_neg_square(y)`` for 0 <= y < 27 (exp(-y^2) by the exact split)."""
    ys = float(int(y * 16.0)) * 0.0625
    d = (y - ys) * (y + ys)
    return det_exp_lanes(-(ys * ys)) * det_exp_lanes(-d)


@register_jitable(forceinline=True)
def gauss_factor_lanes(y: float) -> float:
    """Return ``gauss_factor(y)`` = exp(-y^2 / 2) for y >= 0 bit for bit, without branches; NaN for NaN."""
    yc = y if y < NORM_TAIL_ZERO else 0.0  # bounded for the split's float -> int conversion (NaN too)
    ys = float(int(yc * 16.0)) * 0.0625
    d = (yc - ys) * (yc + ys)
    g = det_exp_lanes(-0.5 * (ys * ys)) * det_exp_lanes(-0.5 * d)
    g = 0.0 if y >= NORM_TAIL_ZERO else g
    return y if y != y else g


@register_jitable(forceinline=True)
def norm_cdf_given_gauss_lanes(x: float, gauss: float, erf_part: float, rational: float) -> float:
    """Return ``norm_cdf_given_gauss(x, gauss)`` given ``_erf_small`` and ``_erfc_rational`` of ``|x| / sqrt 2``.

    The caller computes both (it knows which other terms share them); the select picks the one the definition
    uses.
    """
    y = abs(x)
    z = y * INV_SQRT2
    half_erf = 0.5 * erf_part
    central = 0.5 - half_erf if x < 0.0 else 0.5 + half_erf
    tail = 0.0 if y >= NORM_TAIL_ZERO else 0.5 * (gauss * rational)
    outer = tail if x < 0.0 else 1.0 - tail
    return central if z <= ERF_THRESH else outer


@register_jitable(forceinline=True)
def norm_cdf_lanes(x: float) -> float:
    """Return ``norm_cdf(x)`` bit for bit, without branches."""
    y = abs(x)
    z = y * INV_SQRT2
    # the definition passes gauss = 1.0 on the erf branch, where it is not used
    value = norm_cdf_given_gauss_lanes(x, gauss_factor_lanes(y), _erf_small(z), erfc_rational_lanes(z))
    return x if x != x else value


@register_jitable(forceinline=True)
def norm_pdf_lanes(x: float) -> float:
    """Return ``norm_pdf(x)`` bit for bit, without branches."""
    value = gauss_factor_lanes(abs(x)) * INV_SQRT_2PI
    return x if x != x else value


@register_jitable(forceinline=True)
def black76_lanes(
    is_call: bool, F: float, K: float, T: float, vol: float, df: float
) -> tuple[float, float, float, float, float]:
    """Return ``pricing.black76(is_call, F, K, T, vol, df)`` bit for bit, without branches.

    Every quantity either branch of the definition needs is computed, then selected. The two normal-tail
    evaluations share their rational parts: the out-of-the-money form's ``R(u_near / sqrt 2)`` and
    ``R(u_far / sqrt 2)`` are ``R(|d1| / sqrt 2)`` and ``R(|d2| / sqrt 2)`` in some order (both distances are
    positive there, and negation is exact), the same values the near-the-money form's ``Phi`` calls use.
    """
    invalid = not (F > 0.0 and K > 0.0 and F < INF and K < INF) or T != T or vol != vol or df != df
    sqrt_t = math.sqrt(T) if T > 0.0 else 0.0  # llvm.sqrt of a negative T is NaN, selected away
    s = vol * sqrt_t
    # intrinsic value (s <= 0 or NaN)
    if is_call:
        intrinsic = F - K if F > K else 0.0
        d_int = 1.0 if F > K else 0.0
    else:
        intrinsic = K - F if K > F else 0.0
        d_int = -1.0 if F < K else 0.0
    ratio = F / K
    x = det_log_lanes(ratio)
    a = x / s
    h = 0.5 * s
    d1 = a + h
    d2 = a - h
    ad1 = abs(d1)
    ad2 = abs(d2)
    g1 = gauss_factor_lanes(ad1)
    pdf1 = g1 * INV_SQRT_2PI
    z1 = ad1 * INV_SQRT2
    z2 = ad2 * INV_SQRT2
    rational1 = erfc_rational_lanes(z1)
    rational2 = erfc_rational_lanes(z2)
    erf1 = _erf_small(z1)
    erf2 = _erf_small(z2)
    u_near = -d1 if is_call else d2
    # out of the money by more than 0.66 standard deviations: one shared Gaussian factor
    r_near = rational1 if is_call else rational2
    r_far = rational2 if is_call else rational1
    otm_price = df * (0.5 * ((F * g1) * (r_near - r_far)))
    otm_delta = df * (0.5 * (g1 * r_near)) if is_call else -(df * (0.5 * (g1 * r_far)))
    # near or in the money: the two tails
    g2 = g1 * ratio if g1 > 1e-300 else gauss_factor_lanes(ad2)
    sd1 = d1 if is_call else -d1
    sd2 = d2 if is_call else -d2
    n1 = norm_cdf_given_gauss_lanes(sd1, g1, erf1, rational1)
    n2 = norm_cdf_given_gauss_lanes(sd2, g2, erf2, rational2)
    itm_price = df * (F * n1 - K * n2) if is_call else df * (K * n2 - F * n1)
    itm_delta = df * n1 if is_call else -(df * n1)
    otm = u_near * INV_SQRT2 > ERF_THRESH
    price = otm_price if otm else itm_price
    delta = otm_delta if otm else itm_delta
    price = 0.0 if price < 0.0 else price
    gamma = (df * pdf1 / F) / s
    vega = df * F * pdf1 * sqrt_t
    theta = -(df * F * pdf1 * vol) / (2.0 * sqrt_t)
    live = s > 0.0
    price = price if live else df * intrinsic
    delta = delta if live else df * d_int
    gamma = gamma if live else 0.0
    vega = vega if live else 0.0
    theta = theta if live else 0.0
    if invalid:
        return NAN, NAN, NAN, NAN, NAN
    return price, delta, gamma, vega, theta
