"""Deterministic math: the pure-Python reference equals the numba kernel bit-for-bit, and is accurate vs mpmath."""

from __future__ import annotations

import math

import mpmath
import numpy as np
import numpy.typing as npt
import pytest
from numba import njit

from pmoracle.risk.detmath import det_erfc, det_exp, det_log, det_pow, norm_cdf, norm_pdf

FUNCTIONS = {0: det_exp, 1: det_log, 2: det_erfc, 3: norm_cdf, 4: norm_pdf}


@njit(cache=True)
def _apply_kernel(which: int, x: npt.NDArray[np.float64], y: npt.NDArray[np.float64], out: npt.NDArray[np.float64]):  # type: ignore[no-untyped-def]
    for i in range(x.shape[0]):
        if which == 0:
            out[i] = det_exp(x[i])
        elif which == 1:
            out[i] = det_log(x[i])
        elif which == 2:
            out[i] = det_erfc(x[i])
        elif which == 3:
            out[i] = norm_cdf(x[i])
        elif which == 4:
            out[i] = norm_pdf(x[i])
        else:
            out[i] = det_pow(x[i], y[i])


def _kernel(
    which: int, x: npt.NDArray[np.float64], y: npt.NDArray[np.float64] | None = None
) -> npt.NDArray[np.float64]:
    out = np.empty_like(x)
    _apply_kernel(which, x, x if y is None else y, out)
    return out


def _bits(values: npt.ArrayLike) -> npt.NDArray[np.uint64]:
    return np.asarray(values, dtype=np.float64).view(np.uint64)


def _inputs(which: int, n: int, rng: np.random.Generator) -> npt.NDArray[np.float64]:
    """Return n seeded inputs spanning each function's whole domain, edges included."""
    if which == 0:  # exp: the whole finite range, the reduction boundaries, tiny and subnormal results
        parts = [
            rng.uniform(-746.0, 710.0, n // 2),
            rng.uniform(-3.0, 3.0, n // 4),
            rng.uniform(-1e-8, 1e-8, n // 8),
        ]
        edges = [0.0, -0.0, 1.0, -1.0, 0.3465735912322998, 1.0397205352783203, 709.78, -745.0, -708.5, 1e-300]
    elif which == 1:  # log: every binade, values near 1, subnormals
        parts = [
            10.0 ** rng.uniform(-307.0, 308.0, n // 2),
            rng.uniform(0.5, 2.0, n // 4),
            1.0 + rng.uniform(-1e-6, 1e-6, n // 8),
            10.0 ** rng.uniform(-323.0, -308.0, n // 16),  # subnormals: the compiled exponent split rescales them
        ]
        edges = [1.0, 2.0, 0.5, math.sqrt(2.0), 5e-324, 2.2250738585072014e-308, 1.7976931348623157e308]
    elif which == 2:  # erfc: both signs, all three of Cody's intervals, the underflow edge
        parts = [rng.uniform(-7.0, 27.0, n // 2), rng.uniform(-0.5, 0.5, n // 4), rng.uniform(3.9, 4.1, n // 8)]
        edges = [0.0, 0.46875, -0.46875, 4.0, -4.0, 26.5, 26.543, 30.0, -30.0]
    else:  # normal cdf/pdf: out to where the tail underflows
        parts = [rng.uniform(-40.0, 40.0, n // 2), rng.uniform(-1.0, 1.0, n // 4), rng.uniform(-9.0, 9.0, n // 8)]
        edges = [0.0, 0.6629126073623883, -0.6629126073623883, 5.656854249492381, -38.5, 38.5, 38.4999]
    x = np.concatenate([*parts, np.array(edges, dtype=np.float64)])
    rng.shuffle(x)
    return x


@pytest.mark.parametrize("which", sorted(FUNCTIONS))
def test_reference_equals_kernel_bit_for_bit(which: int) -> None:
    """A node using the compiled kernel and one using the Python reference agree to the last bit."""
    rng = np.random.default_rng(1000 + which)
    x = _inputs(which, 100_000, rng)
    fn = FUNCTIONS[which]
    reference = [fn(v) for v in x.tolist()]
    kernel = _kernel(which, x)
    mismatch = np.flatnonzero(_bits(reference) != _bits(kernel))
    assert mismatch.size == 0, f"{fn.__name__} differs at x={x[mismatch[:5]]}"


def test_pow_reference_equals_kernel_bit_for_bit() -> None:
    """det_pow (used for tenor scaling (30/DTE)^power) is identical in Python and in numba."""
    rng = np.random.default_rng(7)
    x = 10.0 ** rng.uniform(-3.0, 3.0, 100_000)
    y = rng.uniform(-3.0, 3.0, 100_000)
    reference = [det_pow(a, b) for a, b in zip(x.tolist(), y.tolist(), strict=True)]
    assert np.array_equal(_bits(reference), _bits(_kernel(5, x, y)))


def _ulp_error(value: float, exact: mpmath.mpf) -> float:
    """Return |value - exact| in units of the last place of the double nearest to exact."""
    nearest = float(exact)
    if nearest == 0.0:
        return 0.0 if value == 0.0 else math.inf
    return float(abs(mpmath.mpf(value) - exact) / math.ulp(nearest))


def _max_ulp(fn, exact, xs: list[float]) -> float:  # type: ignore[no-untyped-def]
    with mpmath.workdps(40):
        return max(_ulp_error(fn(x), exact(mpmath.mpf(x))) for x in xs)


def test_exp_within_one_ulp() -> None:
    """det_exp is within 1 ulp of the exact value over its normal range (fdlibm's bound)."""
    rng = np.random.default_rng(11)
    xs = np.concatenate([rng.uniform(-708.0, 709.0, 2500), rng.uniform(-2.0, 2.0, 2500)]).tolist()
    assert _max_ulp(det_exp, mpmath.exp, xs) < 1.0


def test_log_within_one_ulp() -> None:
    """det_log is within 1 ulp of the exact value over every binade and near 1."""
    rng = np.random.default_rng(12)
    xs = np.concatenate([10.0 ** rng.uniform(-300.0, 300.0, 2500), rng.uniform(0.6, 1.5, 2500)]).tolist()
    assert _max_ulp(det_log, mpmath.log, xs) < 1.0


def test_erfc_within_ten_ulp() -> None:
    """det_erfc is within 10 ulp (relative) of the exact value from -6 to its underflow edge."""
    rng = np.random.default_rng(13)
    xs = np.concatenate([rng.uniform(-6.0, 26.5, 4000), rng.uniform(-0.5, 0.5, 1000)]).tolist()
    assert _max_ulp(det_erfc, mpmath.erfc, xs) < 10.0


def test_normal_cdf_and_pdf_within_ten_ulp() -> None:
    """Both tails of the normal CDF and the density are accurate in relative terms, deep in the tails too."""
    rng = np.random.default_rng(14)
    xs = np.concatenate([rng.uniform(-37.0, 37.0, 3000), rng.uniform(-6.0, 6.0, 2000)]).tolist()
    assert _max_ulp(norm_cdf, mpmath.ncdf, xs) < 10.0
    assert _max_ulp(norm_pdf, mpmath.npdf, xs) < 10.0


def test_pow_accuracy_for_tenor_scaling() -> None:
    """det_pow = exp(y log x) is within (2 + 3 |y ln x|) ulp: the rounding of log x and of y log x is scaled by exp."""
    rng = np.random.default_rng(15)
    bases = (10.0 ** rng.uniform(-2.0, 2.0, 2000)).tolist()
    exponents = rng.uniform(-2.0, 2.0, 2000).tolist()
    with mpmath.workdps(40):
        for a, b in zip(bases, exponents, strict=True):
            error = _ulp_error(det_pow(a, b), mpmath.power(mpmath.mpf(a), mpmath.mpf(b)))
            assert error <= 2.0 + 3.0 * abs(b * math.log(a)), (a, b, error)


@pytest.mark.parametrize(
    ("fn", "arg", "expected"),
    [
        (det_exp, math.inf, math.inf),
        (det_exp, -math.inf, 0.0),
        (det_exp, 710.0, math.inf),
        (det_exp, -746.0, 0.0),
        (det_exp, 0.0, 1.0),
        (det_log, math.inf, math.inf),
        (det_log, 0.0, -math.inf),
        (det_log, 1.0, 0.0),
        (det_erfc, math.inf, 0.0),
        (det_erfc, -math.inf, 2.0),
        (det_erfc, 0.0, 1.0),
        (norm_cdf, math.inf, 1.0),
        (norm_cdf, -math.inf, 0.0),
        (norm_cdf, 0.0, 0.5),
        (norm_pdf, math.inf, 0.0),
    ],
)
def test_special_values(fn, arg: float, expected: float) -> None:  # type: ignore[no-untyped-def]
    """Infinities, zeros and out-of-range arguments give the IEEE limits, in Python and in numba alike."""
    assert fn(arg) == expected
    which = next(k for k, f in FUNCTIONS.items() if f is fn)
    assert _kernel(which, np.array([arg]))[0] == expected


@pytest.mark.parametrize("which", sorted(FUNCTIONS))
def test_nan_propagates_without_error(which: int) -> None:
    """NaN in gives NaN out (never an exception or a loop); input validation upstream rejects NaN first."""
    assert math.isnan(FUNCTIONS[which](math.nan))
    assert math.isnan(_kernel(which, np.array([math.nan]))[0])


def test_log_and_pow_of_non_positive_are_nan() -> None:
    """log of a negative number and pow of a non-positive base are NaN, not an exception."""
    assert math.isnan(det_log(-1.0))
    assert math.isnan(det_pow(0.0, 2.0))
    assert math.isnan(det_pow(-2.0, 2.0))
    assert math.isnan(_kernel(1, np.array([-1.0]))[0])
