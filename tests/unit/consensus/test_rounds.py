"""Rounds: anchors, readiness and the deterministic transmission schedule."""

from __future__ import annotations

from collections import Counter

import pytest

from pmoracle.consensus.rounds import (
    compute_latest_ready_anchor,
    compute_round_key,
    compute_transmission_schedule,
    compute_transmit_delay,
    get_schedule_position,
    is_anchor_block,
    is_round_ready,
)
from pmoracle.errors import InputError
from tests.unit.consensus.factories import make_committee


def test_anchor_blocks() -> None:
    assert [b for b in range(35) if is_anchor_block(b, 10)] == [0, 10, 20, 30]


def test_round_ready_once_buried() -> None:
    assert not is_round_ready(100, 101, 2)
    assert is_round_ready(100, 102, 2)
    assert is_round_ready(100, 100, 0)


def test_latest_ready_anchor() -> None:
    committee = make_committee(4)  # period 10, depth 2
    assert compute_latest_ready_anchor(1, committee) is None
    assert compute_latest_ready_anchor(2, committee) == 0
    assert compute_latest_ready_anchor(21, committee) == 10
    assert compute_latest_ready_anchor(22, committee) == 20


def test_round_key_checks_inputs() -> None:
    assert compute_round_key(b"\x01" * 32, 10) == (b"\x01" * 32, 10)
    with pytest.raises(InputError) as info:
        compute_round_key(b"\x01" * 31, 10)
    assert info.value.field == "config_digest"


@pytest.mark.parametrize("n", [1, 4, 7, 16])
def test_schedule_is_a_deterministic_permutation(n: int) -> None:
    committee = make_committee(n)
    key = (committee.digest(), 40)
    schedule = compute_transmission_schedule(key, committee)
    assert sorted(schedule) == sorted(committee.members)
    assert schedule == compute_transmission_schedule(key, committee)


def test_schedule_changes_with_round_and_spreads_first_position() -> None:
    committee = make_committee(4)
    firsts = Counter(compute_transmission_schedule((committee.digest(), 10 * b), committee)[0] for b in range(400))
    # every member leads about a quarter of the rounds (expected 100 each; 60..140 is > 8 sigma)
    assert set(firsts) == set(committee.members)
    assert all(60 <= count <= 140 for count in firsts.values())


def test_transmit_delay() -> None:
    committee = make_committee(7)
    schedule = compute_transmission_schedule((committee.digest(), 10), committee)
    positions = [get_schedule_position(schedule, m) for m in committee.members]
    assert sorted(p for p in positions if p is not None) == list(range(7))
    assert get_schedule_position(schedule, b"\xff" * 20) is None
    assert compute_transmit_delay(0, 5.0) == 0
    assert compute_transmit_delay(3, 5.0) == 15.0
    with pytest.raises(InputError):
        compute_transmit_delay(-1, 5.0)
