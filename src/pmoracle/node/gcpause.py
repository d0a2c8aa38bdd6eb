"""Pause Python's cyclic garbage collector while the node builds and prices a big book.

A round at 100,000 or 1,000,000 accounts creates millions of small objects that live on (each account's
``Portfolio`` and ``Position``s, the decoded pages, the leaves). The collector counts every allocation, and each
time the long-lived generation grows by a quarter it walks all of it: most of a full read's and of the engine's
work at that size, for objects that hold no reference cycles (frozen dataclasses and tuples of ints and bytes,
freed by reference counting). ``gc_paused`` turns the collector off around such work; what the work leaves behind
is collected once, after the pause, by the collector's next ordinary run (``pmoracle bench book`` measures both,
docs/performance-devnet.md).

The collector's switch is process-global and the node pauses it from worker threads (a round's snapshot read and
engine, the background snapshot check), which may overlap: pauses nest and are counted under a lock, and the
collector comes back on when the last one ends, only if it was on when the first one began.
"""

from __future__ import annotations

import functools
import gc
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import ParamSpec, TypeVar

_P = ParamSpec("_P")
_R = TypeVar("_R")

_lock = threading.Lock()
_pauses = 0  # pauses in progress, in every thread
_resume = False  # whether the collector was on when the first pause in progress began


@contextmanager
def gc_paused() -> Iterator[None]:
    """Keep the cyclic garbage collector off for the block (nesting and overlapping across threads); restore it
    when the last pause in progress ends, also when the block raises."""
    global _pauses, _resume
    with _lock:
        if _pauses == 0:
            _resume = gc.isenabled()
            gc.disable()
        _pauses += 1
    try:
        yield
    finally:
        with _lock:
            _pauses -= 1
            if _pauses == 0 and _resume:
                gc.enable()


def with_gc_paused(fn: Callable[_P, _R]) -> Callable[_P, _R]:
    """Return ``fn`` run under :func:`gc_paused` (for the functions the node hands to worker threads)."""

    @functools.wraps(fn)
    def paused(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        with gc_paused():
            return fn(*args, **kwargs)

    return paused


def pauses_in_progress() -> int:
    """Return how many pauses are in progress (0: the collector is as the process set it)."""
    with _lock:
        return _pauses
