"""The branch-free (vectorizable) forms equal the definitions in detmath and pricing bit-for-bit.

Checked on seeded random inputs and on every branch boundary of the definitions (a few ulps either side of each
threshold), against the pure-Python reference (the definitions run as Python) and the compiled definitions.
"""

from __future__ import annotations

import math
import platform
import re

import llvmlite.binding as llvm
import numpy as np
import numpy.typing as npt
import pytest
from numba import njit

from pmoracle.risk import detmath, pricing
from pmoracle.risk.detlanes import (
    det_erfc_lanes,
    det_exp_lanes,
    det_log_lanes,
    gauss_factor_lanes,
    norm_cdf_lanes,
    norm_pdf_lanes,
)
from pmoracle.risk.detmath import det_erfc, det_exp, det_log, gauss_factor, norm_cdf, norm_pdf
from pmoracle.risk.pricing import black76, value_options, value_options_parallel

FloatArray = npt.NDArray[np.float64]


# One loop per function, each simple enough for LLVM to vectorize: the tests exercise the SIMD code and the scalar
# remainder loop alike.
@njit(cache=True, error_model="numpy")
def _exp_lanes(x, out):  # type: ignore[no-untyped-def]
    for i in range(x.shape[0]):
        out[i] = det_exp_lanes(x[i])


@njit(cache=True, error_model="numpy")
def _log_lanes(x, out):  # type: ignore[no-untyped-def]
    for i in range(x.shape[0]):
        out[i] = det_log_lanes(x[i])


@njit(cache=True, error_model="numpy")
def _erfc_lanes(x, out):  # type: ignore[no-untyped-def]
    for i in range(x.shape[0]):
        out[i] = det_erfc_lanes(x[i])


@njit(cache=True, error_model="numpy")
def _cdf_lanes(x, out):  # type: ignore[no-untyped-def]
    for i in range(x.shape[0]):
        out[i] = norm_cdf_lanes(x[i])


@njit(cache=True, error_model="numpy")
def _pdf_lanes(x, out):  # type: ignore[no-untyped-def]
    for i in range(x.shape[0]):
        out[i] = norm_pdf_lanes(x[i])


@njit(cache=True, error_model="numpy")
def _gauss_lanes(x, out):  # type: ignore[no-untyped-def]
    for i in range(x.shape[0]):
        out[i] = gauss_factor_lanes(x[i])


@njit(cache=True, error_model="numpy")
def _scalar(which, x, out):  # type: ignore[no-untyped-def]
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
            out[i] = gauss_factor(x[i])


CASES = {
    "exp": (0, det_exp, _exp_lanes),
    "log": (1, det_log, _log_lanes),
    "erfc": (2, det_erfc, _erfc_lanes),
    "norm_cdf": (3, norm_cdf, _cdf_lanes),
    "norm_pdf": (4, norm_pdf, _pdf_lanes),
    "gauss_factor": (5, gauss_factor, _gauss_lanes),
}
SPECIALS = [0.0, -0.0, math.inf, -math.inf, math.nan, 5e-324, -5e-324, 1.7976931348623157e308, -1.0]


def _around(points: list[float], ulps: int = 3) -> list[float]:
    """Return each point and its neighbours up to ``ulps`` representable steps either side."""
    out: list[float] = []
    for p in points:
        below = above = p
        out.append(p)
        for _ in range(ulps):
            below = math.nextafter(below, -math.inf)
            above = math.nextafter(above, math.inf)
            out += [below, above]
    return out


def _exp_boundaries() -> list[float]:
    ln2 = math.log(2.0)
    points = [
        detmath.EXP_HALF_LN2_BOUND,
        detmath.EXP_3HALF_LN2_BOUND,
        2.0**-28,
        detmath.EXP_O_THRESHOLD,
        detmath.EXP_U_THRESHOLD,
        1e-300,
    ]
    points += [-p for p in points]
    # k = int(x / ln2 +- 1/2) changes at (j +- 1/2) ln2: every k from the subnormal results to the overflow
    points += [(j + 0.5) * ln2 for j in range(-1076, 1025)]
    # k = -1021 / -1022 (first subnormal result) and k = 1024 (the 2 * 2**(k-1) scaling)
    points += [-1021.5 * ln2, -1022.5 * ln2, 1023.5 * ln2, -708.4, -708.39641853226408, 709.436]
    return _around(points)


def _log_boundaries() -> list[float]:
    points = [2.0**e for e in range(-1074, 1024)]
    points += [2.2250738585072014e-308, 1.0, 2.0, 0.5, math.sqrt(2.0), math.sqrt(0.5)]
    # fdlibm's masked high word hx: the halving (0x6a09c), the hfsq window (0x6147a..0x6b851), |f| < 2**-20
    for hx in (0x6A09C, 0x6147A, 0x6B851, 0x6B852, 0, 1, 2, 3, 0xFFFFD, 0xFFFFE, 0xFFFFF):
        m = 1.0 + hx / 1048576.0
        points += [m * 2.0**e for e in (-1074 + 52, -1040, -1023, -1022, -3, -1, 0, 1, 7, 1000, 1023)]
    return [p for p in _around(points) if p > 0.0]


def _erfc_boundaries() -> list[float]:
    sqrt2 = math.sqrt(2.0)
    points = [detmath.ERF_THRESH, 4.0, detmath.ERFC_XBIG, 26.5, 27.0, detmath.NORM_TAIL_ZERO, 37.5, 38.0]
    points += [detmath.ERF_THRESH * sqrt2, 4.0 * sqrt2, detmath.ERFC_XBIG * sqrt2]
    points += [j / 16.0 for j in range(16 * 39 + 1)]  # the exact split ys = floor(16 y) / 16
    points += [-p for p in points]
    return _around(points, ulps=4)


def _bits(values: npt.ArrayLike) -> npt.NDArray[np.uint64]:
    return np.asarray(values, dtype=np.float64).view(np.uint64)


def _bits_any_nan(values: npt.ArrayLike) -> npt.NDArray[np.uint64]:
    """Return the bits with every NaN made the same NaN.

    LLVM does not preserve the sign or payload of a NaN (it may rewrite ``-(a) / b`` as ``a / -b``), so a NaN
    result is only guaranteed to be a NaN, in the compiled definition as much as here; NaN never reaches a signed
    value (quantization rejects it). Every other result must match to the bit.
    """
    array = np.asarray(values, dtype=np.float64)
    return np.where(np.isnan(array), math.nan, array).view(np.uint64)


def _random_inputs(name: str, rng: np.random.Generator, n: int) -> FloatArray:
    if name == "exp":
        parts = [rng.uniform(-746.0, 710.0, n // 2), rng.uniform(-3.0, 3.0, n // 4), rng.uniform(-1e-8, 1e-8, n // 4)]
    elif name == "log":
        parts = [
            10.0 ** rng.uniform(-323.0, 308.0, n // 2),
            rng.uniform(0.5, 2.0, n // 4),
            1.0 + rng.normal(0, 1e-6, n // 4),
        ]
    elif name == "gauss_factor":
        parts = [rng.uniform(0.0, 40.0, n // 2), rng.uniform(0.0, 1.0, n // 2)]
    else:
        parts = [rng.uniform(-40.0, 40.0, n // 2), rng.uniform(-1.0, 1.0, n // 4), rng.uniform(-6.0, 6.0, n // 4)]
    return np.concatenate(parts)


def _boundaries(name: str) -> list[float]:
    if name == "exp":
        return _exp_boundaries()
    if name == "log":
        return _log_boundaries()
    values = _erfc_boundaries()
    if name == "gauss_factor":  # defined for y >= 0 (NaN propagates)
        return [v for v in values if v >= 0.0]
    return values


@pytest.mark.parametrize("name", sorted(CASES))
def test_lanes_equal_definition_bit_for_bit(name: str) -> None:
    """Random inputs, every branch boundary and the special values: lanes == Python reference == compiled scalar."""
    which, definition, lanes = CASES[name]
    rng = np.random.default_rng(404 + which)
    # gauss_factor is defined for y >= 0 (the definition raises for NaN as Python)
    specials = [v for v in SPECIALS if name != "gauss_factor" or v >= 0.0]
    x = np.concatenate([_random_inputs(name, rng, 100_000), np.array(_boundaries(name) + specials)])
    rng.shuffle(x)
    got = np.empty_like(x)
    lanes(x, got)
    compiled = np.empty_like(x)
    _scalar(which, x, compiled)
    reference = np.array([definition(v) for v in x.tolist()])
    for label, want in (("reference", reference), ("compiled definition", compiled)):
        diff = np.flatnonzero(_bits(got) != _bits(want))
        assert diff.size == 0, f"{name} differs from the {label} at x={x[diff[:5]].tolist()}"


@pytest.mark.parametrize("name", sorted(CASES))
def test_lanes_boundaries_are_exercised(name: str) -> None:
    """The boundary sets really straddle each threshold (guards the test itself against a silent edit)."""
    values = np.array(_boundaries(name))
    thresholds = {
        "exp": [detmath.EXP_HALF_LN2_BOUND, detmath.EXP_3HALF_LN2_BOUND, 2.0**-28, detmath.EXP_O_THRESHOLD],
        "log": [2.0**-1022, 1.0],
        "erfc": [detmath.ERF_THRESH, 4.0, detmath.ERFC_XBIG],
        "norm_cdf": [detmath.ERF_THRESH * math.sqrt(2.0), 4.0 * math.sqrt(2.0), detmath.NORM_TAIL_ZERO],
        "norm_pdf": [detmath.NORM_TAIL_ZERO],
        "gauss_factor": [detmath.NORM_TAIL_ZERO],
    }[name]
    for t in thresholds:
        assert np.any(values == t) and np.any((values < t) & (values > t * (1 - 1e-15)))
        assert np.any((values > t) & (values < t * (1 + 1e-15)))


# ------------------------------------------------------------------------------------------------ Black-76


def _black76_boundary_cases() -> tuple[npt.NDArray[np.bool_], list[FloatArray]]:
    """Return options whose d1 / d2 sit on each of the definition's thresholds, plus the degenerate inputs.

    d1 = ln(F/K)/s + s/2 cannot be set to the ulp, so each target is approached from a dense, jittered set of
    log-moneyness values that straddles it.
    """
    rng = np.random.default_rng(76)
    sqrt2 = math.sqrt(2.0)
    targets = [
        detmath.ERF_THRESH * sqrt2,  # out of the money by 0.66 sd: the shared-factor form
        4.0 * sqrt2,  # Cody's second / third interval
        math.sqrt(2.0 * 300.0 * math.log(10.0)),  # exp(-d1^2/2) = 1e-300: e^(-d2^2/2) from the ratio or not
        37.64,  # exp(-d1^2/2) subnormal
        detmath.NORM_TAIL_ZERO,  # the Gaussian factor underflows to 0
        0.0,
    ]
    rows: list[tuple[bool, float, float, float, float, float]] = []
    for target in targets:
        for sign in (1.0, -1.0):
            for shift in (0.0, 1.0):  # put the target on d1 or on d2 = d1 - s
                for _ in range(400):
                    is_call = bool(rng.random() < 0.5)
                    F = float(10.0 ** rng.uniform(-1.0, 5.0))
                    T = float(10.0 ** rng.uniform(-2.6, 1.0))
                    vol = float(10.0 ** rng.uniform(-2.0, 0.5))
                    s = vol * math.sqrt(T)
                    d1 = sign * target + shift * s + float(rng.normal(0.0, 1e-12)) * max(target, 1.0)
                    K = F / math.exp((d1 - 0.5 * s) * s)
                    if 0.0 < K < math.inf:
                        rows.append((is_call, F, K, T, vol, float(rng.uniform(0.5, 1.0))))
    # degenerate and invalid inputs: the intrinsic branch, NaN and non-positive F / K, extreme ratios and vols
    specials = [
        (100.0, 90.0, 0.0, 0.5, 0.9),
        (100.0, 110.0, -1.0, 0.5, 0.9),
        (100.0, 100.0, 1.0, 0.0, 1.0),
        (100.0, 100.0, 1.0, -0.5, 1.0),
        (100.0, 100.0, math.inf, 0.5, 1.0),
        (100.0, 120.0, 1.0, math.inf, 1.0),
        (1e300, 1e-300, 1.0, 0.5, 1.0),
        (1e-300, 1e300, 1.0, 0.5, 1.0),
        (1e-10, 1e300, 1.0, 0.5, 1.0),
        (1.0, 1.0 + 2.0**-52, 1e-20, 1e-3, 1.0),
        (math.nan, 100.0, 1.0, 0.5, 1.0),
        (100.0, math.nan, 1.0, 0.5, 1.0),
        (100.0, 100.0, math.nan, 0.5, 1.0),
        (100.0, 100.0, 1.0, math.nan, 1.0),
        (100.0, 100.0, 1.0, 0.5, math.nan),
        (-100.0, 100.0, 1.0, 0.5, 1.0),
        (100.0, 0.0, 1.0, 0.5, 1.0),
        (math.inf, 100.0, 1.0, 0.5, 1.0),
        (100.0, math.inf, 1.0, 0.5, 1.0),
    ]
    rows += [(is_call, *args) for args in specials for is_call in (True, False)]
    return np.array([r[0] for r in rows]), [np.array([r[j] for r in rows]) for j in range(1, 6)]


def test_black76_lanes_equal_definition_on_boundaries() -> None:
    """value_options (branch-free, vectorized) gives black76's bits on every branch boundary and degenerate input."""
    is_call, arrays = _black76_boundary_cases()
    outs = [np.empty_like(arrays[0]) for _ in range(5)]
    value_options(is_call, *arrays, *outs)
    columns = [a.tolist() for a in arrays]
    reference = np.array([black76(c, *row) for c, *row in zip(is_call.tolist(), *columns, strict=True)])
    for j, name in enumerate(("price", "delta", "gamma", "vega", "theta")):
        diff = np.flatnonzero(_bits_any_nan(reference[:, j]) != _bits_any_nan(outs[j]))
        assert diff.size == 0, f"{name} differs in {diff.size} cases, first {[float(a[diff[0]]) for a in arrays]}"
    parallel = [np.empty_like(arrays[0]) for _ in range(5)]
    value_options_parallel(is_call, *arrays, *parallel)
    for s, p in zip(outs, parallel, strict=True):
        assert np.array_equal(_bits_any_nan(s), _bits_any_nan(p))


@pytest.mark.parametrize("n", [0, 1, 7, 255, 256, 257, 1000])
def test_batch_sizes_around_the_block(n: int) -> None:
    """Batches shorter than, equal to and longer than one block (and the vector width) give black76's bits."""
    rng = np.random.default_rng(n)
    is_call = rng.random(n) < 0.5
    F = 10.0 ** rng.uniform(1.0, 5.0, n)
    arrays = [F, F * np.exp(rng.uniform(-1.0, 1.0, n)), rng.uniform(0.01, 2.0, n), rng.uniform(0.1, 1.5, n)]
    arrays.append(rng.uniform(0.9, 1.0, n))
    outs = [np.full(n, -7.0) for _ in range(5)]
    value_options(is_call, *arrays, *outs)
    for i in range(n):
        want = black76(bool(is_call[i]), *(float(a[i]) for a in arrays))
        assert np.array_equal(_bits([o[i] for o in outs]), _bits(want)), i


@pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64"), reason="checks x86-64 assembly")
def test_batch_loop_is_vectorized_without_fused_multiply_add() -> None:
    """The compiled batch block has no FMA (a contraction would change results) and, with AVX2, packed divisions.

    Compiled afresh (not from the cache) so the assembly can be read.
    """
    block = njit(error_model="numpy")(pricing._value_block.py_func)
    arrays = (np.zeros(4, dtype=np.bool_), *(np.ones(4) for _ in range(5)))
    block(0, 4, arrays, tuple(np.empty(4) for _ in range(5)))
    asm = block.inspect_asm(block.signatures[0])
    assert not re.search(r"\bv?f(n)?m(add|sub)\w*\b", asm), "fused multiply-add in the batch loop"
    if llvm.get_host_cpu_features().get("avx2"):
        assert re.search(r"\bvdivpd\s+%[yz]mm", asm), "the batch loop is not vectorized"
