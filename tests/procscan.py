"""Find the processes a test started, by an environment variable it gave them (inherited by their children)."""

from __future__ import annotations

import contextlib
import os
import signal
import time
import uuid
from pathlib import Path

MARK = "PMORACLE_TEST_RUN"


def new_mark() -> dict[str, str]:
    """Return an environment (this process's plus a unique mark) for the processes a test starts."""
    return {**os.environ, MARK: uuid.uuid4().hex}


def marked_pids(env: dict[str, str]) -> list[int]:
    """Return the live processes (zombies excluded) whose environment carries the mark of ``env``."""
    needle = f"{MARK}={env[MARK]}".encode()
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            if needle not in (proc / "environ").read_bytes().split(b"\0"):
                continue
            state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:  # gone meanwhile, or not ours to read
            continue
        if state != "Z":
            found.append(int(proc.name))
    return found


def wait_until_gone(env: dict[str, str], timeout: float) -> list[int]:
    """Return the marked processes still alive after ``timeout`` seconds (empty as soon as none is left)."""
    deadline = time.monotonic() + timeout
    while True:
        left = marked_pids(env)
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.05)


def kill_marked(env: dict[str, str]) -> None:
    """SIGKILL every process still carrying the mark of ``env`` (a failed test leaves nothing behind either)."""
    for pid in marked_pids(env):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
