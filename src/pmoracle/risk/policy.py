"""The adaptive margin policy: price scan ranges and vol-shock sizes from an EWMA of one underlying's index history.

A state machine over index samples taken at fixed points (every ``sample_interval_seconds``), in integer
arithmetic apart from one deterministic logarithm per sample (:func:`pmoracle.risk.detmath.det_log`, built from
correctly rounded IEEE-754 operations only) whose result is quantized at once. Every node that feeds the same
samples to the same parameters holds the same state, bit for bit, and its hash (keccak256 of the ABI encoding)
can go into a report and be recomputed by anyone from the chain's history. docs/policy.md gives the maths.

Per sample ``n`` (price ``P_n``, optionally the reference-tenor ATM implied vol ``I_n``):

- ``r_n = round(ln(P_n / P_{n-1}) * 1e9)``; ``V_n = floor((d V_{n-1} + (1 - d) r_n^2))`` (decay ``d`` exact);
- base range ``B_n = sigmas * sqrt(V_n * horizon / interval)``, a fraction of the price in units of 1e-9;
- floor: the largest ``V`` of the stressed lookback gives ``F_n = weight * sigmas * sqrt(Vmax * h / i)``;
- buffer: ``B_n * (1 + b_n)`` where ``b_n`` is 0 in stress (fast vol >= stress_ratio x slow vol) and grows back
  to ``size`` over ``rebuild_samples`` samples otherwise;
- target ``max(B_n (1 + b_n), F_n)`` clamped to [min, max], then moved at most ``max_step_up`` /
  ``max_step_down`` (relative) from the previous range, or with ``step_cap_basis = "margin"`` the margin
  ``range x price`` moved at most that much from the previous one (and the result clamped to [min, max] again).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from fractions import Fraction

from eth_abi import decode, encode
from eth_utils import keccak

from pmoracle.errors import InputError
from pmoracle.risk.detmath import det_log
from pmoracle.risk.inputs import MAX_PRICE, SECONDS_PER_YEAR, WAD
from pmoracle.risk.params import PolicyParams, RiskParams

RANGE_SCALE = 10**9  # scan ranges, vol shifts, buffer levels and vols: fractions in units of 1e-9
RETURN_SCALE = 10**9  # log returns are quantized to 1e-9
VARIANCE_SCALE = RETURN_SCALE**2  # EWMA variances per sampling interval, in units of 1e-18
MAX_IV = 10 * 10**18  # 1000 vol points (WAD), as the market documents accept
STATE_VERSION = 1
STATE_ABI = (
    "uint256", "bytes32", "string", "uint256", "uint256", "uint256", "uint256", "uint256", "uint256", "uint256",
    "uint256[]", "uint256", "uint256", "bool", "uint256", "uint256",
)  # fmt: skip


class HistoryError(InputError):
    """Raised when a sample does not follow its predecessor: a gap, a time out of order, a non-positive price."""

    def __init__(self, index: int, message: str) -> None:
        super().__init__(f"samples[{index}]", message)
        self.index = index


class PolicyStateError(InputError):
    """Raised when a checkpoint cannot be a policy state of these parameters (wrong hash, encoding, bounds)."""


@dataclass(frozen=True, slots=True)
class Sample:
    """One index sample of an underlying at a sampling point."""

    time: int  # unix seconds, a sampling point
    price: int  # PRICE_SCALE (USD with 8 decimals)
    iv: int = 0  # WAD: ATM implied vol at the reference tenor; 0 when the history carries none


@dataclass(frozen=True, slots=True)
class PolicyState:
    """The policy's state after ``count`` samples of ``underlying``; every field is an integer (or a flag)."""

    underlying: str
    policy_hash: bytes  # keccak256 of the policy parameters this state was computed under
    count: int  # samples processed (the last one has index count - 1)
    time: int  # the last sample's time
    price: int  # the last sample's price (PRICE_SCALE)
    iv: int  # the last sample's implied vol (WAD), 0 without an IV series
    variance: int  # fast EWMA of squared log returns per interval (1 / VARIANCE_SCALE)
    slow_variance: int  # slow EWMA (the buffer's stress reference); the seed when there is no buffer
    iv_variance: int  # EWMA of squared log IV changes per interval; 0 without [policy.vol]
    block_maxima: tuple[int, ...]  # largest variance of each completed lookback block, oldest first
    block_max: int  # largest variance of the current block (0 without a floor)
    buffer_level: int  # buffer held now, a fraction of the base range (RANGE_SCALE)
    stressed: bool  # the buffer's stress test held at the last sample
    scan_range: int  # the applied price scan range, a fraction of the price (RANGE_SCALE)
    vol_shift: int  # the applied vol shift k at the reference tenor (RANGE_SCALE); 0 without [policy.vol]

    @property
    def stressed_variance(self) -> int:
        """Return the largest EWMA variance of the stressed lookback (0 without a floor)."""
        return max((*self.block_maxima, self.block_max))

    @property
    def canonical_bytes(self) -> bytes:
        """Return the canonical encoding (see :func:`encode_policy_state`)."""
        return encode_policy_state(self)

    @property
    def state_hash(self) -> bytes:
        """Return keccak256 of the canonical encoding."""
        return keccak(encode_policy_state(self))


# --- exact helpers -------------------------------------------------------------------------------------------


def mul_floor(value: int, factor: Fraction) -> int:
    """Return floor(value x factor)."""
    return (value * factor.numerator) // factor.denominator


def mul_ceil(value: int, factor: Fraction) -> int:
    """Return ceil(value x factor)."""
    return -((-value * factor.numerator) // factor.denominator)


def to_scaled(value: Fraction, scale: int) -> int:
    """Return floor(value x scale)."""
    return mul_floor(scale, value)


def compute_ewma(previous: int, observation: int, decay: Fraction) -> int:
    """Return floor(decay x previous + (1 - decay) x observation)."""
    num, den = decay.numerator, decay.denominator
    return (num * previous + (den - num) * observation) // den


def compute_log_change(new: int, old: int) -> int:
    """Return round(ln(new / old) x RETURN_SCALE), half to even (int -> float and / are correctly rounded)."""
    return round(det_log(float(new) / float(old)) * RETURN_SCALE)


def compute_seed_variance(annual_vol: Fraction, interval_seconds: int) -> int:
    """Return the per-interval variance (1 / VARIANCE_SCALE) of an annualised vol, floored."""
    v = annual_vol * annual_vol * interval_seconds * VARIANCE_SCALE / SECONDS_PER_YEAR
    return v.numerator // v.denominator


def compute_horizon_vol(params: PolicyParams, variance: int) -> int:
    """Return the vol over the horizon, sqrt(variance x horizon / interval), a fraction (RANGE_SCALE), floored."""
    return math.isqrt(variance * params.horizon_seconds // params.sample_interval_seconds)


def compute_annual_vol(params: PolicyParams, variance: int) -> int:
    """Return the annualised vol of a per-interval variance, a fraction (RANGE_SCALE), floored."""
    return math.isqrt(variance * SECONDS_PER_YEAR // params.sample_interval_seconds)


def compute_base_range(params: PolicyParams, variance: int) -> int:
    """Return sigmas x the horizon vol of ``variance``: the range before any anti-procyclicality tool."""
    return mul_floor(compute_horizon_vol(params, variance), params.sigmas)


def compute_floor_range(params: PolicyParams, state: PolicyState) -> int:
    """Return the stressed-lookback floor: weight x the base range of the lookback's largest variance (0 if none)."""
    if params.floor is None:
        return 0
    return mul_floor(compute_base_range(params, state.stressed_variance), params.floor.weight)


def compute_buffered_range(params: PolicyParams, state: PolicyState) -> int:
    """Return the base range plus the buffer currently held."""
    base = compute_base_range(params, state.variance)
    return base + base * state.buffer_level // RANGE_SCALE


def compute_target_range(params: PolicyParams, state: PolicyState) -> int:
    """Return max(buffered range, floor) clamped to [min_scan_range, max_scan_range], before the step cap."""
    target = max(compute_buffered_range(params, state), compute_floor_range(params, state))
    return clamp(target, min_range(params), max_range(params))


def min_range(params: PolicyParams) -> int:
    """Return the smallest scan range (RANGE_SCALE), rounded up so the bound holds exactly."""
    return mul_ceil(RANGE_SCALE, params.min_scan_range)


def max_range(params: PolicyParams) -> int:
    """Return the largest scan range (RANGE_SCALE), rounded down so the bound holds exactly."""
    return mul_floor(RANGE_SCALE, params.max_scan_range)


def clamp(value: int, lo: int, hi: int) -> int:
    """Return value moved into [lo, hi] (lo <= hi)."""
    return max(lo, min(value, hi))


def compute_step_bounds(params: PolicyParams, previous: int) -> tuple[int, int | None]:
    """Return the (lowest, highest or None) range the step cap allows after ``previous``; both hold exactly."""
    lo = 0 if params.max_step_down is None else mul_ceil(previous, 1 - params.max_step_down)
    hi = None if params.max_step_up is None else mul_floor(previous, 1 + params.max_step_up)
    return lo, hi


def apply_step_cap(params: PolicyParams, previous: int, target: int) -> int:
    """Return ``target`` moved into the step cap's bounds around ``previous``."""
    lo, hi = compute_step_bounds(params, previous)
    return max(lo, target if hi is None else min(target, hi))


def compute_range_step_bounds(
    params: PolicyParams, previous: int, old_price: int, new_price: int
) -> tuple[int, int | None]:
    """Return the (lowest, highest or None) scan range the step cap allows after ``previous`` set at ``old_price``,
    for a sample at ``new_price``; both hold exactly (rounded inwards).

    With ``step_cap_basis = "range"`` these are :func:`compute_step_bounds`. With ``"margin"`` the cap bounds the
    one-unit margin ``range x price``: ``ceil(previous old (1 - down) / new)`` and ``floor(previous old (1 + up) /
    new)``.
    """
    if params.step_cap_basis == "range":
        return compute_step_bounds(params, previous)
    margin = previous * old_price
    lo = 0 if params.max_step_down is None else mul_ceil(margin, (1 - params.max_step_down) / new_price)
    hi = None if params.max_step_up is None else mul_floor(margin, (1 + params.max_step_up) / new_price)
    return lo, hi


def apply_range_step_cap(params: PolicyParams, previous: int, old_price: int, new_price: int, target: int) -> int:
    """Return the scan range applied at ``new_price``: ``target`` moved into the step cap's bounds, then into
    [min_scan_range, max_scan_range].

    The range bounds win over the cap: with the ``"margin"`` basis a large price move can put a cap bound outside
    them (a rise of the price can ask for a range under the minimum). Where the two cap bounds cross (the exact
    interval holds no integer once rounded inwards, only with ranges of a few units of 1e-9), the cap on rises wins.
    With the ``"range"`` basis the bounds never cross and the result already lies in [min, max] (``previous`` and
    ``target`` do), so this is :func:`apply_step_cap`.
    """
    lo, hi = compute_range_step_bounds(params, previous, old_price, new_price)
    capped = max(lo, target) if hi is None else min(hi, max(lo, target))
    return clamp(capped, min_range(params), max_range(params))


def is_stress(params: PolicyParams, variance: int, slow_variance: int) -> bool:
    """Check if the fast EWMA vol is at least stress_ratio times the slow one (False without a buffer)."""
    if params.buffer is None:
        return False
    ratio = params.buffer.stress_ratio
    return variance * ratio.denominator**2 >= slow_variance * ratio.numerator**2


def compute_vol_shift(params: PolicyParams, iv_variance: int) -> int:
    """Return sigmas x the horizon vol of log IV changes, clamped to [min_shift, max_shift] (RANGE_SCALE)."""
    vol = params.vol
    if vol is None:
        return 0
    shift = mul_floor(compute_horizon_vol(params, iv_variance), vol.sigmas)
    return clamp(shift, mul_ceil(RANGE_SCALE, vol.min_shift), mul_floor(RANGE_SCALE, vol.max_shift))


# --- the state machine ----------------------------------------------------------------------------------------


def check_sample(params: PolicyParams, state: PolicyState | None, sample: Sample) -> None:
    """Check that ``sample`` may follow ``state`` (None: it is the first); raise ``HistoryError`` naming it."""
    index = 0 if state is None else state.count
    if sample.price <= 0:  # a price is positive
        raise HistoryError(index, f"price {sample.price} is not positive")
    if sample.price > MAX_PRICE:  # and within the engine's range
        raise HistoryError(index, f"price {sample.price} exceeds {MAX_PRICE}")
    if (params.vol is not None) != (sample.iv != 0):  # an IV series exactly when the policy sizes vol shocks
        wanted = "an implied vol" if params.vol is not None else "no implied vol ([policy.vol] is not set)"
        raise HistoryError(index, f"implied vol {sample.iv}: the policy needs {wanted}")
    if not 0 <= sample.iv <= MAX_IV:  # an implied vol is positive and bounded
        raise HistoryError(index, f"implied vol {sample.iv} is outside (0, {MAX_IV}]")
    if sample.time < 0:  # unix seconds
        raise HistoryError(index, f"time {sample.time} is negative")
    if state is None:
        if sample.time % params.sample_interval_seconds:  # sampling points are multiples of the interval
            raise HistoryError(
                index, f"time {sample.time} is not a sampling point (a multiple of {params.sample_interval_seconds} s)"
            )
        return
    expected = state.time + params.sample_interval_seconds
    if sample.time <= state.time:  # times strictly increase
        raise HistoryError(index, f"time {sample.time} does not follow the previous sample's time {state.time}")
    if sample.time != expected:  # samples sit exactly on consecutive sampling points: no gap
        raise HistoryError(
            index,
            f"time {sample.time} leaves a gap after {state.time}: the next sampling point is {expected} "
            f"(every {params.sample_interval_seconds} s)",
        )


def start_policy(params: PolicyParams, underlying: str, sample: Sample) -> PolicyState:
    """Return the state after the first sample: every EWMA at its seed, the buffer full, no step cap yet.

    ``params`` may be the document's section: the state follows (and binds the hash of) ``underlying``'s effective
    parameters, :meth:`PolicyParams.for_underlying`; so do :func:`process_sample` and :func:`decode_policy_state`.
    """
    params = params.for_underlying(underlying)
    check_sample(params, None, sample)
    seed = compute_seed_variance(params.seed_vol, params.sample_interval_seconds)
    iv_seed = 0 if params.vol is None else compute_seed_variance(params.vol.seed_vol, params.sample_interval_seconds)
    state = PolicyState(
        underlying=underlying,
        policy_hash=params.policy_hash,
        count=1,
        time=sample.time,
        price=sample.price,
        iv=sample.iv,
        variance=seed,
        slow_variance=seed,
        iv_variance=iv_seed,
        block_maxima=(),
        block_max=seed if params.floor is not None else 0,
        buffer_level=0 if params.buffer is None else to_scaled(params.buffer.size, RANGE_SCALE),
        stressed=False,
        scan_range=0,
        vol_shift=0,
    )
    return replace(state, scan_range=compute_target_range(params, state), vol_shift=compute_vol_shift(params, iv_seed))


def process_sample(params: PolicyParams, state: PolicyState, sample: Sample) -> PolicyState:
    """Return the state after one more sample; raise ``HistoryError`` (state unchanged) if it cannot follow."""
    params = params.for_underlying(state.underlying)
    check_sample(params, state, sample)
    r = compute_log_change(sample.price, state.price)
    variance = compute_ewma(state.variance, r * r, params.decay)
    slow_variance = state.slow_variance
    buffer_level = state.buffer_level
    stressed = False
    if params.buffer is not None:
        slow_variance = compute_ewma(state.slow_variance, r * r, params.buffer.slow_decay)
        stressed = is_stress(params, variance, slow_variance)
        size = to_scaled(params.buffer.size, RANGE_SCALE)
        # released at once in stress; rebuilt in equal steps (rounded up) otherwise
        buffer_level = 0 if stressed else min(size, buffer_level + -(-size // params.buffer.rebuild_samples))
    block_maxima, block_max = state.block_maxima, state.block_max
    if params.floor is not None:
        if state.count % params.floor.block_samples == 0:  # this sample opens a new block
            block_maxima = (*block_maxima, block_max)[-params.floor.blocks :]
            block_max = variance
        else:
            block_max = max(block_max, variance)
    iv_variance = state.iv_variance
    vol_shift = state.vol_shift
    if params.vol is not None:
        d = compute_log_change(sample.iv, state.iv)
        iv_variance = compute_ewma(state.iv_variance, d * d, params.vol.decay)
        vol_shift = apply_step_cap(params, state.vol_shift, compute_vol_shift(params, iv_variance))
    after = replace(
        state,
        count=state.count + 1,
        time=sample.time,
        price=sample.price,
        iv=sample.iv,
        variance=variance,
        slow_variance=slow_variance,
        iv_variance=iv_variance,
        block_maxima=block_maxima,
        block_max=block_max,
        buffer_level=buffer_level,
        stressed=stressed,
        vol_shift=vol_shift,
    )
    target = compute_target_range(params, after)
    return replace(after, scan_range=apply_range_step_cap(params, state.scan_range, state.price, sample.price, target))


def compute_policy_path(
    params: PolicyParams, underlying: str, samples: Iterable[Sample], state: PolicyState | None = None
) -> list[PolicyState]:
    """Return the state after each sample, starting from ``state`` (a checkpoint) or from the first sample."""
    path = []
    for sample in samples:
        state = start_policy(params, underlying, sample) if state is None else process_sample(params, state, sample)
        path.append(state)
    return path


def compute_policy_state(
    params: PolicyParams, underlying: str, samples: Sequence[Sample], state: PolicyState | None = None
) -> PolicyState | None:
    """Return the state after the last sample (``state`` unchanged when there is none)."""
    path = compute_policy_path(params, underlying, samples, state)
    return path[-1] if path else state


def compute_samples(
    params: PolicyParams,
    updates: Sequence[Sample],
    first_point: int,
    count: int,
    max_age_seconds: int,
    iv_source: IvSource | None = None,
) -> list[Sample]:
    """Return the sample at each of ``count`` points from ``first_point``: the last update (in chain order) at or
    before it; raise ``HistoryError`` naming the point where none is fresher than ``max_age_seconds``.

    With ``iv_source`` (smile updates in chain order) each sample's ``iv`` is the reference-tenor ATM implied vol
    of the smiles at the point (:func:`compute_reference_iv`), the updates' own ``iv`` being ignored.
    """
    interval = params.sample_interval_seconds
    if first_point % interval:  # sampling points are multiples of the interval
        raise HistoryError(0, f"time {first_point} is not a sampling point (a multiple of {interval} s)")
    check_chain_order([u.time for u in updates])
    book: dict[int, SmileQuote] = {}
    smiles: Sequence[SmileQuote] = ()
    if iv_source is not None:
        book = {q.expiry: q for q in iv_source.book}
        smiles = iv_source.updates
        check_chain_order([q.time for q in smiles])
    samples = []
    u = -1  # index of the last update at or before the current point
    s = 0  # index of the first smile update after the current point
    for k in range(count):
        point = first_point + k * interval
        while u + 1 < len(updates) and updates[u + 1].time <= point:
            u += 1
        if u < 0 or point - updates[u].time > max_age_seconds:  # the index must be fresh at every point
            last = "no update yet" if u < 0 else f"the last update is {point - updates[u].time} s old"
            raise HistoryError(k, f"no fresh index at sampling point {point}: {last} (limit {max_age_seconds} s)")
        iv = updates[u].iv
        if iv_source is not None:
            while s < len(smiles) and smiles[s].time <= point:
                book[smiles[s].expiry] = smiles[s]
                s += 1
            iv = compute_reference_iv(list(book.values()), point, iv_source.tenor_seconds, max_age_seconds, k)
        samples.append(Sample(time=point, price=updates[u].price, iv=iv))
    return samples


def check_chain_order(times: Sequence[int]) -> None:
    """Raise ``HistoryError`` naming the first update whose time precedes its predecessor's (chain order)."""
    for i in range(1, len(times)):
        if times[i] < times[i - 1]:  # chain order: block timestamps never decrease
            raise HistoryError(i, f"update time {times[i]} precedes {times[i - 1]}")


# --- the implied-vol sample: the reference-tenor ATM vol of the on-chain smiles ------------------------------


@dataclass(frozen=True, slots=True)
class SmileQuote:
    """One expiry's SVI smile as written on chain (``SmileSet``: raw total-variance parameters, WAD) and when."""

    expiry: int  # unix seconds
    a: int
    b: int
    rho: int
    m: int
    sigma: int
    time: int  # the writing block's timestamp


@dataclass(frozen=True, slots=True)
class IvSource:
    """What the IV samples of a run of sampling points need: the smiles known before it, the updates during it."""

    tenor_seconds: Fraction  # the reference tenor: the engine's vol.tenor_days x 86400, exact
    book: tuple[SmileQuote, ...]  # the last quote of each expiry, written before the run's first point
    updates: tuple[SmileQuote, ...]  # later quotes, in chain order


def compute_iv_tenor_seconds(tenor_days: float) -> Fraction:
    """Return the IV samples' reference tenor in seconds: the document's ``vol.tenor_days`` (a float, taken exactly)
    x 86400, the tenor at which the engine applies the vol shift unscaled."""
    return Fraction(tenor_days) * 86400


def compute_atm_total_variance(quote: SmileQuote) -> int:
    """Return the SVI total variance at log-moneyness 0, ``a + b (sqrt(m^2 + sigma^2) - rho m)``, WAD, floored.

    Exact integers: the square root is ``isqrt`` of the WAD^2 sum (floored), the product floored once.
    """
    root = math.isqrt(quote.m * quote.m + quote.sigma * quote.sigma)  # WAD
    return int(quote.a + (quote.b * (root * WAD - quote.rho * quote.m)) // (WAD * WAD))


def compute_reference_iv(
    smiles: Sequence[SmileQuote], point: int, tenor_seconds: Fraction, max_age_seconds: int, index: int = 0
) -> int:
    """Return the ATM implied vol (WAD) at the reference tenor of the smiles live at ``point``.

    The live smiles are those expiring after ``point``, written at or before it. With ``T`` the tenor and ``w_i``
    the ATM total variance (:func:`compute_atm_total_variance`) of expiry ``e_i`` at ``t_i = e_i - point``: an
    expiry at exactly ``T`` gives ``w = w_i``; two around it give the linear interpolation in total variance
    ``w = w_1 + (w_2 - w_1)(T - t_1)/(t_2 - t_1)``, and the vol is ``sqrt(w / T)``; when every expiry lies on one
    side of ``T`` the nearest one's own vol ``sqrt(w_i / t_i)`` (flat extrapolation). The vol is
    ``isqrt(floor(w x WAD x year / t))``: exact rationals, then one integer square root.

    Errors: ``HistoryError`` (``samples[index]``) naming the point when no smile is live, or a smile used is older
    than ``max_age_seconds`` or has a non-positive ATM total variance.
    """
    live = sorted((q for q in smiles if q.expiry > point and q.time <= point), key=lambda q: q.expiry)
    if not live:
        raise HistoryError(index, f"no smile expiring after sampling point {point}")
    below = [q for q in live if q.expiry - point <= tenor_seconds]
    above = [q for q in live if q.expiry - point >= tenor_seconds]
    used = [below[-1], above[0]] if below and above else [below[-1] if below else above[0]]
    if used[0] == used[-1]:  # an expiry exactly at the tenor
        used = used[:1]
    for q in used:
        if point - q.time > max_age_seconds:  # a smile used must be fresh, as the index is
            raise HistoryError(
                index, f"no fresh smile at sampling point {point}: expiry {q.expiry}'s is {point - q.time} s old "
                f"(limit {max_age_seconds} s)",
            )  # fmt: skip
        if compute_atm_total_variance(q) <= 0:  # SVI's a may be negative: the ATM variance must not
            raise HistoryError(index, f"expiry {q.expiry}'s smile has ATM total variance "
                                      f"{compute_atm_total_variance(q)} <= 0 at sampling point {point}")  # fmt: skip
    if len(used) == 1:
        total, tenor = Fraction(compute_atm_total_variance(used[0])), Fraction(used[0].expiry - point)
    else:
        (q1, q2), tenor = used, tenor_seconds
        t1, t2 = q1.expiry - point, q2.expiry - point
        w1, w2 = compute_atm_total_variance(q1), compute_atm_total_variance(q2)
        total = w1 + (w2 - w1) * (tenor_seconds - t1) / (t2 - t1)
    square = total * WAD * SECONDS_PER_YEAR / tenor
    return math.isqrt(square.numerator // square.denominator)  # >= 1: w >= 1 and t < WAD x year


# --- the policy of a round: tracks over chain updates, the states' hash, the effective parameters ----------------


@dataclass(frozen=True, slots=True)
class PolicyTrack:
    """One underlying's policy as far as the chain has been read: its state and what the next sample needs."""

    underlying: str
    next_point: int | None  # the next sampling point to process; None before the first update
    last_update: Sample | None  # the last index update read (the next points sample it until a newer one comes)
    state: PolicyState | None  # after every sampling point before ``next_point``; None before the first point
    # with [policy.vol]: the last smile read of each expiry after ``next_point`` (the others are never live again),
    # in expiry order
    smiles: tuple[SmileQuote, ...] = ()


def start_track(underlying: str) -> PolicyTrack:
    """Return the track of an underlying before any of its updates was read."""
    return PolicyTrack(underlying=underlying, next_point=None, last_update=None, state=None)


def advance_track(
    params: PolicyParams,
    track: PolicyTrack,
    updates: Sequence[Sample],
    until: int,
    max_age_seconds: int,
    smiles: Sequence[SmileQuote] = (),
    iv_tenor_seconds: Fraction | None = None,
) -> PolicyTrack:
    """Return ``track`` after ``updates`` (chain order, none after ``until``) and every sampling point < ``until``.

    The first sampling point is the first multiple of the interval at or after the first update; each point samples
    the last update at or before it (:func:`compute_samples`), refused naming the point when it is older than
    ``max_age_seconds``. A point is sampled only once the chain's time has passed it (``until``, the round's block
    time, is strictly later): a later block may carry the same timestamp as B (anvil mines such blocks), so an
    update at the point itself could still come. Reading the updates in several calls gives the track of reading
    them in one.

    With ``[policy.vol]`` and ``iv_tenor_seconds`` (the node's path) the ``smiles`` read with the updates (chain
    order, none after ``until``) give each sample's implied vol at that reference tenor
    (:func:`compute_reference_iv`), and the track keeps the last smile of every expiry still to come; without a
    tenor the updates carry their own ``iv``.
    """
    first = compute_next_point(params, track, updates)
    book = merge_smiles(track.smiles, smiles)
    if first is None:  # nothing read yet
        return replace(track, smiles=book)
    samples = compute_track_samples(params, track, updates, until, max_age_seconds, smiles, iv_tenor_seconds)
    state = compute_policy_state(params, track.underlying, samples, track.state)
    last_update = updates[-1] if updates else track.last_update
    next_point = first + len(samples) * params.sample_interval_seconds
    book = tuple(q for q in book if q.expiry > next_point)  # never live at a later point
    return PolicyTrack(track.underlying, next_point, last_update, state, book)


def merge_smiles(book: Sequence[SmileQuote], updates: Sequence[SmileQuote]) -> tuple[SmileQuote, ...]:
    """Return the last quote of each expiry of ``book`` then ``updates`` (chain order), in expiry order."""
    latest = {q.expiry: q for q in book}
    latest.update((q.expiry, q) for q in updates)
    return tuple(latest[e] for e in sorted(latest))


def compute_next_point(params: PolicyParams, track: PolicyTrack, updates: Sequence[Sample]) -> int | None:
    """Return the track's next sampling point: its own, else the first multiple at or after the first update."""
    if track.next_point is not None:
        return track.next_point
    if not updates:
        return None
    interval = params.sample_interval_seconds
    return -(-updates[0].time // interval) * interval


def compute_track_samples(
    params: PolicyParams,
    track: PolicyTrack,
    updates: Sequence[Sample],
    until: int,
    max_age_seconds: int,
    smiles: Sequence[SmileQuote] = (),
    iv_tenor_seconds: Fraction | None = None,
) -> list[Sample]:
    """Return the samples at the track's sampling points before ``until`` (see :func:`advance_track`)."""
    first = compute_next_point(params, track, updates)
    known = ([] if track.last_update is None else [track.last_update]) + list(updates)
    if first is None:
        return []
    if known[-1].time > until:  # the caller reads the chain up to the block whose timestamp is ``until``
        raise HistoryError(len(known) - 1, f"update time {known[-1].time} is after the round's time {until}")
    if smiles and smiles[-1].time > until:  # the same for the smiles
        raise HistoryError(len(smiles) - 1, f"smile time {smiles[-1].time} is after the round's time {until}")
    iv_source = None
    if params.vol is not None and iv_tenor_seconds is not None:  # else the updates carry their own iv
        if iv_tenor_seconds <= 0:  # the vol shift is sized at the engine's tenor
            raise InputError("iv_tenor_seconds", f"must be positive, got {iv_tenor_seconds}")
        iv_source = IvSource(iv_tenor_seconds, track.smiles, tuple(smiles))
    interval = params.sample_interval_seconds
    count = max(0, ((until - 1) // interval * interval - first) // interval + 1)  # the points in [first, until)
    return compute_samples(params, known, first, count, max_age_seconds, iv_source)


def compute_policy_hash(states: Iterable[PolicyState]) -> bytes:
    """Return keccak256 of the states' canonical encodings concatenated in symbol order (keccak256("") for none)."""
    ordered = sorted(states, key=lambda s: s.underlying)
    for a, b in itertools.pairwise(ordered):
        if a.underlying == b.underlying:  # one state per underlying
            raise PolicyStateError("states", f"two states of {a.underlying}")
    return keccak(b"".join(encode_policy_state(s) for s in ordered))


def compute_effective_params(params: RiskParams, states: Iterable[PolicyState]) -> RiskParams:
    """Return ``params`` with each state's applied scan range as its underlying's override (``range / 1e9``).

    The result only drives the engine: the report keeps the document's ``paramsHash``. A state with a vol shift
    (``[policy.vol]``) also sets its underlying's ``vol_shift_by_underlying`` to ``vol_shift / 1e9``; a shift of 0
    keeps the document's (its override, else the constant ``vol.shift``).
    """
    ranges = dict(params.scan_range_by_underlying)
    shifts = dict(params.vol_shift_by_underlying)
    for state in states:
        ranges[state.underlying] = state.scan_range / RANGE_SCALE  # int / int: correctly rounded, so deterministic
        if state.vol_shift:
            shifts[state.underlying] = state.vol_shift / RANGE_SCALE  # the same: one float on every node
    return replace(
        params,
        scan_range_by_underlying=tuple(sorted(ranges.items())),
        vol_shift_by_underlying=tuple(sorted(shifts.items())),
    )


@dataclass(frozen=True, slots=True)
class PolicyRound:
    """The policy at a round's anchor block: the state of every underlying that has one, in symbol order."""

    block_number: int
    states: tuple[PolicyState, ...]

    @property
    def policy_hash(self) -> bytes:
        """Return :func:`compute_policy_hash` of the states (the value a report commits to)."""
        return compute_policy_hash(self.states)

    def state_of(self, underlying: str) -> PolicyState | None:
        """Return the state of ``underlying`` (None when it has none yet)."""
        return next((s for s in self.states if s.underlying == underlying), None)


# --- canonical encoding ---------------------------------------------------------------------------------------


def encode_policy_state(state: PolicyState) -> bytes:
    """Return the ABI encoding of (version, policy hash, underlying, every integer field in declaration order)."""
    return encode(
        STATE_ABI,
        (
            STATE_VERSION, state.policy_hash, state.underlying, state.count, state.time, state.price, state.iv,
            state.variance, state.slow_variance, state.iv_variance, list(state.block_maxima), state.block_max,
            state.buffer_level, state.stressed, state.scan_range, state.vol_shift,
        ),
    )  # fmt: skip


def decode_policy_state(params: PolicyParams, data: bytes) -> PolicyState:
    """Return the state a checkpoint encodes; raise ``PolicyStateError`` unless it is canonical and fits ``params``."""
    try:
        values = decode(STATE_ABI, data)
    except Exception as exc:  # eth_abi raises several unrelated types for malformed input
        raise PolicyStateError("checkpoint", f"not an ABI-encoded policy state: {exc}") from None
    (version, policy_hash, underlying, count, time, price, iv, variance, slow, iv_var, maxima, block_max, level,
     stressed, scan_range, vol_shift) = values  # fmt: skip
    params = params.for_underlying(underlying)  # the state binds its underlying's effective parameters
    if version != STATE_VERSION:  # one encoding version exists
        raise PolicyStateError("checkpoint.version", f"{version} is not {STATE_VERSION}")
    if policy_hash != params.policy_hash:  # a state is only valid under the parameters it was computed with
        raise PolicyStateError(
            "checkpoint.policy_hash", f"0x{policy_hash.hex()} is not the hash of these parameters for {underlying}"
        )
    state = PolicyState(
        underlying=underlying,
        policy_hash=policy_hash,
        count=count,
        time=time,
        price=price,
        iv=iv,
        variance=variance,
        slow_variance=slow,
        iv_variance=iv_var,
        block_maxima=tuple(maxima),
        block_max=block_max,
        buffer_level=level,
        stressed=stressed,
        scan_range=scan_range,
        vol_shift=vol_shift,
    )
    if count < 1:  # a state holds at least its first sample
        raise PolicyStateError("checkpoint.count", f"{count} is not positive")
    if params.floor is not None and len(maxima) > params.floor.blocks:  # the lookback keeps at most `blocks`
        raise PolicyStateError("checkpoint.block_maxima", f"{len(maxima)} blocks exceed {params.floor.blocks}")
    if not min_range(params) <= scan_range <= max_range(params):  # the applied range always lies in the bounds
        raise PolicyStateError("checkpoint.scan_range", f"{scan_range} is outside the policy's bounds")
    size = 0 if params.buffer is None else to_scaled(params.buffer.size, RANGE_SCALE)
    if level > size:  # the buffer never exceeds its size
        raise PolicyStateError("checkpoint.buffer_level", f"{level} exceeds the buffer's size {size}")
    if (params.vol is None) != (vol_shift == 0):  # a vol shift exactly when the policy sizes vol shocks
        raise PolicyStateError("checkpoint.vol_shift", f"{vol_shift} does not fit the policy's [policy.vol]")
    if encode_policy_state(state) != bytes(data):  # one state, one encoding
        raise PolicyStateError("checkpoint", "not the canonical encoding of its state")
    return state
