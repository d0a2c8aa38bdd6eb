"""[policy.vol] from on-chain smiles: the reference-tenor ATM implied vol of the SVI smiles at each sampling point
(exact integers), the track over smile updates read in rounds, and the engine's per-underlying vol shift."""

from __future__ import annotations

import dataclasses
import itertools
import math
import random
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pmoracle.config.params import default_params, default_params_text
from pmoracle.risk.errors import ParamsError
from pmoracle.risk.params import parse_params
from pmoracle.risk.policy import (
    RANGE_SCALE,
    HistoryError,
    IvSource,
    Sample,
    SmileQuote,
    advance_track,
    compute_atm_total_variance,
    compute_effective_params,
    compute_policy_state,
    compute_reference_iv,
    compute_samples,
    start_track,
)

from .test_policy import FULL

WAD = 10**18
DAY = 86400
HOUR = 3600
YEAR = 365 * DAY
P0 = 1_700_006_400  # a sampling point (a multiple of DAY)
TENOR = Fraction(30 * DAY)  # the default document's vol.tenor_days = 30
# the tests' full policy, hourly, without the floor and the buffer
POLICY = dataclasses.replace(FULL, sample_interval_seconds=HOUR, floor=None, buffer=None)


def flat(days: float, vol: float, point: int = P0, time: int = P0 - 60) -> SmileQuote:
    """Return a smile of constant vol ``vol`` for the expiry ``days`` after ``point`` (b = 0: w = a)."""
    t = round(days * DAY)
    return SmileQuote(point + t, round(vol * vol * t / YEAR * WAD), 0, 0, 0, WAD // 10, time)


# --- the ATM total variance and the reference-tenor vol -----------------------------------------------------------


def svi_float(q: SmileQuote, k: float) -> float:
    a, b, rho, m, sigma = (x / WAD for x in (q.a, q.b, q.rho, q.m, q.sigma))
    return a + b * (rho * (k - m) + math.sqrt((k - m) ** 2 + sigma**2))


def test_atm_total_variance_is_the_svi_at_zero_log_moneyness_floored() -> None:
    q = SmileQuote(P0 + 30 * DAY, 2 * 10**16, 10**17, -3 * 10**17, 5 * 10**16, 2 * 10**17, P0)
    # root = isqrt(m^2 + sigma^2) = 206155281280883027 (WAD); a + floor(b (root WAD - rho m) / WAD^2)
    assert compute_atm_total_variance(q) == 2 * 10**16 + 22115528128088302  # pinned exact value
    rng = random.Random(18)
    for _ in range(200):
        a, b = rng.randint(-(10**17), 10**18), rng.randint(0, 10**18)
        rho, m, sigma = rng.randint(-WAD + 1, WAD - 1), rng.randint(-(10**18), 10**18), rng.randint(1, 10**18)
        q = SmileQuote(P0 + DAY, a, b, rho, m, sigma, P0)
        assert abs(compute_atm_total_variance(q) / WAD - svi_float(q, 0.0)) < 1e-12


def test_reference_iv_interpolates_total_variance_at_the_tenor() -> None:
    short, long_ = flat(7, 0.5), flat(60, 0.7)
    iv = compute_reference_iv([long_, short], P0, TENOR, HOUR)  # any order: the expiries are sorted
    w1, w2 = 0.25 * 7 / 365, 0.49 * 60 / 365
    expected = math.sqrt((w1 + (w2 - w1) * (30 - 7) / (60 - 7)) / (30 / 365))
    assert abs(iv / WAD - expected) < 1e-12
    assert iv == 676979975178330345  # pinned: exact rationals and one isqrt, the same on every machine
    # an expiry exactly at the tenor is used alone; the expiries beyond the nearest ones do not matter
    assert compute_reference_iv([short, flat(30, 0.6), long_], P0, TENOR, HOUR) == 600000000000000010
    assert compute_reference_iv([flat(1, 2.0), short, long_, flat(365, 0.1)], P0, TENOR, HOUR) == iv
    # every expiry on one side: the nearest one's own vol (flat extrapolation)
    assert compute_reference_iv([short, flat(2, 0.9)], P0, TENOR, HOUR) == 500000000000000027
    assert compute_reference_iv([flat(120, 0.1), flat(90, 0.8)], P0, TENOR, HOUR) == 800000000000000041


def test_only_live_smiles_written_by_the_point_count() -> None:
    short, long_ = flat(7, 0.5), flat(60, 0.7)
    expired = SmileQuote(P0, 10**18, 0, 0, 0, 1, P0 - 60)  # expires at the point itself: not live
    later = dataclasses.replace(flat(30, 3.0), time=P0 + 1)  # written after the point
    assert compute_reference_iv([short, long_, expired, later], P0, TENOR, HOUR) == compute_reference_iv(
        [short, long_], P0, TENOR, HOUR
    )


@pytest.mark.parametrize(
    ("smiles", "message"),
    [
        ([], f"no smile expiring after sampling point {P0}"),
        ([flat(7, 0.5, time=P0 - HOUR - 1), flat(60, 0.7)],
         f"no fresh smile at sampling point {P0}: expiry {P0 + 7 * DAY}'s is 3601 s old"),
        ([SmileQuote(P0 + 30 * DAY, -10**16, 10**16, 0, 0, 10**17, P0)], "ATM total variance -9000000000000000 <= 0"),
    ],
)  # fmt: skip
def test_a_reference_iv_that_cannot_be_taken_is_refused_naming_the_point(
    smiles: list[SmileQuote], message: str
) -> None:
    with pytest.raises(HistoryError, match=message) as info:
        compute_reference_iv(smiles, P0, TENOR, HOUR, index=4)
    assert info.value.field == "samples[4]"


def test_a_stale_smile_not_used_is_not_refused() -> None:
    stale_far = flat(365, 0.1, time=P0 - 10 * DAY)  # beyond the two around the tenor
    assert compute_reference_iv([flat(7, 0.5), flat(60, 0.7), stale_far], P0, TENOR, HOUR) == 676979975178330345


# --- the IV samples over chain updates, read in rounds --------------------------------------------------------


PER_HOUR = 9  # smile updates per hour


def chain_updates(seed: int, n_hours: int) -> tuple[list[Sample], list[SmileQuote]]:
    """Return index updates every hour and, after each, the smiles of the weekly expiries 1 to 9 weeks after the
    current week's start (each re-written every hour, as a feeder does), at irregular seconds inside the hour, in
    chain order (times never decrease)."""
    rng = random.Random(seed)
    price, vol = 40_000 * 10**8, 0.6
    index: list[Sample] = []
    smiles: list[SmileQuote] = []
    for h in range(n_hours):
        base = P0 + h * HOUR
        price = price * (10**6 + rng.randint(-20_000, 20_000)) // 10**6
        vol = min(3.0, max(0.1, vol * (1 + rng.uniform(-0.08, 0.08))))
        index.append(Sample(base + rng.choice((1, 10, 600)), price))
        at = index[-1].time + rng.choice((0, 1, 30))
        week = base // (7 * DAY) * (7 * DAY)
        for weeks in range(1, PER_HOUR + 1):  # expiries below and above the 30-day tenor
            expiry = week + weeks * 7 * DAY
            w = vol * vol * (expiry - at) / YEAR * (0.8 + weeks / 20)  # a term structure
            smiles.append(SmileQuote(expiry, round(w * WAD), 10**16, -2 * 10**17, 0, 10**17, at))
    return index, smiles


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**32), cuts=st.lists(st.integers(1, 199), max_size=5))
def test_a_track_with_smiles_read_in_rounds_equals_one_read(seed: int, cuts: list[int]) -> None:
    """The node reads index and smile logs in rounds (a checkpoint between them); any split gives the track of one
    read, whose states are those of sampling the whole history at once."""
    index, smiles = chain_updates(seed, 200)
    until = max(index[-1].time, smiles[-1].time)
    track = start_track("BTC")
    bounds = [0, *sorted(set(cuts)), len(index)]
    for lo, hi in itertools.pairwise(bounds):
        t = max(index[hi - 1].time, *(q.time for q in smiles[PER_HOUR * lo : PER_HOUR * hi]))  # the round's block time
        track = advance_track(POLICY, track, index[lo:hi], t, HOUR, smiles[PER_HOUR * lo : PER_HOUR * hi], TENOR)
        assert all(q.expiry > (track.next_point or 0) for q in track.smiles)  # the book keeps live expiries only
    whole = advance_track(POLICY, start_track("BTC"), index, until, HOUR, smiles, TENOR)
    assert track == whole
    first = -(-index[0].time // HOUR) * HOUR
    count = ((until - 1) // HOUR * HOUR - first) // HOUR + 1
    samples = compute_samples(POLICY, index, first, count, HOUR, IvSource(TENOR, (), tuple(smiles)))
    assert whole.state == compute_policy_state(POLICY, "BTC", samples)
    assert whole.state is not None and whole.state.iv == samples[-1].iv > 0
    assert POLICY.vol is not None and whole.state.vol_shift >= POLICY.vol.min_shift * RANGE_SCALE


def test_iv_samples_follow_the_smiles_and_refuse_a_stale_one() -> None:
    index = [Sample(P0 - 30 + h * HOUR, 100 * 10**8) for h in range(4)]
    # each hour a new expiry exactly at the tenor from the next point, written 20 s before it
    smiles = [flat(30, 0.5 + h / 10, point=P0 + h * HOUR, time=P0 - 20 + h * HOUR) for h in range(4)]
    samples = compute_samples(POLICY, index, P0, 4, HOUR, IvSource(TENOR, (), tuple(smiles)))
    assert [round(s.iv / WAD, 12) for s in samples] == [0.5, 0.6, 0.7, 0.8]
    assert [s.price for s in samples] == [100 * 10**8] * 4
    with pytest.raises(HistoryError, match=f"no fresh smile at sampling point {P0 + HOUR}: expiry {P0 + 30 * DAY}'s "
                                           "is 3620 s old") as info:  # fmt: skip
        compute_samples(POLICY, index, P0, 4, HOUR, IvSource(TENOR, (), tuple(smiles[:1])))
    assert info.value.index == 1


# --- the engine's per-underlying vol shift ----------------------------------------------------------------------


def test_effective_params_set_each_states_vol_shift() -> None:
    params = default_params()
    index = [Sample(P0 + h * HOUR, 100 * 10**8, 6 * 10**17 + h * 10**16) for h in range(6)]
    state = compute_policy_state(POLICY, "BTC", index)
    assert state is not None and state.vol_shift > 0
    effective = compute_effective_params(params, [state])
    assert effective.vol_shift_of("BTC") == state.vol_shift / RANGE_SCALE
    assert effective.vol_shift_of("ETH") == params.vol_shift  # no state: the document's constant
    assert effective.vol_shift_by_underlying == (("BTC", state.vol_shift / RANGE_SCALE),)
    no_shift = dataclasses.replace(state, vol_shift=0)  # a policy without [policy.vol] keeps the document's
    assert compute_effective_params(params, [no_shift]).vol_shift_by_underlying == ()


def test_vol_shift_by_underlying_in_a_document() -> None:
    text = default_params_text()
    plain = parse_params(text)
    assert plain.vol_shift_by_underlying == ()
    assert b"vol_shift_by_underlying" not in plain.canonical_bytes  # the golden documents keep their bytes
    table = text + "\n[vol.shift_by_underlying]\nBTC = 0.4\n"
    assert "[vol.shift_by_underlying]" not in text
    overridden = parse_params(table)
    assert overridden.vol_shift_of("BTC") == 0.4 and overridden.vol_shift_of("ETH") == plain.vol_shift
    assert overridden.params_hash != plain.params_hash
    with pytest.raises(ParamsError, match=r"vol\.shift_by_underlying\.btc: not an upper-case symbol"):
        parse_params(text + "\n[vol.shift_by_underlying]\nbtc = 0.4\n")
    with pytest.raises(ParamsError, match=r"vol\.shift_by_underlying\.BTC"):
        parse_params(text + "\n[vol.shift_by_underlying]\nBTC = 11\n")


def test_per_underlying_vol_shift_drives_kernel_and_reference_alike() -> None:
    """A vol shift on BTC only moves BTC options' risk rows; the kernel and the pure-Python reference agree bit for
    bit, and the same shift written as the constant gives the same rows as the per-underlying one."""
    from pmoracle.risk.margin import Book
    from pmoracle.risk.reference import reference_account, reference_cash, reference_row

    from .factories import make_market, random_instrument, random_portfolio

    params = default_params()
    rng = random.Random(18)
    market = make_market()
    instruments = sorted({random_instrument(rng, market) for _ in range(40)})
    portfolios = [random_portfolio(rng, market, instruments, 10, a) for a in range(30)]
    base = Book(market, params, portfolios)
    wide = dataclasses.replace(params, vol_shift_by_underlying=(("BTC", params.vol_shift * 3),))
    book = Book(market, wide, portfolios)
    table = book.arrays.table
    assert list(table.vol_shift) == [params.vol_shift * 3 if u == "BTC" else params.vol_shift
                                     for u in book.scenarios.underlyings]  # fmt: skip
    rows = [reference_row(table, book.scenarios, i) for i in range(len(book.arrays.instruments))]
    im = (wide.im_multiplier.numerator, wide.im_multiplier.denominator)
    for a in range(len(book)):
        held = portfolios[a].positions
        cash = reference_cash(portfolios[a].cash, [p.cost for p in held], [p.funding for p in held])
        ref = reference_account(rows, book.positions_of(a), book.scenarios, im, wide.im_min_buffer, cash)
        got = book.account_margin(a)
        assert (ref.maintenance_margin, ref.initial_margin) == (got.maintenance_margin, got.initial_margin)
    moved = {str(book.arrays.instruments[i]) for i in range(len(rows))
             if (book.arrays.r[i] != base.arrays.r[i]).any()}  # fmt: skip
    assert moved and all("BTC" in m for m in moved)  # only BTC's rows move, and some do
    constant = Book(market, dataclasses.replace(params, vol_shift=params.vol_shift * 3), portfolios)
    for i, inst in enumerate(book.arrays.instruments):
        if "BTC" in str(inst):
            assert (constant.arrays.r[i] == book.arrays.r[i]).all()  # the same float, the same bits
