"""Black76.sol on anvil against a 50-digit mpmath Black-76 and the engine's binary64 one (``risk/pricing.py``).

Thousands of seeded points across the engine's range (forwards from 1e-2 to 1e12 USD, strikes e^-3 to e^3 times the
forward, vols 5% to 300%, tenors from an hour to five years, negative and positive rates) measure the library's
error and the engine's; risk-array-like pairs (an unshocked value on the SVI smile and a shocked one, quantized as
the engine quantizes) check that an honest entry is always within ``Black76.pnlTolerance`` and an entry two quanta
off never is. The figures are printed (``pytest -s``) and quoted in docs/dispute.md, "Pricing challenge".

The library's functions are internal: ``tests/foundry/Black76Harness.sol`` exposes them and is compiled here with
the pinned solc (``collect_sources(units=...)``), so no test contract enters the committed artifacts.
"""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import mpmath
import pytest
from eth_utils import to_checksum_address

from pmoracle.chain.compile import collect_sources, run_solc
from pmoracle.chain.deploy import connect, open_transmitter
from pmoracle.devnet.devchain import Devchain
from pmoracle.risk.detscalar import det_exp, det_log
from pmoracle.risk.pricing import black76, svi_total_variance
from pmoracle.risk.reference import quantize
from tests.integration.chain.contracts_support import WAD, dev_key

HARNESS_UNIT = "tests/foundry/Black76Harness.sol"
QUANTUM = 10**14  # Black76.QUANTUM: the engine's P&L unit, 1e-4 USD per unit, in WAD
RELATIVE_TOLERANCE = 10**6  # Black76.RELATIVE_TOLERANCE (1e-12 in WAD)
BATCH = 200
DIGITS = 50


@pytest.fixture(scope="module")
def harness(anvil: Devchain) -> Any:
    """Black76Harness, compiled with the pinned solc and deployed on the module's anvil."""
    compiled = run_solc(collect_sources(units=(HARNESS_UNIT,)))["contracts"][HARNESS_UNIT]["Black76Harness"]
    receipt = open_transmitter(anvil.url, dev_key(0)).transact(
        None, bytes.fromhex(compiled["evm"]["bytecode"]["object"])
    )
    assert receipt.contract_address is not None
    return connect(anvil.url).eth.contract(address=to_checksum_address(receipt.contract_address), abi=compiled["abi"])


def _wad(x: mpmath.mpf) -> int:
    """Return x in WAD, rounded to nearest."""
    return int(mpmath.nint(x * WAD))


def _exact(value: int) -> mpmath.mpf:
    return mpmath.mpf(value) / WAD


def _reference(is_call: bool, forward: int, strike: int, std_dev: int, discount: int) -> mpmath.mpf:
    """Return the exact Black-76 value (USD, 50 digits) of the library's integer inputs."""
    f, k, s, df = _exact(forward), _exact(strike), _exact(std_dev), _exact(discount)
    if s == 0:
        return df * max(f - k if is_call else k - f, 0)
    d1 = mpmath.log(f / k) / s + s / 2
    d2 = d1 - s
    if is_call:
        return df * (f * mpmath.ncdf(d1) - k * mpmath.ncdf(d2))
    return df * (k * mpmath.ncdf(-d2) - f * mpmath.ncdf(-d1))


def _scale(forward: int, strike: int, discount: int) -> int:
    """Return Black76.valueScale: df (F + K) in WAD."""
    return (forward + strike) * discount // WAD


def _batched(harness: Any, function: str, columns: Sequence[Sequence[Any]]) -> list[Any]:
    values: list[Any] = []
    for start in range(0, len(columns[0]), BATCH):
        values.extend(getattr(harness.functions, function)(*(c[start : start + BATCH] for c in columns)).call())
    return values


# --- the normal CDF ----------------------------------------------------------------------------------------------


def test_norm_cdf_and_erfc_are_within_two_units_of_the_18th_decimal(harness: Any) -> None:
    """Cody's rational approximation at 27 decimals and expWad keep Phi and erfc within 2e-18 everywhere."""
    rng = random.Random(76)
    xs = [int(rng.uniform(-9.0, 9.0) * WAD) for _ in range(1500)]  # where Phi is not 0 or 1 at 18 decimals
    xs += [int(rng.uniform(-0.7, 0.7) * WAD) for _ in range(300)]  # Cody's first interval and its edges
    xs += [int(rng.uniform(-45.0, 45.0) * WAD) for _ in range(200)]
    xs += [0, 1, -1, 468750000000000000, -468750000000000000, 4 * WAD, -4 * WAD, 38 * WAD, -38 * WAD]
    with mpmath.workdps(DIGITS):
        cdf = harness.functions.normCdfBatch(xs).call()
        cdf_errors = [abs(_exact(v) - mpmath.ncdf(_exact(x))) for x, v in zip(xs, cdf, strict=True)]
        erfc = harness.functions.erfcBatch(xs).call()
        erfc_errors = [abs(_exact(v) - mpmath.erfc(_exact(x))) for x, v in zip(xs, erfc, strict=True)]
    print(f"\nnormCdf: max |error| {float(max(cdf_errors)):.3g}; erfc: max |error| {float(max(erfc_errors)):.3g}")
    assert max(cdf_errors) < 2e-18
    assert max(erfc_errors) < 2e-18
    assert all(0 <= v <= WAD for v in cdf)
    by_x = dict(zip(xs, cdf, strict=True))
    for x in xs:  # both tails come from one erfc value: Phi(x) + Phi(-x) = 1 up to the final rounding
        if -x in by_x:
            assert abs(by_x[x] + by_x[-x] - WAD) <= 1, x
    ordered = sorted(by_x.items())
    assert all(a[1] <= b[1] for a, b in itertools.pairwise(ordered))  # monotone on these points


# --- Black-76 across the engine's range --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Point:
    """One valuation: the library's integer inputs and the engine's float inputs of the same option."""

    is_call: bool
    forward: int
    strike: int
    std_dev: int
    discount: int
    tau: float  # years, the engine's T
    vol: float  # the engine's annual vol

    def args(self) -> tuple[bool, int, int, int, int]:
        """Return the arguments of Black76.price."""
        return (self.is_call, self.forward, self.strike, self.std_dev, self.discount)


def _random_point(rng: random.Random) -> Point:
    with mpmath.workdps(DIGITS):
        forward = _wad(mpmath.mpf(10) ** rng.uniform(-2.0, 12.0))
        forward = min(forward, 10**12 * WAD)
        strike = max(1, min(_wad(_exact(forward) * mpmath.exp(rng.uniform(-3.0, 3.0))), 10**12 * WAD))
        tau = 10 ** rng.uniform(math.log10(1 / 8760), math.log10(5.0))  # an hour to five years
        vol = rng.uniform(0.05, 3.0)
        rate = rng.uniform(-0.05, 0.25)
        std_dev = _wad(mpmath.mpf(vol) * mpmath.sqrt(mpmath.mpf(tau)))
        discount = _wad(mpmath.exp(-mpmath.mpf(rate) * mpmath.mpf(tau)))
    return Point(rng.random() < 0.5, forward, strike, std_dev, discount, tau, vol)


def test_prices_match_a_50_digit_reference_and_the_engine(harness: Any) -> None:
    """The library's error is below 1e-16 of the value's scale df (F + K), the engine's below 1e-15, so the two differ
    by a thousandth of the challenge's relative tolerance at most."""
    rng = random.Random(2026)
    points = [_random_point(rng) for _ in range(3000)]
    values = _batched(harness, "priceBatch", list(zip(*(p.args() for p in points), strict=True)))
    worst_abs = worst_scaled = worst_rel = mpmath.mpf(0)
    engine_worst_abs = engine_worst_scaled = engine_worst_rel = mpmath.mpf(0)
    apart = 0.0
    with mpmath.workdps(DIGITS):
        for point, value in zip(points, values, strict=True):
            exact = _reference(*point.args())
            scale = _exact(_scale(point.forward, point.strike, point.discount))
            error = abs(_exact(value) - exact)
            engine = black76(
                point.is_call, point.forward / WAD, point.strike / WAD, point.tau, point.vol, point.discount / WAD
            )[0]
            engine_error = abs(mpmath.mpf(engine) - exact)
            worst_abs, engine_worst_abs = max(worst_abs, error), max(engine_worst_abs, engine_error)
            worst_scaled = max(worst_scaled, error / scale)
            engine_worst_scaled = max(engine_worst_scaled, engine_error / scale)
            if exact >= scale * mpmath.mpf("1e-6"):  # relative error of values not vanishing against their scale
                worst_rel = max(worst_rel, error / exact)
                engine_worst_rel = max(engine_worst_rel, engine_error / exact)
            apart = max(apart, float(abs(_exact(value) - mpmath.mpf(engine)) / scale))
            bound = point.forward if point.is_call else point.strike  # C <= F df, P <= K df
            assert 0 <= value <= bound * point.discount // WAD + 1
    print(
        f"\nBlack76.price, {len(points)} points, error against 50-digit mpmath:"
        f"\n  library: max |error| {float(worst_abs):.3g} USD, max |error| / df(F+K) {float(worst_scaled):.3g},"
        f" max relative error {float(worst_rel):.3g} (values >= 1e-6 df(F+K))"
        f"\n  engine:  max |error| {float(engine_worst_abs):.3g} USD, max |error| / df(F+K)"
        f" {float(engine_worst_scaled):.3g}, max relative error {float(engine_worst_rel):.3g}"
        f"\n  library vs engine: max |difference| / df(F+K) {apart:.3g}"
    )
    assert worst_scaled < 1e-16
    assert engine_worst_scaled < 1e-15
    assert worst_rel < 1e-10
    assert apart < RELATIVE_TOLERANCE / WAD / 1000  # the tolerance leaves a factor of 1000 at least


def test_svi_total_variance_is_exact_to_a_few_units(harness: Any) -> None:
    """w(k) on chain matches the exact SVI formula of its integer parameters within 3e-18."""
    rng = random.Random(5)
    worst = mpmath.mpf(0)
    with mpmath.workdps(DIGITS):
        for _ in range(150):
            smile = _random_smile(rng)
            k = int(rng.uniform(-3.0, 3.0) * WAD)
            w = harness.functions.sviTotalVariance(smile, k).call()
            a, b, rho, m, sigma = (_exact(v) for v in smile)
            d = _exact(k) - m
            exact = a + b * (rho * d + mpmath.sqrt(d * d + sigma * sigma))
            worst = max(worst, abs(_exact(w) - exact))
    assert worst < 3e-18, worst


def test_discount_factor_year_fraction_and_vol_inputs(harness: Any) -> None:
    """exp(-rate tau) within 1e-17 relative, the engine's 365-day year, priceWithVol = price at s = sigma sqrt(tau)."""
    rng = random.Random(11)
    assert harness.functions.yearFraction(365 * 86400).call() == WAD
    assert harness.functions.yearFraction(86400).call() == WAD // 365
    with mpmath.workdps(DIGITS):
        for _ in range(40):
            rate = int(rng.uniform(-1.0, 1.0) * WAD)
            tau = int(rng.uniform(0.0, 13.0) * WAD)
            discount = harness.functions.discountFactor(rate, tau).call()
            exact = mpmath.exp(-_exact(rate) * _exact(tau))
            assert abs(_exact(discount) - exact) <= exact * mpmath.mpf("1e-17") + mpmath.mpf("1e-18"), (rate, tau)
            point = _random_point(rng)
            vol = int(point.vol * WAD)
            std_dev = vol * math.isqrt(tau * WAD) // WAD  # sqrtWad rounds down
            with_vol = harness.functions.priceWithVol(
                point.is_call, point.forward, point.strike, vol, tau, point.discount
            ).call()
            at_s = harness.functions.price(point.is_call, point.forward, point.strike, std_dev, point.discount).call()
            assert with_vol == at_s, (point, tau)


def _random_smile(rng: random.Random) -> tuple[int, int, int, int, int]:
    """Return SVI raw parameters (WAD) the engine accepts: a >= 0, b > 0, |rho| < 1, sigma > 0."""
    a = int(rng.uniform(0.0, 0.08) * WAD)
    b = int(rng.uniform(0.02, 0.6) * WAD)
    rho = int(rng.uniform(-0.9, 0.9) * WAD)
    m = int(rng.uniform(-0.3, 0.3) * WAD)
    sigma = int(rng.uniform(0.05, 0.6) * WAD)
    return (a, b, rho, m, sigma)


# --- risk-array entries: the tolerance of a pricing challenge ----------------------------------------------------


@dataclass(frozen=True, slots=True)
class Entry:
    """One risk-array entry as the engine computes it, and the library's inputs for both of its values."""

    quantized: int  # R: round-half-even((V_s - V_0) x 1e4), the engine's
    base: tuple[bool, int, int, tuple[int, int, int, int, int], int]  # priceOnSmile(isCall, F, K, smile, df)
    scenario: tuple[bool, int, int, int, int]  # price(isCall, F m, K, s_s, df_s)


def _random_entry(rng: random.Random) -> Entry:
    """Return an option's entry in one scenario: price move m, vol shock v x shift, valued a horizon later."""
    is_call = rng.random() < 0.5
    index = int(10 ** rng.uniform(0.0, 6.0) * 10**8)  # the market's PRICE_SCALE integers
    strike = max(1, int(index * math.exp(rng.uniform(-1.5, 1.5))))
    smile = _random_smile(rng)
    seconds = int(10 ** rng.uniform(math.log10(2 * 86400), math.log10(3 * 365 * 86400)))
    horizon = 86400
    rate = int(rng.uniform(-0.02, 0.1) * WAD)
    move = rng.choice((0.5, 2 / 3, 5 / 6, 1.0, 7 / 6, 4 / 3, 1.5))
    shock = rng.choice((-1.0, 0.0, 1.0)) * rng.uniform(0.0, 0.5)
    # the engine (risk/reference.py's option row, the forward quoted)
    f, k = index / 10**8, strike / 10**8
    t, ts = seconds / (365 * 86400), (seconds - horizon) / (365 * 86400)
    r = rate / WAD
    df, dfs = det_exp(-(r * t)), det_exp(-(r * ts))
    w = svi_total_variance(*(v / WAD for v in smile), det_log(k / f))
    vol = math.sqrt(w / t)
    vol_s = min(max(vol * (1.0 + shock), 0.01), 5.0)
    v0 = black76(is_call, f, k, t, vol, df)[0]
    vs = black76(is_call, f * move, k, ts, vol_s, dfs)[0]
    quantized = quantize(vs - v0)
    assert quantized is not None
    # the library's inputs, derived exactly from the same integers
    with mpmath.workdps(DIGITS):
        forward, strike_wad = index * 10**10, strike * 10**10
        tau, tau_s = mpmath.mpf(seconds) / (365 * 86400), mpmath.mpf(seconds - horizon) / (365 * 86400)
        discount, discount_s = _wad(mpmath.exp(-_exact(rate) * tau)), _wad(mpmath.exp(-_exact(rate) * tau_s))
        a, b, rho, m, sigma = (_exact(v) for v in smile)
        d = mpmath.log(_exact(strike_wad) / _exact(forward)) - m
        vol_exact = mpmath.sqrt((a + b * (rho * d + mpmath.sqrt(d * d + sigma * sigma))) / tau)
        vol_shocked = min(max(vol_exact * (1 + mpmath.mpf(shock)), mpmath.mpf("0.01")), mpmath.mpf(5))
        forward_s = _wad(_exact(forward) * mpmath.mpf(move))
        std_dev_s = _wad(vol_shocked * mpmath.sqrt(tau_s))
    return Entry(
        quantized,
        (is_call, forward, strike_wad, smile, discount),
        (is_call, forward_s, strike_wad, std_dev_s, discount_s),
    )


def test_honest_entries_are_within_the_tolerance_and_two_quanta_off_never(harness: Any) -> None:
    """|R x QUANTUM - (V_s - V_0)| <= pnlTolerance for every honest entry; R +- 2 is always beyond it here."""
    rng = random.Random(14)
    entries = [_random_entry(rng) for _ in range(600)]
    bases = _batched(harness, "priceOnSmileBatch", list(zip(*(e.base for e in entries), strict=True)))
    scenarios = _batched(harness, "priceBatch", list(zip(*(e.scenario for e in entries), strict=True)))
    worst = 0.0
    for entry, base, scenario in zip(entries, bases, scenarios, strict=True):
        _, forward, strike, _, discount = entry.base
        _, forward_s, _, _, discount_s = entry.scenario
        base_scale, scenario_scale = _scale(forward, strike, discount), _scale(forward_s, strike, discount_s)
        tolerance = QUANTUM + (base_scale + scenario_scale) * RELATIVE_TOLERANCE // WAD
        pnl = scenario - base
        gap = abs(entry.quantized * QUANTUM - pnl)
        worst = max(worst, gap / QUANTUM)
        assert gap <= tolerance, (entry, base, scenario)
        for forged in (entry.quantized - 2, entry.quantized + 2):
            assert abs(forged * QUANTUM - pnl) > tolerance, (entry, forged)
    print(f"\nrisk-array entries: max |R x 1e-4 - (V_s - V_0)| = {worst:.6f} quanta over {len(entries)} entries")
    assert worst <= 0.5 + 1e-6  # the engine's rounding and nothing visible besides
    assert harness.functions.pnlTolerance(10**25, 3 * 10**25).call() == QUANTUM + 4 * 10**25 * 10**6 // WAD
    assert harness.functions.valueScale(3 * WAD, 5 * WAD, WAD // 2).call() == 4 * WAD


# --- gas ---------------------------------------------------------------------------------------------------------


def test_one_pricing_call_costs_under_25k_gas(harness: Any) -> None:
    """The library's execution gas for one value (price, and priceOnSmile with the smile's variance)."""
    rng = random.Random(3)
    price_gas, smile_gas = [], []
    for _ in range(60):
        point = _random_point(rng)
        value, gas_used = harness.functions.measurePrice(*point.args()).call()
        assert value == harness.functions.price(*point.args()).call()
        price_gas.append(gas_used)
        smile = _random_smile(rng)
        _, gas_used = harness.functions.measurePriceOnSmile(
            point.is_call, point.forward, point.strike, smile, point.discount
        ).call()
        smile_gas.append(gas_used)
    print(
        f"\nBlack76.price: {min(price_gas)}..{max(price_gas)} gas;"
        f" Black76.priceOnSmile: {min(smile_gas)}..{max(smile_gas)} gas"
    )
    assert max(price_gas) < 25_000
    assert max(smile_gas) < 30_000
