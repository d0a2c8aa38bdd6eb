"""Option and futures valuation (Black-76 on the forward) and the SVI smile, bit-identical on every node.

All transcendental functions come from ``risk/detmath.py`` (only + - * / sqrt). ``svi_total_variance`` and
``black76`` are ``register_jitable``: called from Python they are the pure-Python reference, called from numba
code they compile inline. ``black76_kernel``, ``value_options`` and ``value_options_parallel`` are the compiled
entry points (``@njit(cache=True)``, fastmath off, no FMA contraction, no reductions). The batch entry points
compute each element with ``detlanes.black76_lanes``, the branch-free form of ``black76`` (same bits), so LLVM
vectorizes their loop: an element gets the same IEEE operations in any SIMD lane or in the scalar remainder loop,
whatever the thread count, batch size or order.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
from llvmlite import ir
from numba import carray, njit, prange, types
from numba.core import cgutils
from numba.extending import intrinsic, register_jitable

from pmoracle.risk.detlanes import black76_lanes
from pmoracle.risk.detmath import (
    ERF_THRESH,
    INF,
    INV_SQRT2,
    INV_SQRT_2PI,
    NAN,
    _erfc_rational,
    det_log,
    gauss_factor,
    norm_cdf_given_gauss,
)

SQRT_2PI = 2.5066282746310002
BLOCK = 256  # options per vectorized block: 5 result buffers of 2 KiB stay in L1

Greeks = tuple[float, float, float, float, float]
FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]
OptionArrays = tuple[BoolArray, FloatArray, FloatArray, FloatArray, FloatArray, FloatArray]
GreekArrays = tuple[FloatArray, FloatArray, FloatArray, FloatArray, FloatArray]


@register_jitable
def svi_total_variance(a: float, b: float, rho: float, m: float, sigma: float, k: float) -> float:
    """Return SVI raw total implied variance w(k) = a + b (rho (k - m) + sqrt((k - m)^2 + sigma^2))."""
    d = k - m
    return a + b * (rho * d + math.sqrt(d * d + sigma * sigma))


@register_jitable
def black76(is_call: bool, F: float, K: float, T: float, vol: float, df: float) -> Greeks:
    """Return (price, delta, gamma, vega, theta) of a European option on forward F.

    delta and gamma are with respect to F; vega per unit of vol (1.0 = 100 vol points); theta is dV/dt per year
    (calendar time, holding F, vol and df fixed). T <= 0 or vol <= 0 gives the intrinsic value (discounted by
    df) and zero gamma/vega/theta. Calls and puts use their own formulas (no put-call parity), each normal tail
    computed directly, and the price is floored at 0. Non-finite or non-positive F, K, or NaN T/vol/df give
    five NaNs (inputs are validated upstream; this only guarantees no exception and no loop).
    """
    if not (F > 0.0 and K > 0.0 and F < INF and K < INF) or T != T or vol != vol or df != df:
        return NAN, NAN, NAN, NAN, NAN
    sqrt_t = math.sqrt(T) if T > 0.0 else 0.0
    s = vol * sqrt_t
    if not s > 0.0:
        if is_call:
            intrinsic = F - K if F > K else 0.0
            d_int = 1.0 if F > K else 0.0
        else:
            intrinsic = K - F if K > F else 0.0
            d_int = -1.0 if F < K else 0.0
        return df * intrinsic, df * d_int, 0.0, 0.0, 0.0
    ratio = F / K
    x = det_log(ratio)
    a = x / s
    h = 0.5 * s
    d1 = a + h
    d2 = a - h
    g1 = gauss_factor(abs(d1))  # exp(-d1^2/2), shared by the density and the d1 tail
    pdf1 = g1 * INV_SQRT_2PI
    if is_call:
        u_near = -d1  # distance of the nearer and farther normal tail (both > 0 when out of the money)
        u_far = -d2
    else:
        u_near = d2
        u_far = d1
    if u_near * INV_SQRT2 > ERF_THRESH:
        # Out of the money by more than 0.66 standard deviations. With N(-u) = 0.5 e^(-u^2/2) R(u / sqrt 2)
        # (Cody's rational R) and F e^(-d1^2/2) = K e^(-d2^2/2), both tails share one Gaussian factor: the
        # difference of two tiny, separately rounded tails (error growing like |d|^3 / s ulp) becomes a
        # difference of two smooth rational values (error ~ |d| / s ulp).
        r_near = _erfc_rational(u_near * INV_SQRT2)
        r_far = _erfc_rational(u_far * INV_SQRT2)
        price = df * (0.5 * ((F * g1) * (r_near - r_far)))
        delta = df * (0.5 * (g1 * r_near)) if is_call else -(df * (0.5 * (g1 * r_far)))
    else:
        # near or in the money: the tails themselves, the d2 one from e^(-d2^2/2) = e^(-d1^2/2) F / K when
        # e^(-d1^2/2) has not underflowed (one exponential saved; relative error one rounding more)
        g2 = g1 * ratio if g1 > 1e-300 else gauss_factor(abs(d2))
        if is_call:
            n1 = norm_cdf_given_gauss(d1, g1)
            price = df * (F * n1 - K * norm_cdf_given_gauss(d2, g2))
            delta = df * n1
        else:
            n1 = norm_cdf_given_gauss(-d1, g1)
            price = df * (K * norm_cdf_given_gauss(-d2, g2) - F * n1)
            delta = -(df * n1)
    if price < 0.0:
        price = 0.0
    gamma = (df * pdf1 / F) / s  # two divisions: F * s could underflow to 0
    vega = df * F * pdf1 * sqrt_t
    theta = -(df * F * pdf1 * vol) / (2.0 * sqrt_t)
    return price, delta, gamma, vega, theta


@njit(cache=True, error_model="numpy")
def black76_kernel(is_call: bool, F: float, K: float, T: float, vol: float, df: float) -> Greeks:
    """Return ``black76`` compiled (the numba kernel the reference is checked against)."""
    return black76(is_call, F, K, T, vol, df)


@njit(cache=True, error_model="numpy")
def svi_total_variance_kernel(a: float, b: float, rho: float, m: float, sigma: float, k: float) -> float:
    """Return ``svi_total_variance`` compiled."""
    return svi_total_variance(a, b, rho, m, sigma, k)


@intrinsic
def _stack_block(typingctx):  # type: ignore[no-untyped-def]
    """Return a pointer to BLOCK float64 in the calling function's stack frame (compiled code only).

    The batch loop writes its results there before copying them out: LLVM knows a stack buffer cannot overlap the
    caller's arrays, so the vectorized loop needs no run-time overlap checks (5 outputs x 6 inputs would be more
    than LLVM is willing to emit, and it would then keep the loop scalar).
    """
    sig = types.CPointer(types.float64)()  # type: ignore[no-untyped-call]

    def codegen(context, builder, signature, args):  # type: ignore[no-untyped-def]
        return cgutils.alloca_once(builder, ir.DoubleType(), size=BLOCK)  # type: ignore[no-untyped-call]

    return sig, codegen


@njit(cache=True, error_model="numpy")
def _value_block(start: int, stop: int, inputs: OptionArrays, outputs: GreekArrays) -> None:
    """Fill outputs[start:stop] (at most BLOCK elements) with ``black76_lanes``: one vectorized loop, then copies."""
    # views starting at 0: indices the loops can prove non-negative (no wraparound select, so contiguous SIMD loads
    # and stores instead of gathers and scatters)
    is_call = inputs[0][start:stop]
    F = inputs[1][start:stop]
    K = inputs[2][start:stop]
    T = inputs[3][start:stop]
    vol = inputs[4][start:stop]
    df = inputs[5][start:stop]
    out_price = outputs[0][start:stop]
    out_delta = outputs[1][start:stop]
    out_gamma = outputs[2][start:stop]
    out_vega = outputs[3][start:stop]
    out_theta = outputs[4][start:stop]
    price = carray(_stack_block(), BLOCK)  # type: ignore[call-arg]
    delta = carray(_stack_block(), BLOCK)
    gamma = carray(_stack_block(), BLOCK)
    vega = carray(_stack_block(), BLOCK)
    theta = carray(_stack_block(), BLOCK)
    count = F.shape[0]
    for j in range(count):
        p, d, g, v, t = black76_lanes(is_call[j], F[j], K[j], T[j], vol[j], df[j])
        price[j] = p
        delta[j] = d
        gamma[j] = g
        vega[j] = v
        theta[j] = t
    for j in range(count):
        out_price[j] = price[j]
    for j in range(count):
        out_delta[j] = delta[j]
    for j in range(count):
        out_gamma[j] = gamma[j]
    for j in range(count):
        out_vega[j] = vega[j]
    for j in range(count):
        out_theta[j] = theta[j]


@njit(cache=True, error_model="numpy")
def value_options(
    is_call: BoolArray,
    F: FloatArray,
    K: FloatArray,
    T: FloatArray,
    vol: FloatArray,
    df: FloatArray,
    out_price: FloatArray,
    out_delta: FloatArray,
    out_gamma: FloatArray,
    out_vega: FloatArray,
    out_theta: FloatArray,
) -> None:
    """Fill the out arrays with ``black76`` of each element (computed by ``black76_lanes``), serially."""
    n = F.shape[0]
    inputs = (is_call, F, K, T, vol, df)
    outputs = (out_price, out_delta, out_gamma, out_vega, out_theta)
    for start in range(0, n, BLOCK):
        _value_block(start, min(start + BLOCK, n), inputs, outputs)


@njit(cache=True, parallel=True, error_model="numpy")
def value_options_parallel(
    is_call: BoolArray,
    F: FloatArray,
    K: FloatArray,
    T: FloatArray,
    vol: FloatArray,
    df: FloatArray,
    out_price: FloatArray,
    out_delta: FloatArray,
    out_gamma: FloatArray,
    out_vega: FloatArray,
    out_theta: FloatArray,
) -> None:
    """Fill the out arrays with ``black76`` of each element, blocks of elements spread over threads (no reductions)."""
    n = F.shape[0]
    inputs = (is_call, F, K, T, vol, df)
    outputs = (out_price, out_delta, out_gamma, out_vega, out_theta)
    for b in prange((n + BLOCK - 1) // BLOCK):
        start = b * BLOCK
        _value_block(start, min(start + BLOCK, n), inputs, outputs)


# The placeholder API documented ``f.py_func`` as the pure-Python reference of an njit function; register_jitable
# functions are themselves that reference, and keep the attribute for callers written against the placeholder.
svi_total_variance.py_func = svi_total_variance  # type: ignore[attr-defined]
black76.py_func = black76  # type: ignore[attr-defined]
