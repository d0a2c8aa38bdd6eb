"""The node's pause of the cyclic garbage collector: nesting, exceptions, overlapping threads."""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator

import pytest

from pmoracle.node.gcpause import gc_paused, pauses_in_progress, with_gc_paused


@pytest.fixture(autouse=True)
def collector_on() -> Iterator[None]:
    """Each test starts with the collector on and leaves it as the test session had it."""
    was = gc.isenabled()
    gc.enable()
    yield
    assert pauses_in_progress() == 0
    (gc.enable if was else gc.disable)()


def test_the_collector_is_off_inside_and_back_on_after() -> None:
    with gc_paused():
        assert not gc.isenabled()
        assert pauses_in_progress() == 1
    assert gc.isenabled()
    assert pauses_in_progress() == 0


def test_a_nested_pause_ending_leaves_the_outer_one_in_force() -> None:
    with gc_paused():
        with gc_paused():
            assert pauses_in_progress() == 2
        assert not gc.isenabled()
        assert pauses_in_progress() == 1
    assert gc.isenabled()


def test_a_block_that_raises_still_ends_its_pause() -> None:
    with pytest.raises(ValueError, match="inside"), gc_paused(), gc_paused():
        raise ValueError("inside")
    assert gc.isenabled()
    assert pauses_in_progress() == 0


def test_a_collector_the_process_turned_off_stays_off() -> None:
    gc.disable()
    with gc_paused():
        assert not gc.isenabled()
    assert not gc.isenabled()


def test_overlapping_pauses_in_two_threads_end_with_the_last() -> None:
    # A starts, B starts, A ends (the collector stays off for B), B ends (back on)
    a_in, b_in, a_out, release_b = (threading.Event() for _ in range(4))
    seen: dict[str, bool] = {}

    def a() -> None:
        with gc_paused():
            a_in.set()
            b_in.wait(10)
        a_out.set()

    def b() -> None:
        a_in.wait(10)
        with gc_paused():
            b_in.set()
            a_out.wait(10)
            seen["after A ended"] = gc.isenabled()
            release_b.wait(10)

    threads = [threading.Thread(target=a), threading.Thread(target=b)]
    for t in threads:
        t.start()
    a_out.wait(10)
    seen["main, B still paused"] = gc.isenabled()
    release_b.set()
    for t in threads:
        t.join(10)
    assert seen == {"after A ended": False, "main, B still paused": False}
    assert gc.isenabled()


def test_many_threads_pausing_at_once_leave_the_collector_on() -> None:
    start = threading.Barrier(8)
    states: list[bool] = []

    def work() -> None:
        start.wait(10)
        for _ in range(2_000):
            with gc_paused(), gc_paused():
                states.append(gc.isenabled())

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(states) == 16_000
    assert not any(states)  # never on inside a pause, whatever the other threads did
    assert gc.isenabled()


def test_with_gc_paused_runs_the_function_paused_and_returns_its_result() -> None:
    def read(block: int, *, scale: int) -> tuple[int, bool]:
        """Return a value and the collector's state."""
        return block * scale, gc.isenabled()

    paused = with_gc_paused(read)
    assert paused(3, scale=2) == (6, False)
    assert paused.__name__ == "read" and paused.__doc__ == read.__doc__
    assert gc.isenabled()
