"""The adaptive margin policy: determinism, the anti-procyclicality tools' guarantees, bad input, and its [policy]."""

from __future__ import annotations

import dataclasses
import itertools
import random
from fractions import Fraction

import pytest
from eth_utils import keccak
from hypothesis import given, settings
from hypothesis import strategies as st

from pmoracle.config.params import default_params, default_params_text
from pmoracle.risk.errors import ParamsError
from pmoracle.risk.params import (
    BufferParams,
    FloorParams,
    PolicyOverride,
    PolicyParams,
    VolPolicyParams,
    parse_params,
)
from pmoracle.risk.params import parse_policy_params as parse_policy
from pmoracle.risk.policy import (
    RANGE_SCALE,
    HistoryError,
    PolicyRound,
    PolicyState,
    PolicyStateError,
    PolicyTrack,
    Sample,
    advance_track,
    apply_range_step_cap,
    compute_base_range,
    compute_effective_params,
    compute_floor_range,
    compute_policy_hash,
    compute_policy_path,
    compute_policy_state,
    compute_range_step_bounds,
    compute_samples,
    compute_target_range,
    decode_policy_state,
    encode_policy_state,
    max_range,
    min_range,
    process_sample,
    start_policy,
    start_track,
)

DAY = 86400
T0 = 1_700_006_400  # a multiple of DAY
POLICY_TOML = """
[policy]
sample_interval_seconds = 86400
horizon_seconds = 86400
decay = "0.94"
sigmas = "5"
seed_vol = "0.6"
min_scan_range = "0.02"
max_scan_range = "0.6"
max_step_up = "0.1"
max_step_down = "0.05"

[policy.floor]
weight = "0.5"
lookback_samples = 90
block_samples = 10

[policy.buffer]
size = "0.25"
stress_ratio = "1.5"
slow_decay = "0.99"
rebuild_samples = 20

[policy.vol]
decay = "0.9"
sigmas = "3"
seed_vol = "1.5"
min_shift = "0.05"
max_shift = "0.9"
"""


def _parse(text: str) -> PolicyParams:
    policy = parse_policy(text)
    assert policy is not None
    return policy


FULL = _parse(POLICY_TOML)
MARGIN_TOML = POLICY_TOML.replace('max_step_down = "0.05"\n', 'max_step_down = "0.05"\nstep_cap_basis = "margin"\n')
MARGIN = _parse(MARGIN_TOML)  # FULL with the step cap on range x price
BARE = dataclasses.replace(FULL, max_step_up=None, max_step_down=None, floor=None, buffer=None, vol=None)
# The state hash after the seeded path of test_state_hash_is_pinned; a change is a change of the policy's rules.
# keccak256 of FULL's canonical bytes as written before step_cap_basis existed: a document without it keeps its hash.
PINNED_FULL_POLICY_HASH = "0x09cb311a1613989c4a5cb534e3f2b434b246cf294a9c39e8fc1a88a68fca5eed"
PINNED_HASH = "0xdfd6ece8e7a7bffb30f690763963469f3f08f6e4de3655cc03cec3acf4f127d8"


def make_samples(n: int, seed: int, iv: bool = True, spike_at: int | None = None) -> list[Sample]:
    """Return n daily samples of a seeded random walk (uniform moves up to 5% a day, 20% for 20 days from spike_at)
    and an implied-vol walk; integer arithmetic only, so the samples are the same on every platform."""
    rng = random.Random(seed)
    price, vol = 50_000 * 10**8, 6 * 10**17
    samples = []
    for i in range(n):
        samples.append(Sample(time=T0 + i * DAY, price=price, iv=vol if iv else 0))
        width = 200_000 if spike_at is not None and spike_at <= i < spike_at + 20 else 50_000  # parts per million
        price = max(1, price * (10**6 + rng.randint(-width, width)) // 10**6)
        vol = max(10**16, vol * (10**6 + rng.randint(-80_000, 80_000)) // 10**6)
    return samples


# --- determinism ---------------------------------------------------------------------------------------------


def test_state_hash_is_pinned() -> None:
    state = compute_policy_state(FULL, "BTC", make_samples(300, seed=1, spike_at=150))
    assert state is not None
    assert "0x" + state.state_hash.hex() == PINNED_HASH


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**32), cuts=st.lists(st.integers(1, 119), max_size=4))
def test_resuming_anywhere_gives_the_same_bits(seed: int, cuts: list[int]) -> None:
    """Fed in one go, in chunks, or through encoded checkpoints, the policy reaches the same state, bit for bit."""
    samples = make_samples(120, seed, spike_at=seed % 100)
    whole = compute_policy_path(FULL, "BTC", samples)
    state: PolicyState | None = None
    path: list[PolicyState] = []
    for lo, hi in zip([0, *sorted(set(cuts))], [*sorted(set(cuts)), len(samples)], strict=True):
        if state is not None:
            state = decode_policy_state(FULL, encode_policy_state(state))  # a node restarting from its checkpoint
        path += compute_policy_path(FULL, "BTC", samples[lo:hi], state)
        state = path[-1]
    assert path == whole
    assert [s.state_hash for s in path] == [s.state_hash for s in whole]


def test_recomputed_from_scratch_equals_incremental() -> None:
    samples = make_samples(200, seed=3, spike_at=80)
    state = start_policy(FULL, "ETH", samples[0])
    for sample in samples[1:]:
        state = process_sample(FULL, state, sample)
    assert compute_policy_state(FULL, "ETH", samples) == state
    assert decode_policy_state(FULL, state.canonical_bytes) == state


def test_the_state_binds_underlying_and_parameters() -> None:
    samples = make_samples(30, seed=4)
    btc = compute_policy_state(FULL, "BTC", samples)
    eth = compute_policy_state(FULL, "ETH", samples)
    other = compute_policy_state(dataclasses.replace(FULL, sigmas=Fraction(4)), "BTC", samples)
    assert btc is not None and eth is not None and other is not None
    assert len({btc.state_hash, eth.state_hash, other.state_hash}) == 3
    with pytest.raises(PolicyStateError, match="policy_hash"):
        decode_policy_state(dataclasses.replace(FULL, sigmas=Fraction(4)), btc.canonical_bytes)


@pytest.mark.parametrize(
    "mutate",
    [
        lambda b: b[:-32],  # truncated
        lambda b: b[:31] + b"\x02" + b[32:],  # version 2
        lambda b: b + b"\x00" * 32,  # trailing bytes: not the canonical encoding
    ],
    ids=["truncated", "version", "trailing"],
)
def test_a_damaged_checkpoint_is_refused(mutate: object) -> None:
    state = compute_policy_state(FULL, "BTC", make_samples(40, seed=5))
    assert state is not None
    with pytest.raises(PolicyStateError):
        decode_policy_state(FULL, mutate(state.canonical_bytes))  # type: ignore[operator]


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"scan_range": 10**9}, "checkpoint.scan_range"),
        ({"buffer_level": 250_000_001}, "checkpoint.buffer_level"),
        ({"vol_shift": 0}, "checkpoint.vol_shift"),
        ({"count": 0}, "checkpoint.count"),
        ({"block_maxima": (1,) * 10}, "checkpoint.block_maxima"),
    ],
)
def test_a_checkpoint_out_of_the_policys_bounds_is_refused(change: dict[str, object], field: str) -> None:
    state = compute_policy_state(FULL, "BTC", make_samples(40, seed=5))
    assert state is not None
    with pytest.raises(PolicyStateError) as info:
        decode_policy_state(FULL, encode_policy_state(dataclasses.replace(state, **change)))  # type: ignore[arg-type]
    assert info.value.field == field


# --- anti-procyclicality --------------------------------------------------------------------------------------


def paths() -> st.SearchStrategy[list[Sample]]:
    return st.builds(make_samples, st.integers(40, 160), st.integers(0, 2**32), st.just(True), st.integers(0, 100))


@settings(max_examples=40, deadline=None)
@given(samples=paths())
def test_step_cap_and_bounds_hold_exactly(samples: list[Sample]) -> None:
    path = compute_policy_path(FULL, "BTC", samples)
    assert FULL.max_step_up is not None and FULL.max_step_down is not None
    for before, after in itertools.pairwise(path):
        for old, new in ((before.scan_range, after.scan_range), (before.vol_shift, after.vol_shift)):
            assert new <= old * (1 + FULL.max_step_up)  # exact rationals: no rounding can cross the cap
            assert new >= old * (1 - FULL.max_step_down)
    for s in path:
        assert FULL.min_scan_range * RANGE_SCALE <= s.scan_range <= FULL.max_scan_range * RANGE_SCALE


@settings(max_examples=40, deadline=None)
@given(
    samples=paths(),
    bounds=st.sampled_from([("0.02", "0.6"), ("0.25", "0.6"), ("0.02", "0.3"), ("0.2", "0.3")]),
    up=st.sampled_from(["0.1", "0.02", None]),
    down=st.sampled_from(["0.05", "0.5", None]),
)
def test_margin_step_cap_and_bounds_hold_exactly(
    samples: list[Sample], bounds: tuple[str, str], up: str | None, down: str | None
) -> None:
    """With step_cap_basis = "margin" the one-unit margin range x price moves at most +up / -down per sample, unless
    the range sits on the bound that stopped it (the range bounds win), and the vol shift keeps its relative cap."""
    params = dataclasses.replace(
        MARGIN,
        min_scan_range=Fraction(bounds[0]),
        max_scan_range=Fraction(bounds[1]),
        max_step_up=None if up is None else Fraction(up),
        max_step_down=None if down is None else Fraction(down),
    )
    path = compute_policy_path(params, "BTC", samples)
    lo_bound, hi_bound = params.min_scan_range * RANGE_SCALE, params.max_scan_range * RANGE_SCALE
    for before, after in itertools.pairwise(path):
        assert lo_bound <= after.scan_range <= hi_bound
        old, new = before.scan_range * before.price, after.scan_range * after.price
        if params.max_step_up is not None:  # exact rationals: no rounding crosses the cap
            assert new <= old * (1 + params.max_step_up) or after.scan_range == min_range(params)
        if params.max_step_down is not None:
            assert new >= old * (1 - params.max_step_down) or after.scan_range == max_range(params)
        if params.max_step_up is None and params.max_step_down is None:
            assert after.scan_range == compute_target_range(params, after)
        if params.max_step_up is not None:  # the vol shift's cap stays relative to the shift
            assert after.vol_shift <= before.vol_shift * (1 + params.max_step_up)
        if params.max_step_down is not None:
            assert after.vol_shift >= before.vol_shift * (1 - params.max_step_down)


def test_margin_cap_holds_the_margin_where_the_range_cap_lets_it_rise_with_the_price() -> None:
    """A +50% price day under a steady target: the range cap keeps the range (the margin rises 50%), the margin cap
    cuts the range so the margin rises 10%; a -50% day: the margin falls 5%, the range bounds winning when they bind."""
    range_capped = dataclasses.replace(MARGIN, step_cap_basis="range")
    previous, target, p0 = 200_000_000, 200_000_000, 40_000 * 10**8
    assert apply_range_step_cap(range_capped, previous, p0, p0 * 3 // 2, target) == 200_000_000
    capped = apply_range_step_cap(MARGIN, previous, p0, p0 * 3 // 2, target)
    assert capped == 146_666_666  # floor(0.2 x 1.1 / 1.5 x 1e9)
    assert capped * p0 * 3 // 2 <= previous * p0 * 11 // 10 < (capped + 1) * p0 * 3 // 2
    assert apply_range_step_cap(MARGIN, previous, p0, p0 // 2, target) == 380_000_000  # 0.2 x 0.95 / 0.5
    assert apply_range_step_cap(MARGIN, previous, p0, p0 // 4, target) == max_range(MARGIN)  # 0.76 > 0.6
    assert apply_range_step_cap(MARGIN, previous, p0, p0 * 20, target) == min_range(MARGIN)  # 0.011 < 0.02
    # a target inside the margin's band is applied as it is, as with the range basis
    assert apply_range_step_cap(MARGIN, previous, p0, p0, 210_000_000) == 210_000_000
    # crossing bounds (an interval under one unit once rounded inwards): the cap on rises wins
    tiny = dataclasses.replace(MARGIN, min_scan_range=Fraction(1, 10**9), max_step_up=Fraction(1, 10**4),
                               max_step_down=Fraction(1, 10**4))  # fmt: skip
    lo, hi = compute_range_step_bounds(tiny, 3, 7, 10)  # 2.1 x (1 -/+ 1e-4): [ceil 2.09979, floor 2.10021] = [3, 2]
    assert (lo, hi) == (3, 2)
    assert apply_range_step_cap(tiny, 3, 7, 10, 5) == 2


@settings(max_examples=40, deadline=None)
@given(samples=paths(), capped=st.booleans(), basis=st.sampled_from(["range", "margin"]))
def test_floor_never_lets_the_range_below_the_stressed_level(samples: list[Sample], capped: bool, basis: str) -> None:
    params = dataclasses.replace(FULL, step_cap_basis=basis)
    if not capped:
        params = dataclasses.replace(params, max_step_up=None, max_step_down=None)
    path = compute_policy_path(params, "BTC", samples)
    for before, after in itertools.pairwise(path):
        floor = min(compute_floor_range(params, after), max_range(params))
        _, step_hi = compute_range_step_bounds(params, before.scan_range, before.price, after.price)
        # only the cap on rises can hold the range under the floor, and then the range rises as fast as allowed
        assert after.scan_range >= (floor if step_hi is None else min(floor, step_hi))
    if not capped:
        assert all(s.scan_range >= min(compute_floor_range(params, s), max_range(params)) for s in path)


def test_floor_covers_the_lookback_and_then_lets_go() -> None:
    """After a spike the floor holds the range up for the lookback (90 samples), then the spike leaves it."""
    params = dataclasses.replace(FULL, buffer=None, max_step_up=None, max_step_down=None)
    samples = make_samples(260, seed=8, spike_at=50)
    path = compute_policy_path(params, "BTC", samples)
    spike_floor = compute_floor_range(params, path[75])
    assert spike_floor > compute_floor_range(params, path[45])
    assert all(compute_floor_range(params, s) >= spike_floor for s in path[75:160])  # spike ended at 70: held
    assert compute_floor_range(params, path[-1]) < spike_floor  # outside the lookback
    assert len(path[-1].block_maxima) == params.floor.blocks  # type: ignore[union-attr]


@settings(max_examples=40, deadline=None)
@given(samples=paths())
def test_buffer_is_released_only_in_stress(samples: list[Sample]) -> None:
    assert FULL.buffer is not None
    size = FULL.buffer.size * RANGE_SCALE
    path = compute_policy_path(FULL, "BTC", samples)
    assert path[0].buffer_level == size
    for before, after in itertools.pairwise(path):
        if after.buffer_level < before.buffer_level:
            assert after.stressed and after.buffer_level == 0
        if after.stressed:
            assert after.buffer_level == 0
        else:  # rebuilt by at most size / rebuild_samples (rounded up) per sample
            assert after.buffer_level - before.buffer_level <= -(-size // FULL.buffer.rebuild_samples)
        assert after.buffer_level <= size


def test_buffer_softens_the_rise_at_the_onset_of_stress() -> None:
    samples = make_samples(120, seed=11, iv=False, spike_at=60)
    plain = compute_policy_path(BARE, "BTC", samples)
    buffered = compute_policy_path(dataclasses.replace(BARE, buffer=FULL.buffer), "BTC", samples)
    onset = next(i for i, s in enumerate(buffered) if s.stressed)
    assert 60 <= onset < 80
    rise = [after.scan_range / before.scan_range for before, after in itertools.pairwise(plain)]
    rise_buffered = [after.scan_range / before.scan_range for before, after in itertools.pairwise(buffered)]
    assert rise_buffered[onset - 1] < rise[onset - 1]
    assert buffered[onset].scan_range == compute_base_range(BARE, buffered[onset].variance)  # released in full
    assert max(rise_buffered[50:90]) < max(rise[50:90])


def test_without_tools_the_range_is_sigmas_times_the_ewma_vol() -> None:
    path = compute_policy_path(BARE, "BTC", make_samples(50, seed=2, iv=False))
    assert [s.scan_range for s in path] == [
        min(max(compute_base_range(BARE, s.variance), 20_000_000), 600_000_000) for s in path
    ]
    assert all(s.vol_shift == 0 and s.block_maxima == () and s.buffer_level == 0 for s in path)


def test_vol_shift_follows_implied_vol_changes() -> None:
    assert FULL.vol is not None
    calm = [Sample(T0 + i * DAY, 50_000 * 10**8, 6 * 10**17) for i in range(40)]
    jumpy = [Sample(s.time, s.price, s.iv * (12 if i % 2 else 10) // 10) for i, s in enumerate(calm)]
    calm_state = compute_policy_state(FULL, "BTC", calm)
    jumpy_state = compute_policy_state(FULL, "BTC", jumpy)
    assert calm_state is not None and jumpy_state is not None
    assert calm_state.vol_shift == FULL.vol.min_shift * RANGE_SCALE  # no IV change: the EWMA decays to the floor
    assert jumpy_state.vol_shift > 4 * calm_state.vol_shift


def test_samples_are_the_last_update_at_or_before_each_point() -> None:
    updates = [
        Sample(T0 - 50, 100, 1),
        Sample(T0, 200, 2),  # exactly on the point: it counts
        Sample(T0 + DAY - 1, 300, 3),
        Sample(T0 + DAY + 1, 400, 4),  # after the point: the next one
        Sample(T0 + DAY + 5, 500, 5),
    ]
    assert compute_samples(FULL, updates, T0, 3, max_age_seconds=DAY) == [
        Sample(T0, 200, 2),
        Sample(T0 + DAY, 300, 3),
        Sample(T0 + 2 * DAY, 500, 5),
    ]
    with pytest.raises(HistoryError, match="the last update is 86395 s old") as info:
        compute_samples(FULL, updates, T0, 3, max_age_seconds=DAY - 10)
    assert info.value.index == 2
    with pytest.raises(HistoryError, match="no update yet"):
        compute_samples(FULL, updates, T0 - DAY, 1, max_age_seconds=DAY)
    with pytest.raises(HistoryError, match="precedes"):
        compute_samples(FULL, [updates[1], updates[0]], T0, 1, max_age_seconds=DAY)
    with pytest.raises(HistoryError, match="not a sampling point"):
        compute_samples(FULL, updates, T0 + 1, 1, max_age_seconds=DAY)


# --- bad input ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"time": T0 + 3 * DAY}, "leaves a gap after"),
        ({"time": T0 + DAY}, "does not follow the previous sample's time"),
        ({"time": T0}, "does not follow the previous sample's time"),
        ({"price": 0}, "price 0 is not positive"),
        ({"price": -5}, "price -5 is not positive"),
        ({"iv": 0}, "the policy needs an implied vol"),
    ],
)
def test_a_sample_that_cannot_follow_is_refused_naming_it(change: dict[str, int], message: str) -> None:
    samples = make_samples(3, seed=1)
    bad = dataclasses.replace(samples[2], **change)
    state = compute_policy_state(FULL, "BTC", samples[:2])
    assert state is not None
    with pytest.raises(HistoryError, match=message) as info:
        process_sample(FULL, state, bad)
    assert info.value.index == 2 and info.value.field == "samples[2]"


def test_first_sample_must_sit_on_a_sampling_point() -> None:
    with pytest.raises(HistoryError, match="not a sampling point"):
        start_policy(FULL, "BTC", Sample(T0 + 1, 10**8, 10**17))
    with pytest.raises(HistoryError, match="no implied vol"):
        start_policy(BARE, "BTC", Sample(T0, 10**8, 10**17))


# --- the [policy] section -------------------------------------------------------------------------------------


def test_documents_without_policy_keep_their_hash() -> None:
    """The golden vectors pin these hashes too; here: the policy field is absent from the canonical bytes."""
    params = default_params()
    assert params.policy is None
    assert b"policy" not in params.canonical_bytes
    with_policy = parse_params(default_params_text() + POLICY_TOML)
    assert with_policy.policy == FULL
    assert with_policy.params_hash != params.params_hash
    assert dataclasses.replace(with_policy, policy=None).params_hash == params.params_hash


def test_step_cap_basis_range_keeps_the_bytes_and_margin_is_hashed() -> None:
    """Without the key or with "range", a policy has the bytes and hashes it had before the key existed; "margin" is
    part of the canonical bytes (of the policy and of the whole document)."""
    explicit = _parse(MARGIN_TOML.replace('"margin"', '"range"'))
    assert explicit == FULL and explicit.step_cap_basis == "range"
    assert explicit.canonical_bytes == FULL.canonical_bytes and b"step_cap_basis" not in FULL.canonical_bytes
    # the bytes of the policy as they were before the key existed (FULL's JSON, recomputed field by field)
    assert FULL.policy_hash == keccak(FULL.canonical_bytes) == bytes.fromhex(PINNED_FULL_POLICY_HASH[2:])
    assert MARGIN.step_cap_basis == "margin" and b'"step_cap_basis":"margin"' in MARGIN.canonical_bytes
    assert MARGIN.policy_hash != FULL.policy_hash
    document = parse_params(default_params_text() + POLICY_TOML)
    assert parse_params(default_params_text() + MARGIN_TOML.replace('"margin"', '"range"')) == document
    assert parse_params(default_params_text() + MARGIN_TOML).params_hash != document.params_hash


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            MARGIN_TOML.replace('"margin"', '"price"'),
            "policy.step_cap_basis: expected one of range, margin, got 'price'",
        ),
        (MARGIN_TOML.replace('"margin"', "1"), "policy.step_cap_basis: expected one of range, margin, got 1"),
        (
            MARGIN_TOML.replace('max_step_up = "0.1"\n', "").replace('max_step_down = "0.05"\n', ""),
            'policy.step_cap_basis: "margin" needs policy.max_step_up or policy.max_step_down',
        ),
    ],
)
def test_a_bad_step_cap_basis_is_refused_naming_it(text: str, message: str) -> None:
    with pytest.raises(ParamsError) as info:
        parse_policy(text)
    assert message in info.value.problems


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ('decay = "0.94"', 'decay = "0.95"'),
        ("lookback_samples = 90", "lookback_samples = 100"),
        ('size = "0.25"', 'size = "0.2"'),
        ('max_step_down = "0.05"\n', ""),
        ('min_shift = "0.05"', 'min_shift = "0.06"'),
    ],
)
def test_every_policy_value_is_hashed(old: str, new: str) -> None:
    changed = parse_policy(POLICY_TOML.replace(old, new))
    assert changed is not None and changed.policy_hash != FULL.policy_hash
    assert parse_params(default_params_text() + POLICY_TOML.replace(old, new)).params_hash != (
        parse_params(default_params_text() + POLICY_TOML).params_hash
    )


def test_policy_section_reports_every_problem() -> None:
    text = (
        POLICY_TOML.replace('decay = "0.94"', 'decay = "1"')
        .replace('max_scan_range = "0.6"', 'max_scan_range = "0.01"')
        .replace("lookback_samples = 90", "lookback_samples = 95")
        .replace('stress_ratio = "1.5"', 'stress_ratio = "1"')
        .replace("[policy.vol]", "colour = 3\n[policy.vol]")
        .replace('min_shift = "0.05"', 'min_shift = "0"')
    )
    with pytest.raises(ParamsError) as info:
        parse_policy(text)
    problems = "\n".join(info.value.problems)
    for expected in (
        "policy.decay: 1 must lie strictly between 0 and 1",
        "policy.max_scan_range: 1/100 is below policy.min_scan_range 1/50",
        "policy.floor.lookback_samples: 95 is not a multiple of block_samples 10",
        "policy.buffer.stress_ratio: must exceed 1",
        "policy.buffer.colour: unknown field",
        "policy.vol.min_shift: '0' is outside [1/1000, 99/100]",  # a capped shift at 0 could never rise again
    ):
        assert expected in problems
    with pytest.raises(ParamsError, match=r"policy\.buffer\.colour: unknown field"):
        parse_params(default_params_text() + text)


def test_optional_tools_parse_to_none_and_a_document_without_policy_has_none() -> None:
    minimal = POLICY_TOML.split("[policy.floor]")[0].replace('max_step_up = "0.1"\n', "")
    policy = parse_policy(minimal)
    assert policy == dataclasses.replace(FULL, max_step_up=None, floor=None, buffer=None, vol=None)
    assert parse_policy(default_params_text()) is None
    assert isinstance(FULL, PolicyParams)
    assert FULL.floor == FloorParams(Fraction(1, 2), 90, 10)
    assert FULL.buffer == BufferParams(Fraction(1, 4), Fraction(3, 2), Fraction(99, 100), 20)
    assert FULL.vol == VolPolicyParams(Fraction(9, 10), Fraction(3), Fraction(3, 2), Fraction(1, 20), Fraction(9, 10))


# --- per-underlying overrides ---------------------------------------------------------------------------------

OVERRIDE_TOML = (
    POLICY_TOML
    + """
[policy.underlying.ETH]
sigmas = "4"
min_scan_range = "0.05"
max_step_up = "0.2"
"""
)
OVERRIDDEN = _parse(OVERRIDE_TOML)
ETH_EFFECTIVE = dataclasses.replace(
    FULL, sigmas=Fraction(4), min_scan_range=Fraction(1, 20), max_step_up=Fraction(1, 5)
)


def test_an_override_sets_its_fields_for_its_underlying_only() -> None:
    assert OVERRIDDEN.overrides == (
        PolicyOverride("ETH", sigmas=Fraction(4), min_scan_range=Fraction(1, 20), max_step_up=Fraction(1, 5)),
    )
    assert OVERRIDDEN.for_underlying("ETH") == ETH_EFFECTIVE
    assert OVERRIDDEN.for_underlying("BTC") == FULL  # the section itself, without its override tables
    assert FULL.for_underlying("ETH") is FULL  # no overrides: every underlying uses the section
    # the tables are part of the document's bytes and hash; a document without them keeps both (PINNED_FULL_...)
    assert b'"overrides"' in OVERRIDDEN.canonical_bytes and b"overrides" not in FULL.canonical_bytes
    assert OVERRIDDEN.policy_hash != FULL.policy_hash
    assert parse_params(default_params_text() + OVERRIDE_TOML).params_hash != (
        parse_params(default_params_text() + POLICY_TOML).params_hash
    )


def test_the_state_machine_applies_each_underlyings_effective_parameters() -> None:
    samples = make_samples(120, seed=12, spike_at=60)
    eth = compute_policy_path(OVERRIDDEN, "ETH", samples)
    btc = compute_policy_path(OVERRIDDEN, "BTC", samples)
    assert eth == compute_policy_path(ETH_EFFECTIVE, "ETH", samples)
    assert btc == compute_policy_path(FULL, "BTC", samples)
    assert eth[-1].policy_hash == ETH_EFFECTIVE.policy_hash != btc[-1].policy_hash == FULL.policy_hash
    assert [s.scan_range for s in eth] != [s.scan_range for s in compute_policy_path(FULL, "ETH", samples)]
    assert min(s.scan_range for s in eth) >= 50_000_000  # ETH's own minimum
    # a checkpoint is read under its underlying's effective parameters, and refused under another document's
    assert decode_policy_state(OVERRIDDEN, eth[-1].canonical_bytes) == eth[-1]
    assert decode_policy_state(OVERRIDDEN, btc[-1].canonical_bytes) == btc[-1]
    with pytest.raises(PolicyStateError, match="policy_hash"):
        decode_policy_state(FULL, eth[-1].canonical_bytes)
    # a track over feed updates (the node's path) applies them too
    track = advance_track(OVERRIDDEN, start_track("ETH"), samples[:30], samples[29].time + 1, DAY)
    assert track.state == eth[29]


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ('[policy.underlying.ETH]\ndecay = "0.9"\n', "policy.underlying.ETH.decay: unknown field (overridable: "),
        ('[policy.underlying.eth]\nsigmas = "4"\n', "policy.underlying.eth: not an upper-case underlying symbol"),
        ("[policy.underlying.ETH]\n", "policy.underlying.ETH: expected a table of overrides"),
        ('[policy.underlying.ETH]\nsigmas = "25"\n', "policy.underlying.ETH.sigmas: '25' is outside [1/10, 20]"),
        (
            '[policy.underlying.ETH]\nmax_scan_range = "0.01"\n',
            "policy.underlying.ETH.max_scan_range: 1/100 is below the underlying's min_scan_range 1/50",
        ),
        ("[policy]\nunderlying = 3\n", "policy.underlying: expected a table of [policy.underlying.SYMBOL] tables"),
    ],
    ids=["field", "symbol", "empty", "bounds", "min-max", "not-a-table"],
)
def test_a_bad_override_is_refused_naming_it(table: str, message: str) -> None:
    text = POLICY_TOML.replace("[policy]\n", table) if table.startswith("[policy]\n") else POLICY_TOML + table
    with pytest.raises(ParamsError) as info:
        parse_policy(text)
    assert any(p.startswith(message) for p in info.value.problems), info.value.problems
    with pytest.raises(ParamsError, match=message.split(":")[0].replace(".", r"\.")):
        parse_params(default_params_text() + text)


# --- the policy of a round: tracks over feed updates, the states' hash, the effective parameters ---------------

NOVOL = dataclasses.replace(FULL, vol=None)  # the node samples the on-chain index only
# compute_policy_hash of the BTC and ETH states of test_policy_hash_is_pinned; a change is a change of the hash rule.
PINNED_POLICY_HASH = "0xd2a00373a36fad110908fb1a334a3d4631a3d4b0e9c96d780caa8d7f90716cf4"


def feed_updates(seed: int, n: int, start: int = T0 - 5 * 3600) -> list[Sample]:
    """Return n index updates at irregular times (a few hours apart, sometimes in the same second), chain order."""
    rng = random.Random(seed)
    time, price, out = start, 40_000 * 10**8, []
    for _ in range(n):
        time += rng.choice((0, 1, 600, 3600, 7200, 5 * 3600))
        price = max(1, price * (10**6 + rng.randint(-60_000, 60_000)) // 10**6)
        out.append(Sample(time=time, price=price))
    return out


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**32), cuts=st.lists(st.integers(1, 299), max_size=6))
def test_a_track_read_in_rounds_equals_one_read(seed: int, cuts: list[int]) -> None:
    """Rounds at any update, each reading the updates since the previous one, reach the state of one read at the
    end and of sampling the whole history at once (every node and the dispute tool derive the same bits)."""
    params = dataclasses.replace(NOVOL, sample_interval_seconds=3600)
    updates = feed_updates(seed, 300)
    until = updates[-1].time
    track = start_track("BTC")
    for lo, hi in zip([0, *sorted(set(cuts))], [*sorted(set(cuts)), len(updates)], strict=True):
        track = advance_track(params, track, updates[lo:hi], updates[hi - 1].time, max_age_seconds=6 * 3600)
    whole = advance_track(params, start_track("BTC"), updates, until, max_age_seconds=6 * 3600)
    assert track == whole
    first = -(-updates[0].time // 3600) * 3600
    samples = compute_samples(params, updates, first, ((until - 1) // 3600 * 3600 - first) // 3600 + 1, 6 * 3600)
    assert whole.state == compute_policy_state(params, "BTC", samples)
    assert whole.next_point == samples[-1].time + 3600 and whole.last_update == updates[-1]


def test_a_track_before_its_first_point_has_no_state() -> None:
    updates = [Sample(T0 + 10, 100 * 10**8), Sample(T0 + 20, 101 * 10**8)]
    track = advance_track(NOVOL, start_track("ETH"), updates, T0 + 30, max_age_seconds=DAY)
    assert track == PolicyTrack("ETH", T0 + DAY, updates[-1], None)  # the first point is the next multiple
    assert advance_track(NOVOL, start_track("ETH"), [], T0, max_age_seconds=DAY) == start_track("ETH")
    # a point is sampled once the chain's time has passed it: a later block may still carry its timestamp
    assert advance_track(NOVOL, track, [], T0 + DAY, max_age_seconds=DAY) == track
    later = advance_track(NOVOL, track, [], T0 + DAY + 1, max_age_seconds=DAY)
    assert later.state is not None and later.state.price == 101 * 10**8 and later.next_point == T0 + 2 * DAY
    with pytest.raises(HistoryError, match="after the round's time"):
        advance_track(NOVOL, track, [Sample(T0 + 99, 1)], T0 + 50, max_age_seconds=DAY)
    with pytest.raises(HistoryError, match=f"no fresh index at sampling point {T0 + 2 * DAY}"):
        advance_track(NOVOL, later, [], T0 + 2 * DAY + 1, max_age_seconds=DAY - 1)


def round_states() -> tuple[PolicyState, PolicyState]:
    btc = compute_policy_state(NOVOL, "BTC", make_samples(60, seed=7, iv=False, spike_at=30))
    eth = compute_policy_state(NOVOL, "ETH", make_samples(40, seed=8, iv=False))
    assert btc is not None and eth is not None
    return btc, eth


def test_policy_hash_is_pinned_and_in_symbol_order() -> None:
    btc, eth = round_states()
    digest = compute_policy_hash([eth, btc])
    assert digest == compute_policy_hash([btc, eth]) == keccak(btc.canonical_bytes + eth.canonical_bytes)
    assert "0x" + digest.hex() == PINNED_POLICY_HASH
    assert PolicyRound(9, (btc, eth)).policy_hash == digest
    assert compute_policy_hash([]) == keccak(b"")
    assert compute_policy_hash([btc]) != digest
    with pytest.raises(PolicyStateError, match="two states of BTC"):
        compute_policy_hash([btc, eth, btc])


def test_effective_params_take_each_states_range_exactly() -> None:
    params = default_params()
    btc, eth = round_states()
    effective = compute_effective_params(params, [btc, eth])
    assert effective.scan_range_of("BTC") == btc.scan_range / RANGE_SCALE
    assert effective.scan_range_of("ETH") == eth.scan_range / RANGE_SCALE
    assert effective.scan_range_of("SOL") == params.scan_range  # an underlying without a state keeps the document's
    assert dataclasses.replace(effective, scan_range_by_underlying=params.scan_range_by_underlying) == params
    assert compute_effective_params(params, [eth, btc]) == effective  # deterministic in any order
    assert compute_effective_params(params, []) == params
    assert effective.vol_shift_by_underlying == ()  # no [policy.vol]: the document's vol shift stays
    shifted = compute_effective_params(params, [dataclasses.replace(btc, vol_shift=5)])
    assert shifted.vol_shift_of("BTC") == 5 / RANGE_SCALE and shifted.vol_shift_of("ETH") == params.vol_shift


def test_effective_params_drive_kernel_and_reference_alike() -> None:
    """The engine under the policy's ranges agrees with the pure-Python reference bit for bit, and the ranges bite."""
    from pmoracle.risk.margin import Book
    from pmoracle.risk.reference import reference_account, reference_cash, reference_row

    from .factories import folded_cash, make_market, random_instrument, random_portfolio

    btc, eth = round_states()
    wide = dataclasses.replace(btc, scan_range=max_range(NOVOL))
    params = default_params()
    rng = random.Random(18)
    market = make_market()
    instruments = sorted({random_instrument(rng, market) for _ in range(40)})
    portfolios = [random_portfolio(rng, market, instruments, 10, a) for a in range(40)]
    margins = []
    for states in ([btc, eth], [wide, eth]):
        effective = compute_effective_params(params, states)
        book = Book(market, effective, portfolios)
        rows = [reference_row(book.arrays.table, book.scenarios, i) for i in range(len(book.arrays.instruments))]
        im = (effective.im_multiplier.numerator, effective.im_multiplier.denominator)
        for a in range(len(book)):
            got = book.account_margin(a)
            held = portfolios[a].positions
            cash = reference_cash(portfolios[a].cash, [p.cost for p in held], [p.funding for p in held])
            assert cash == folded_cash(portfolios[a])
            ref = reference_account(rows, book.positions_of(a), book.scenarios, im, effective.im_min_buffer, cash)
            assert (ref.maintenance_margin, ref.initial_margin) == (got.maintenance_margin, got.initial_margin)
        margins.append(sum(book.account_margin(a).maintenance_margin for a in range(len(book))))
    assert margins[1] > margins[0]  # a wider BTC range asks for more margin


def test_a_policy_needs_ranges_as_fractions_of_the_price() -> None:
    text = (
        default_params_text()
        .replace('reference = "fraction"', 'reference = "std"')
        .replace("scan_range = 0.16", "scan_range = 3")
    )
    parse_params(text)  # the document alone is valid
    with pytest.raises(ParamsError, match=r"""policy: needs price\.reference = "fraction", got 'std'"""):
        parse_params(text + POLICY_TOML)
