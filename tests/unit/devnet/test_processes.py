"""Child processes of a devnet run end together: whole process groups, SIGKILL after the grace, with the driver."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from pmoracle.devnet.processes import StopRequested, children, spawn, supervise, terminate
from tests.procscan import marked_pids, new_mark, wait_until_gone

# a child that starts a grandchild in its own process group, says so, and sleeps
PARENT_OF_ONE = (
    "import subprocess, sys, time; subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); "
    "print('ready', flush=True); time.sleep(60)"
)
# a deadline, not a timing: the scans return as soon as the processes are gone (a loaded CI machine is slow)
GONE_WITHIN_S = 20.0
DEAF = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('ready', flush=True); time.sleep(60)"


def _spawn_ready(code: str, env: dict[str, str]) -> subprocess.Popen[bytes]:
    process = spawn([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE)
    assert process.stdout is not None and process.stdout.readline() == b"ready\n"
    return process


def test_terminate_ends_the_whole_process_group() -> None:
    env = new_mark()
    process = _spawn_ready(PARENT_OF_ONE, env)
    assert len(marked_pids(env)) == 2  # the child and its grandchild
    assert os.getpgid(process.pid) == process.pid  # its own group
    terminate([process])
    assert wait_until_gone(env, GONE_WITHIN_S) == []
    assert process.returncode == -signal.SIGTERM


def test_a_child_ignoring_sigterm_is_killed_after_the_grace() -> None:
    env = new_mark()
    process = _spawn_ready(DEAF, env)
    started = time.monotonic()
    terminate([process], grace=0.3)
    assert time.monotonic() - started < GONE_WITHIN_S  # not the child's 60 s sleep: killed after the grace
    assert process.returncode == -signal.SIGKILL
    assert marked_pids(env) == []


def test_supervise_turns_sigterm_into_stop_requested_and_ends_every_child() -> None:
    env = new_mark()
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(StopRequested) as stopped, supervise():
        _spawn_ready(PARENT_OF_ONE, env)
        _spawn_ready(DEAF, env)
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)  # interrupted by the signal
    assert stopped.value.signum == signal.SIGTERM
    assert wait_until_gone(env, GONE_WITHIN_S) == []
    assert children() == []
    assert signal.getsignal(signal.SIGTERM) is before  # the previous handler is back


def test_children_die_with_a_driver_killed_without_clean_up() -> None:
    env = new_mark()
    driver_code = (
        "import sys, time; from pmoracle.devnet.processes import spawn; "
        "spawn([sys.executable, '-c', 'import time; time.sleep(60)']); print('ready', flush=True); time.sleep(60)"
    )
    driver = subprocess.Popen([sys.executable, "-c", driver_code], env=env, stdout=subprocess.PIPE)
    assert driver.stdout is not None and driver.stdout.readline() == b"ready\n"
    assert len(marked_pids(env)) == 2
    driver.kill()  # SIGKILL: no finally, no handler; PR_SET_PDEATHSIG takes the child down
    driver.wait()
    assert wait_until_gone(env, GONE_WITHIN_S) == []
