"""Black-76 and SVI: reference == kernel bit-for-bit (any thread count, any order), accurate vs an mpmath pricer."""

from __future__ import annotations

import math

import mpmath
import numba
import numpy as np
import numpy.typing as npt
import pytest

from pmoracle.risk.pricing import (
    black76,
    black76_kernel,
    svi_total_variance,
    svi_total_variance_kernel,
    value_options,
    value_options_parallel,
)

ONE_DAY = 1.0 / 365.0


def _option_cases(n: int, seed: int) -> tuple[npt.NDArray[np.bool_], list[npt.NDArray[np.float64]]]:
    """Return n seeded option inputs: 1 day..10 years, vol 1%..300%, strikes to 12 std devs out, intrinsic edges."""
    rng = np.random.default_rng(seed)
    is_call = rng.random(n) < 0.5
    F = 10.0 ** rng.uniform(-1.0, 5.5, n)
    T = 10.0 ** rng.uniform(math.log10(ONE_DAY), 1.0, n)
    T[: n // 20] = ONE_DAY
    T[n // 20 : n // 10] = 10.0
    vol = 10.0 ** rng.uniform(-2.0, math.log10(3.0), n)
    vol[n // 10 : n // 7] = 0.01
    vol[n // 7 : n // 6] = 3.0
    # log-moneyness in standard deviations (deep OTM and ITM both sides) and in plain log terms
    z = np.where(rng.random(n) < 0.6, rng.uniform(-12.0, 12.0, n), rng.uniform(-3.0, 3.0, n) / (vol * np.sqrt(T)))
    K = F * np.exp(z * vol * np.sqrt(T))
    df = rng.uniform(0.5, 1.0, n)
    # expired and zero-vol contracts take the intrinsic path
    T[n // 6 : n // 6 + n // 100] = 0.0
    vol[n // 5 : n // 5 + n // 100] = 0.0
    order = rng.permutation(n)
    return is_call[order], [a[order].copy() for a in (F, K, T, vol, df)]


def _batch(fn, is_call, arrays) -> list[npt.NDArray[np.float64]]:  # type: ignore[no-untyped-def]
    outs = [np.empty_like(arrays[0]) for _ in range(5)]
    fn(is_call, *arrays, *outs)
    return outs


def _bits(values: npt.ArrayLike) -> npt.NDArray[np.uint64]:
    return np.asarray(values, dtype=np.float64).view(np.uint64)


@pytest.fixture(scope="module")
def cases() -> tuple[npt.NDArray[np.bool_], list[npt.NDArray[np.float64]]]:
    return _option_cases(120_000, seed=2026)


def test_reference_equals_batch_kernel_bit_for_bit(cases) -> None:  # type: ignore[no-untyped-def]
    """All five outputs of the pure-Python reference equal the numba batch kernel bit-for-bit on 120k cases."""
    is_call, arrays = cases
    columns = [a.tolist() for a in arrays]
    reference = np.array([black76(c, *row) for c, *row in zip(is_call.tolist(), *columns, strict=True)])
    kernel = _batch(value_options, is_call, arrays)
    for j, name in enumerate(("price", "delta", "gamma", "vega", "theta")):
        diff = np.flatnonzero(_bits(reference[:, j]) != _bits(kernel[j]))
        assert diff.size == 0, f"{name} differs in {diff.size} cases, first {diff[:3]}"


def test_reference_equals_scalar_kernel_bit_for_bit(cases) -> None:  # type: ignore[no-untyped-def]
    """The scalar entry point black76_kernel gives the reference's bits too."""
    is_call, arrays = cases
    for i in range(0, is_call.size, 60):
        args = (bool(is_call[i]), *(float(a[i]) for a in arrays))
        assert np.array_equal(_bits(black76(*args)), _bits(black76_kernel(*args))), args


def test_serial_and_parallel_with_one_and_two_threads_identical(cases) -> None:  # type: ignore[no-untyped-def]
    """The thread count does not change a single bit (each element is independent; no reductions)."""
    is_call, arrays = cases
    serial = _batch(value_options, is_call, arrays)
    previous = numba.get_num_threads()
    try:
        for threads in (1, 2):
            numba.set_num_threads(threads)
            parallel = _batch(value_options_parallel, is_call, arrays)
            for s, p in zip(serial, parallel, strict=True):
                assert np.array_equal(_bits(s), _bits(p)), f"{threads} threads"
    finally:
        numba.set_num_threads(previous)


def test_batch_order_does_not_change_results(cases) -> None:  # type: ignore[no-untyped-def]
    """Valuing a permuted batch and un-permuting gives each element's identical bits."""
    is_call, arrays = cases
    base = _batch(value_options_parallel, is_call, arrays)
    order = np.random.default_rng(99).permutation(is_call.size)
    permuted = _batch(value_options_parallel, is_call[order], [a[order] for a in arrays])
    for b, p in zip(base, permuted, strict=True):
        assert np.array_equal(_bits(b[order]), _bits(p))


def test_svi_reference_equals_kernel_bit_for_bit() -> None:
    """SVI total variance is identical in Python and numba."""
    rng = np.random.default_rng(5)
    for _ in range(2000):
        args = (
            rng.uniform(0.0, 0.2),
            rng.uniform(0.0, 1.0),
            rng.uniform(-0.99, 0.99),
            rng.uniform(-0.5, 0.5),
            rng.uniform(0.01, 1.0),
            rng.uniform(-3.0, 3.0),
        )
        assert _bits(svi_total_variance(*args)) == _bits(svi_total_variance_kernel(*args))


def test_svi_flat_smile_is_constant() -> None:
    """b = 0 is a flat smile: w(k) = a for every k."""
    for k in (-2.0, 0.0, 1.5):
        assert svi_total_variance(0.04, 0.0, 0.3, 0.1, 0.2, k) == 0.04


# ---------------------------------------------------------------- accuracy against an independent pricer


def _mp_black76(is_call: bool, F: float, K: float, T: float, vol: float, df: float) -> tuple[mpmath.mpf, ...]:
    """Return (price, delta, gamma, vega, theta) in 50-digit arithmetic from the textbook formulas."""
    Fm, Km, Tm, vm, dfm = (mpmath.mpf(v) for v in (F, K, T, vol, df))
    s = vm * mpmath.sqrt(Tm)
    d1 = mpmath.log(Fm / Km) / s + s / 2
    d2 = d1 - s
    pdf1 = mpmath.npdf(d1)
    if is_call:
        price = dfm * (Fm * mpmath.ncdf(d1) - Km * mpmath.ncdf(d2))
        delta = dfm * mpmath.ncdf(d1)
    else:
        price = dfm * (Km * mpmath.ncdf(-d2) - Fm * mpmath.ncdf(-d1))
        delta = -dfm * mpmath.ncdf(-d1)
    gamma = dfm * pdf1 / (Fm * s)
    vega = dfm * Fm * pdf1 * mpmath.sqrt(Tm)
    theta = -dfm * Fm * pdf1 * vm / (2 * mpmath.sqrt(Tm))
    return price, delta, gamma, vega, theta


@pytest.fixture(scope="module")
def accuracy_cases() -> list[tuple[tuple[bool, float, float, float, float, float], tuple[mpmath.mpf, ...]]]:
    is_call, arrays = _option_cases(4000, seed=31)
    keep = (arrays[2] > 0.0) & (arrays[3] > 0.0)
    rows = []
    with mpmath.workdps(50):
        for i in np.flatnonzero(keep):
            args = (bool(is_call[i]), *(float(a[i]) for a in arrays))
            rows.append((args, _mp_black76(*args)))
    return rows


def test_price_relative_error_below_1e_11(accuracy_cases) -> None:  # type: ignore[no-untyped-def]
    """Max relative price error <= 1e-11 for every price >= 1e-6 of the forward (issue 3's accuracy bound)."""
    checked = 0
    worst = 0.0
    with mpmath.workdps(50):
        for args, exact in accuracy_cases:
            F = args[1]
            if exact[0] < mpmath.mpf(F) * mpmath.mpf("1e-6"):
                continue
            checked += 1
            error = float(abs(mpmath.mpf(black76(*args)[0]) / exact[0] - 1))
            worst = max(worst, error)
            assert error <= 1e-11, (args, error)
    assert checked > 2000, checked  # the bound is exercised on thousands of cases, not a handful


def test_price_error_bound_holds_for_one_day_low_vol_options() -> None:
    """The hardest case for the bound: 1-day, 1-3 % vol options whose price is just above 1e-6 F.

    There the total vol s is ~5e-4 and out-of-the-money values are a small difference of two normal tails, so
    rounding is amplified by ~|d| / s; the shared-Gaussian-factor form keeps it under the bound.
    """
    rng = np.random.default_rng(3)
    checked = 0
    with mpmath.workdps(50):
        for _ in range(2500):
            vol = float(0.01 * 10.0 ** rng.uniform(0.0, 0.5))
            s = vol * math.sqrt(ONE_DAY)
            F = float(10.0 ** rng.uniform(1.0, 5.0))
            args = (bool(rng.random() < 0.5), F, F * math.exp(float(rng.uniform(-4.0, 4.0)) * s), ONE_DAY, vol, 1.0)
            exact = _mp_black76(*args)[0]
            if exact < mpmath.mpf(F) * mpmath.mpf("1e-6"):
                continue
            checked += 1
            assert float(abs(mpmath.mpf(black76(*args)[0]) / exact - 1)) <= 1e-11, args
    assert checked > 1500, checked


def test_greeks_match_mpmath(accuracy_cases) -> None:  # type: ignore[no-untyped-def]
    """delta within 1e-11 absolute; gamma, vega, theta within 1e-9 relative plus 1e-14 of their at-the-money size.

    Checked where the price is >= 1e-6 F. The absolute part covers deep in-the-money options whose density
    factor is subnormal (greeks ~1e-321 carry few significant bits in any double implementation).
    """
    with mpmath.workdps(50):
        for args, exact in accuracy_cases:
            _, F, _, T, vol, df = args
            if exact[0] < mpmath.mpf(F) * mpmath.mpf("1e-6"):
                continue
            _, delta, gamma, vega, theta = black76(*args)
            assert abs(delta - float(exact[1])) <= 1e-11, args
            atm_density = df * 0.4
            scales = (
                atm_density / (F * vol * math.sqrt(T)),
                atm_density * F * math.sqrt(T),
                atm_density * F * vol / (2.0 * math.sqrt(T)),
            )
            for got, want, scale in zip((gamma, vega, theta), exact[2:], scales, strict=True):
                error = float(abs(mpmath.mpf(got) - want))
                assert error <= 1e-9 * float(abs(want)) + 1e-14 * scale, (args, got, want)


def test_greeks_match_finite_differences() -> None:
    """Each greek is the derivative of the price it claims to be (central differences, 1e-5 relative)."""
    rng = np.random.default_rng(8)
    for _ in range(300):
        is_call = bool(rng.random() < 0.5)
        F = float(10.0 ** rng.uniform(2.0, 5.0))
        T = float(10.0 ** rng.uniform(-1.5, 0.5))
        vol = float(rng.uniform(0.2, 1.5))
        K = F * math.exp(float(rng.uniform(-1.5, 1.5)) * vol * math.sqrt(T))
        df = float(rng.uniform(0.8, 1.0))
        price, delta, gamma, vega, theta = black76(is_call, F, K, T, vol, df)
        h = F * 1e-4
        fd_delta = (black76(is_call, F + h, K, T, vol, df)[0] - black76(is_call, F - h, K, T, vol, df)[0]) / (2 * h)
        fd_gamma = (black76(is_call, F + h, K, T, vol, df)[1] - black76(is_call, F - h, K, T, vol, df)[1]) / (2 * h)
        fd_vega = (black76(is_call, F, K, T, vol + 1e-5, df)[0] - black76(is_call, F, K, T, vol - 1e-5, df)[0]) / 2e-5
        dt = T * 1e-5  # theta = dV/dt = -dV/dT
        fd_theta = -(black76(is_call, F, K, T + dt, vol, df)[0] - black76(is_call, F, K, T - dt, vol, df)[0]) / (2 * dt)
        assert delta == pytest.approx(fd_delta, rel=1e-5, abs=1e-9)
        assert gamma == pytest.approx(fd_gamma, rel=1e-5, abs=1e-12)
        assert vega == pytest.approx(fd_vega, rel=1e-5, abs=1e-9 * F)
        assert theta == pytest.approx(fd_theta, rel=1e-5, abs=1e-9 * F)
        assert price > 0.0


def test_put_call_parity_holds_without_being_used() -> None:
    """Calls and puts are priced by their own formulas, yet C - P = df (F - K) to rounding."""
    is_call, arrays = _option_cases(5000, seed=77)
    F, K, T, vol, df = arrays
    calls = _batch(value_options, np.ones_like(is_call), arrays)
    puts = _batch(value_options, np.zeros_like(is_call), arrays)
    parity_gap = np.abs((calls[0] - puts[0]) - df * (F - K))
    assert np.all(parity_gap <= 1e-13 * np.maximum(F, K))
    live = (T > 0) & (vol > 0)
    assert np.all(np.abs((calls[1] - puts[1])[live] - df[live]) <= 1e-15)


def test_extremes_stay_finite_and_bounded(cases) -> None:  # type: ignore[no-untyped-def]
    """Deep OTM/ITM, 1 day..10 years, vols 1%..300%: prices within no-arbitrage bounds, greeks finite."""
    is_call, arrays = cases
    F, K, _, _, df = arrays
    price, delta, gamma, vega, theta = _batch(value_options, is_call, arrays)
    for out in (price, delta, gamma, vega, theta):
        assert np.all(np.isfinite(out))
    intrinsic = df * np.where(is_call, np.maximum(F - K, 0.0), np.maximum(K - F, 0.0))
    upper = df * np.where(is_call, F, K)
    assert np.all(price >= intrinsic * (1 - 1e-12) - 1e-12 * F)
    assert np.all(price <= upper * (1 + 1e-12))
    assert np.all(np.where(is_call, (delta >= 0) & (delta <= df), (delta <= 0) & (delta >= -df)))
    assert np.all((gamma >= 0) & (vega >= 0) & (theta <= 0))


def test_expired_or_zero_vol_is_discounted_intrinsic() -> None:
    """T <= 0 or vol <= 0 values the option at df x intrinsic with a step delta and no gamma/vega/theta."""
    assert black76(True, 110.0, 100.0, 0.0, 0.5, 0.9) == (pytest.approx(9.0), 0.9, 0.0, 0.0, 0.0)
    assert black76(False, 110.0, 100.0, -1.0, 0.5, 0.9) == (0.0, 0.0, 0.0, 0.0, 0.0)
    assert black76(False, 90.0, 100.0, 0.5, 0.0, 1.0) == (10.0, -1.0, 0.0, 0.0, 0.0)
    assert black76_kernel(True, 110.0, 100.0, 0.0, 0.5, 0.9) == black76(True, 110.0, 100.0, 0.0, 0.5, 0.9)


@pytest.mark.parametrize(
    "args",
    [
        (True, math.nan, 100.0, 1.0, 0.5, 1.0),
        (True, 100.0, math.nan, 1.0, 0.5, 1.0),
        (False, 100.0, 100.0, math.nan, 0.5, 1.0),
        (False, 100.0, 100.0, 1.0, math.nan, 1.0),
        (True, 100.0, 100.0, 1.0, 0.5, math.nan),
        (True, -100.0, 100.0, 1.0, 0.5, 1.0),
        (True, 100.0, 0.0, 1.0, 0.5, 1.0),
        (True, math.inf, 100.0, 1.0, 0.5, 1.0),
    ],
)
def test_invalid_inputs_give_nan_not_an_exception(args) -> None:  # type: ignore[no-untyped-def]
    """NaN or non-positive F/K (rejected upstream) never raise: both reference and kernel return five NaNs."""
    assert all(math.isnan(v) for v in black76(*args))
    assert all(math.isnan(v) for v in black76_kernel(*args))
