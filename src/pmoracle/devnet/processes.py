"""Child processes of a devnet run (anvil, nodes), each in its own process group, all ended together.

Every child is started by :func:`spawn`: in a new session (its own process group, so that a signal to the group
reaches whatever it forks), with ``PR_SET_PDEATHSIG`` set to SIGKILL where the platform has it (the kernel kills
the child if the driver dies without cleaning up, e.g. on SIGKILL), and recorded in this process's registry.
:func:`terminate` ends process groups the way the devnet always does: SIGTERM, then SIGKILL after a grace period,
then reaps them.

:func:`supervise` wraps a whole run (building and seeding included): SIGTERM and SIGINT raise
:class:`StopRequested` in the main thread wherever it is (an RPC to anvil, a sleep), the ``with`` block unwinds,
and on the way out every child still registered is terminated, so a run stopped in any phase leaves no process.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager, suppress
from types import FrameType
from typing import Any

GRACE_S = 1.5  # SIGTERM -> SIGKILL: a node flushes nothing it needs on exit (slashing protection is durable)
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
_PR_SET_PDEATHSIG = 1

_children: list[subprocess.Popen[Any]] = []
_children_lock = threading.Lock()


class StopRequested(BaseException):
    """Raised in the main thread by :func:`supervise` when the run receives SIGTERM or SIGINT."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"stopped by {signal.Signals(signum).name}")
        self.signum = signum


def _load_prctl() -> Any:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl
    except (OSError, AttributeError):
        return None


_prctl = _load_prctl()


def _die_with_parent() -> None:  # runs in the child between fork and exec: no allocation-heavy work
    _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def spawn(args: Sequence[str], **popen_kwargs: Any) -> subprocess.Popen[Any]:
    """Start ``args`` in its own process group, killed with the driver, and register it for :func:`supervise`.

    Args:
        args: the command line.
        popen_kwargs: passed to :class:`subprocess.Popen` (``start_new_session`` and ``preexec_fn`` are set here).

    Returns:
        The started process; its pid is also its process group id.

    Errors:
        OSError when the command cannot be started.
    """
    # PR_SET_PDEATHSIG fires when the *thread* that forked exits: only a child of the main thread gets it, so a
    # process started from a worker thread is not killed when that thread ends.
    pdeathsig = _prctl is not None and threading.current_thread() is threading.main_thread()
    process = subprocess.Popen(
        list(args), start_new_session=True, preexec_fn=_die_with_parent if pdeathsig else None, **popen_kwargs
    )
    with _children_lock:
        _children[:] = [child for child in _children if child.returncode is None]
        _children.append(process)
    return process


def children() -> list[subprocess.Popen[Any]]:
    """Return the registered children not reaped yet."""
    with _children_lock:
        return [child for child in _children if child.returncode is None]


def signal_group(process: subprocess.Popen[Any], sig: int) -> None:
    """Send ``sig`` to the process group of ``process`` unless it was reaped already."""
    if process.poll() is not None:  # reaped: its group id may belong to someone else by now
        return
    with suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, sig)


def terminate(processes: Iterable[subprocess.Popen[Any]], *, grace: float = GRACE_S) -> None:
    """End each process's group: SIGTERM, SIGKILL to those still there after ``grace`` seconds; reap them all."""
    pending = [process for process in processes if process.poll() is None]
    for process in pending:
        signal_group(process, signal.SIGTERM)
    deadline = time.monotonic() + grace
    for process in pending:
        try:
            process.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            signal_group(process, signal.SIGKILL)
    for process in pending:
        process.wait()


@contextmanager
def supervise(*, grace: float = GRACE_S) -> Iterator[None]:
    """Run a ``with`` block whose SIGTERM/SIGINT raise :class:`StopRequested`; on exit end every registered child.

    Only the first signal raises (later ones, during the clean-up, are ignored). Must be entered in the main thread.

    Errors:
        StopRequested (from inside the block) on SIGTERM or SIGINT; ValueError outside the main thread.
    """
    stopping = False

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        if stopping:
            return
        stopping = True
        raise StopRequested(signum)

    previous = {sig: signal.signal(sig, on_signal) for sig in STOP_SIGNALS}
    try:
        yield
    finally:
        stopping = True
        try:
            terminate(children(), grace=grace)
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
