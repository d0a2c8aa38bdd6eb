"""Deterministic elementary functions built only from IEEE-754 correctly rounded operations.

Every node must compute bit-identical option values, and libm's ``exp``/``log``/``erfc`` differ in their last
bits between CPUs and library versions. The functions here use only ``+ - * /`` and ``sqrt`` (plus the exact
operations ``frexp``, ``ldexp``, comparisons and float <-> int conversion of integral values), so every
conforming platform rounds every step identically.

Algorithms (coefficients copied from the published sources, not refitted):

- ``det_exp``: fdlibm ``e_exp.c`` (Sun Microsystems, 1993): x = k ln2 + r with ln2 split in two parts, a degree-5
  Remez polynomial for the rational form of exp(r); < 1 ulp.
- ``det_log``: fdlibm ``e_log.c``: x = 2^k (1 + f), s = f / (2 + f), a degree-14 (7-term) Remez polynomial in s;
  < 1 ulp.
- ``det_erfc``: W. J. Cody, "Rational Chebyshev approximations for the error function" (Math. Comp. 1969), the
  netlib ``specfun/calerf`` coefficients (March 1990 revision); exp(-y^2) is formed from an exact split
  y = ys + (y - ys), ys = floor(16 y) / 16, as exp(-ys^2) exp(-(y - ys)(y + ys)) where ys^2 is exact.
- ``norm_cdf`` uses Cody's rational part at z = |x| / sqrt(2) but forms the Gaussian factor exp(-x^2/2) by the
  same exact split applied to x itself, so the rounding of x / sqrt(2) is not amplified by the exponential.

Every function is ``numba.extending.register_jitable``: called from Python it runs as plain Python on Python
floats (the reference), called from an ``@njit`` function it is compiled inline (the kernel). Non-finite input:
NaN in gives NaN out; +-inf give the IEEE limits (exp(-inf) = 0, log(inf) = inf, erfc(+-inf) = 0 / 2); log of
a negative number is NaN and of zero -inf. No function loops on, or raises for, any float input.
"""

from __future__ import annotations

import math

from llvmlite import ir
from numba import types
from numba.extending import intrinsic, overload, register_jitable

INF = float("inf")
NAN = float("nan")

# fdlibm e_exp.c / e_log.c constants (hex words of the source in comments)
LN2_HI = 6.93147180369123816490e-01  # 0x3fe62e42 fee00000
LN2_LO = 1.90821492927058770002e-10  # 0x3dea39ef 35793c76
INV_LN2 = 1.44269504088896338700e00  # 0x3ff71547 652b82fe
EXP_O_THRESHOLD = 7.09782712893383973096e02  # 0x40862e42 fefa39ef
EXP_U_THRESHOLD = -7.45133219101941108420e02  # 0xc0874910 d52d3051
TWO_M1000 = 9.33263618503218878990e-302  # 2**-1000
# fdlibm compares high words: hx > 0x3fd62e42 and hx < 0x3ff0a2b2 are these two exact bounds on |x|
EXP_HALF_LN2_BOUND = 0.3465735912322998  # 0x3fd62e43 00000000
EXP_3HALF_LN2_BOUND = 1.0397205352783203  # 0x3ff0a2b2 00000000
EXP_P1 = 1.66666666666666019037e-01  # 0x3fc55555 5555553e
EXP_P2 = -2.77777777770155933842e-03  # 0xbf66c16c 16bebd93
EXP_P3 = 6.61375632143793436117e-05  # 0x3f11566a af25de2c
EXP_P4 = -1.65339022054652515390e-06  # 0xbebbbd41 c5d26bf1
EXP_P5 = 4.13813679705723846039e-08  # 0x3e663769 72bea4d0
LOG_LG1 = 6.666666666666735130e-01  # 0x3fe55555 55555593
LOG_LG2 = 3.999999999940941908e-01  # 0x3fd99999 9997fa04
LOG_LG3 = 2.857142874366239149e-01  # 0x3fd24924 94229359
LOG_LG4 = 2.222219843214978396e-01  # 0x3fcc71c5 1d8e78af
LOG_LG5 = 1.818357216161805012e-01  # 0x3fc74664 96cb03de
LOG_LG6 = 1.531383769920937332e-01  # 0x3fc39a09 d078c69f
LOG_LG7 = 1.479819860511658591e-01  # 0x3fc2f112 df3e5244

# W. J. Cody, netlib specfun calerf (IEEE double precision machine constants)
ERF_THRESH = 0.46875
ERFC_XBIG = 26.543
SQRPI = 5.6418958354775628695e-1  # 1 / sqrt(pi)
ERF_A0 = 3.16112374387056560e00
ERF_A1 = 1.13864154151050156e02
ERF_A2 = 3.77485237685302021e02
ERF_A3 = 3.20937758913846947e03
ERF_A4 = 1.85777706184603153e-1
ERF_B0 = 2.36012909523441209e01
ERF_B1 = 2.44024637934444173e02
ERF_B2 = 1.28261652607737228e03
ERF_B3 = 2.84423683343917062e03
ERFC_C0 = 5.64188496988670089e-1
ERFC_C1 = 8.88314979438837594e00
ERFC_C2 = 6.61191906371416295e01
ERFC_C3 = 2.98635138197400131e02
ERFC_C4 = 8.81952221241769090e02
ERFC_C5 = 1.71204761263407058e03
ERFC_C6 = 2.05107837782607147e03
ERFC_C7 = 1.23033935479799725e03
ERFC_C8 = 2.15311535474403846e-8
ERFC_D0 = 1.57449261107098347e01
ERFC_D1 = 1.17693950891312499e02
ERFC_D2 = 5.37181101862009858e02
ERFC_D3 = 1.62138957456669019e03
ERFC_D4 = 3.29079923573345963e03
ERFC_D5 = 4.36261909014324716e03
ERFC_D6 = 3.43936767414372164e03
ERFC_D7 = 1.23033935480374942e03
ERFC_P0 = 3.05326634961232344e-1
ERFC_P1 = 3.60344899949804439e-1
ERFC_P2 = 1.25781726111229246e-1
ERFC_P3 = 1.60837851487422766e-2
ERFC_P4 = 6.58749161529837803e-4
ERFC_P5 = 1.63153871373020978e-2
ERFC_Q0 = 2.56852019228982242e00
ERFC_Q1 = 1.87295284992346047e00
ERFC_Q2 = 5.27905102951428412e-1
ERFC_Q3 = 6.05183413124413191e-2
ERFC_Q4 = 2.33520497626869185e-3

INV_SQRT2 = 0.7071067811865476  # nearest double to 1/sqrt(2)
INV_SQRT_2PI = 0.3989422804014327  # nearest double to 1/sqrt(2 pi)
# |x| beyond which the normal tail is below the smallest subnormal (exp(-x^2/2) underflows to 0)
NORM_TAIL_ZERO = 38.5


# ---- exact binary-exponent primitives ---------------------------------------------------------------------
# Scaling by a power of two and splitting off the exponent are exact (no rounding) for normal numbers, so the
# Python reference may use math.ldexp/math.frexp while compiled code uses the equivalent bit operations, which
# avoid a libm call per element. Bit-for-bit equality of the two paths is tested on >= 100k inputs.


def pow2(k: int) -> float:
    """Return 2**k exactly, for -1022 <= k <= 1023."""
    return math.ldexp(1.0, k)


def split_exponent(x: float) -> tuple[float, int]:
    """Return (m, e) with x = m 2**e and m in [1, 2), exactly, for a positive finite x (subnormals included)."""
    m, e = math.frexp(x)
    return m * 2.0, e - 1


@intrinsic
def _bits_to_float(typingctx, bits):  # type: ignore[no-untyped-def]
    """Reinterpret an int64 as the float64 with the same bits (compiled code only)."""
    sig = types.float64(types.int64)

    def codegen(context, builder, signature, args):  # type: ignore[no-untyped-def]
        return builder.bitcast(args[0], ir.DoubleType())

    return sig, codegen


@intrinsic
def _float_to_bits(typingctx, value):  # type: ignore[no-untyped-def]
    """Reinterpret a float64 as the int64 with the same bits (compiled code only)."""
    sig = types.int64(types.float64)

    def codegen(context, builder, signature, args):  # type: ignore[no-untyped-def]
        return builder.bitcast(args[0], ir.IntType(64))

    return sig, codegen


@overload(pow2, jit_options={"error_model": "numpy"})
def _pow2_compiled(k):  # type: ignore[no-untyped-def]
    def impl(k):  # type: ignore[no-untyped-def]
        return _bits_to_float((k + 1023) << 52)  # type: ignore[call-arg]

    return impl


@overload(split_exponent)
def _split_exponent_compiled(x):  # type: ignore[no-untyped-def]
    def impl(x):  # type: ignore[no-untyped-def]
        e = 0
        if x < 2.2250738585072014e-308:  # subnormal: scale into the normal range first (exact)
            x = x * 18014398509481984.0  # 2**54
            e = -54
        bits: int = _float_to_bits(x)  # type: ignore[call-arg]
        e += ((bits >> 52) & 0x7FF) - 1023
        return _bits_to_float((bits & 0x000FFFFFFFFFFFFF) | 0x3FF0000000000000), e

    return impl


@register_jitable
def det_exp(x: float) -> float:
    """Return e**x (fdlibm e_exp.c, < 1 ulp)."""
    if x != x:
        return x
    if x > EXP_O_THRESHOLD:
        return INF
    if x < EXP_U_THRESHOLD:
        return 0.0
    ax = abs(x)
    k = 0
    hi = 0.0
    lo = 0.0
    if ax >= EXP_HALF_LN2_BOUND:  # |x| > 0.5 ln2: reduce x = k ln2 + r
        if ax < EXP_3HALF_LN2_BOUND:  # |x| < 1.5 ln2
            if x > 0.0:
                hi = x - LN2_HI
                lo = LN2_LO
                k = 1
            else:
                hi = x + LN2_HI
                lo = -LN2_LO
                k = -1
        else:
            k = int(INV_LN2 * x + 0.5) if x > 0.0 else int(INV_LN2 * x - 0.5)
            t = float(k)
            hi = x - t * LN2_HI  # exact: t * LN2_HI has 32 significant bits at most
            lo = t * LN2_LO
        r = hi - lo
    elif ax < 3.725290298461914e-09:  # |x| < 2**-28
        return 1.0 + x
    else:
        r = x
    t = r * r
    c = r - t * (EXP_P1 + t * (EXP_P2 + t * (EXP_P3 + t * (EXP_P4 + t * EXP_P5))))
    if k == 0:
        return 1.0 - ((r * c) / (c - 2.0) - r)
    y = 1.0 - ((lo - (r * c) / (2.0 - c)) - hi)
    if k > 1023:  # exp(x) near the overflow threshold: 2**1024 itself is not a double
        return (y * 2.0) * pow2(k - 1)
    if k >= -1021:
        return y * pow2(k)  # exact: y in [0.5, 2), result normal
    # subnormal result: one rounding, in the final multiply, as fdlibm does
    return (y * pow2(k + 1000)) * TWO_M1000


@register_jitable(forceinline=True)
def log_series(f: float) -> tuple[float, float]:
    """Return fdlibm's s = f / (2 + f) and its polynomial R(s^2), for log(1 + f) (shared with ``det_log_lanes``)."""
    s = f / (2.0 + f)
    z = s * s
    w = z * z
    t1 = w * (LOG_LG2 + w * (LOG_LG4 + w * LOG_LG6))
    t2 = z * (LOG_LG1 + w * (LOG_LG3 + w * (LOG_LG5 + w * LOG_LG7)))
    return s, t2 + t1


@register_jitable
def det_log(x: float) -> float:
    """Return the natural logarithm of x (fdlibm e_log.c, < 1 ulp); NaN for x < 0, -inf for 0."""
    if x != x:
        return x
    if x < 0.0:
        return NAN
    if x == 0.0:
        return -INF
    if x == INF:
        return x
    m1, k = split_exponent(x)  # x = m1 2**k, m1 in [1, 2); exact, subnormals included
    # hx: the top 20 fraction bits of x (fdlibm's masked high word), exact integer
    hx = int((m1 - 1.0) * 1048576.0)
    if hx >= 0x6A09C:  # m1 >= ~sqrt(2): use m1 / 2 so that 1 + f lies in [sqrt(2)/2, sqrt(2))
        m1 = m1 * 0.5
        k += 1
    f = m1 - 1.0  # exact (Sterbenz)
    dk = float(k)
    if ((2 + hx) & 0xFFFFF) < 3:  # |f| < 2**-20
        if f == 0.0:
            if k == 0:
                return 0.0
            return dk * LN2_HI + dk * LN2_LO
        r0 = f * f * (0.5 - 0.33333333333333333 * f)
        if k == 0:
            return f - r0
        return dk * LN2_HI - ((r0 - dk * LN2_LO) - f)
    s, r = log_series(f)
    if 0x6147A <= hx <= 0x6B851:  # f not small: the hfsq form is the more accurate one
        hfsq = 0.5 * f * f
        if k == 0:
            return f - (hfsq - s * (hfsq + r))
        return dk * LN2_HI - ((hfsq - (s * (hfsq + r) + dk * LN2_LO)) - f)
    if k == 0:
        return f - s * (f - r)
    return dk * LN2_HI - ((s * (f - r) - dk * LN2_LO) - f)


@register_jitable
def det_pow(x: float, y: float) -> float:
    """Return x**y for x > 0 as exp(y log x); relative error <= (2 + 3 |y ln x|) ulp. NaN for x <= 0."""
    if not x > 0.0:
        return NAN
    return det_exp(y * det_log(x))


@register_jitable
def _erf_small(y: float) -> float:
    """Return erf(y) for |y| <= 0.46875 (Cody's first interval)."""
    ysq = y * y
    xnum = ERF_A4 * ysq
    xden = ysq
    xnum = (xnum + ERF_A0) * ysq
    xden = (xden + ERF_B0) * ysq
    xnum = (xnum + ERF_A1) * ysq
    xden = (xden + ERF_B1) * ysq
    xnum = (xnum + ERF_A2) * ysq
    xden = (xden + ERF_B2) * ysq
    return y * (xnum + ERF_A3) / (xden + ERF_B3)


@register_jitable
def _erfc_rational_near(y: float) -> float:
    """Return R(y) = erfc(y) exp(y^2) for 0.46875 < y <= 4 (Cody's second interval)."""
    xnum = ERFC_C8 * y
    xden = y
    xnum = (xnum + ERFC_C0) * y
    xden = (xden + ERFC_D0) * y
    xnum = (xnum + ERFC_C1) * y
    xden = (xden + ERFC_D1) * y
    xnum = (xnum + ERFC_C2) * y
    xden = (xden + ERFC_D2) * y
    xnum = (xnum + ERFC_C3) * y
    xden = (xden + ERFC_D3) * y
    xnum = (xnum + ERFC_C4) * y
    xden = (xden + ERFC_D4) * y
    xnum = (xnum + ERFC_C5) * y
    xden = (xden + ERFC_D5) * y
    xnum = (xnum + ERFC_C6) * y
    xden = (xden + ERFC_D6) * y
    return (xnum + ERFC_C7) / (xden + ERFC_D7)


@register_jitable
def _erfc_rational_far(y: float) -> float:
    """Return R(y) = erfc(y) exp(y^2) for 4 < y < 26.543 (Cody's third interval)."""
    ysq = 1.0 / (y * y)
    xnum = ERFC_P5 * ysq
    xden = ysq
    xnum = (xnum + ERFC_P0) * ysq
    xden = (xden + ERFC_Q0) * ysq
    xnum = (xnum + ERFC_P1) * ysq
    xden = (xden + ERFC_Q1) * ysq
    xnum = (xnum + ERFC_P2) * ysq
    xden = (xden + ERFC_Q2) * ysq
    xnum = (xnum + ERFC_P3) * ysq
    xden = (xden + ERFC_Q3) * ysq
    r = ysq * (xnum + ERFC_P4) / (xden + ERFC_Q4)
    return (SQRPI - r) / y


@register_jitable
def _erfc_rational(y: float) -> float:
    """Return R(y) = erfc(y) exp(y^2) for 0.46875 < y < 26.543 (Cody's second and third intervals)."""
    if y <= 4.0:
        return _erfc_rational_near(y)
    return _erfc_rational_far(y)


@register_jitable
def _exp_neg_square(y: float) -> float:
    """Return exp(-y^2) for 0 <= y < 27 via the exact split y = ys + (y - ys), ys = floor(16 y) / 16."""
    ys = float(int(y * 16.0)) * 0.0625
    d = (y - ys) * (y + ys)
    return det_exp(-(ys * ys)) * det_exp(-d)


@register_jitable
def _exp_neg_half_square(y: float) -> float:
    """Return exp(-y^2 / 2) for 0 <= y < 38.5 via the exact split y = ys + (y - ys), ys = floor(16 y) / 16."""
    ys = float(int(y * 16.0)) * 0.0625
    d = (y - ys) * (y + ys)
    return det_exp(-0.5 * (ys * ys)) * det_exp(-0.5 * d)


@register_jitable
def det_erfc(x: float) -> float:
    """Return the complementary error function erfc(x) (Cody's calerf, ~7 ulp relative)."""
    if x != x:
        return x
    y = abs(x)
    if y <= ERF_THRESH:
        return 1.0 - _erf_small(x)
    tail = 0.0 if y >= ERFC_XBIG else _exp_neg_square(y) * _erfc_rational(y)
    if x < 0.0:
        return 2.0 - tail
    return tail


@register_jitable
def gauss_factor(y: float) -> float:
    """Return exp(-y^2 / 2) for y >= 0 (exact split of y^2; 0 where it underflows)."""
    if y >= NORM_TAIL_ZERO:
        return 0.0
    return _exp_neg_half_square(y)


@register_jitable
def norm_cdf_given_gauss(x: float, gauss: float) -> float:
    """Return Phi(x) given gauss = gauss_factor(|x|), so a caller that also needs the density computes it once."""
    y = abs(x)
    z = y * INV_SQRT2
    if z <= ERF_THRESH:
        half_erf = 0.5 * _erf_small(z)
        if x < 0.0:
            return 0.5 - half_erf
        return 0.5 + half_erf
    tail = 0.0 if y >= NORM_TAIL_ZERO else 0.5 * (gauss * _erfc_rational(z))
    if x < 0.0:
        return tail
    return 1.0 - tail


@register_jitable
def norm_cdf(x: float) -> float:
    """Return the standard normal CDF Phi(x), each tail computed directly (no 1 - p cancellation)."""
    if x != x:
        return x
    y = abs(x)
    if y * INV_SQRT2 <= ERF_THRESH:
        return norm_cdf_given_gauss(x, 1.0)  # the erf branch does not use the Gaussian factor
    return norm_cdf_given_gauss(x, gauss_factor(y))


@register_jitable
def norm_pdf(x: float) -> float:
    """Return the standard normal density exp(-x^2 / 2) / sqrt(2 pi)."""
    if x != x:
        return x
    return gauss_factor(abs(x)) * INV_SQRT_2PI
