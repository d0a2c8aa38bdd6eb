"""Start, watch, kill and restart ``peer_demo`` processes on 127.0.0.1 (used by the real-network tests and bench).

Each child's stdout JSON lines are collected by a reader thread; :meth:`DemoCluster.wait_for` blocks until an
expected event arrives or a deadline passes. :meth:`DemoCluster.stop` always leaves no child behind (SIGTERM, then
SIGKILL after a grace period, to each child's process group). Ports come from
:func:`pmoracle.devnet.ports.reserve_ports`, never handed out twice in one process.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from pmoracle.devnet.ports import reserve_ports
from pmoracle.devnet.processes import signal_group, spawn, terminate
from pmoracle.p2p.errors import GossipError

Event = dict[str, Any]


class DemoCluster:
    """``n`` peer-demo processes forming one test committee."""

    def __init__(self, n: int, extra_args: Sequence[str] = (), log_dir: Path | None = None) -> None:
        self.n = n
        self.ports = reserve_ports(n)  # distinct, free, never handed out before in this process
        self.extra_args = list(extra_args)
        self.log_dir = log_dir
        self.events: queue.Queue[Event] = queue.Queue()
        self.seen: list[Event] = []
        self.procs: dict[int, subprocess.Popen[str]] = {}
        self._threads: list[threading.Thread] = []

    def command(self, index: int) -> list[str]:
        """Return the command line of member ``index``."""
        peers = [f"--peer-port={i}={port}" for i, port in enumerate(self.ports) if i != index]
        base = [sys.executable, "-m", "pmoracle.testing.peer_demo", f"--n={self.n}", f"--index={index}"]
        return [*base, f"--port={self.ports[index]}", *peers, *self.extra_args]

    def start(self, index: int) -> None:
        """Start (or restart) member ``index``."""
        stderr: Any = subprocess.DEVNULL
        if self.log_dir is not None:
            stderr = open(self.log_dir / f"member-{index}.log", "a")  # noqa: SIM115 (owned by the child)
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        proc = spawn(self.command(index), stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr, text=True,
                     env=env)  # fmt: skip
        self.procs[index] = proc
        thread = threading.Thread(target=self._read, args=(index, proc), daemon=True)
        thread.start()
        self._threads.append(thread)

    def start_all(self) -> None:
        """Start every member."""
        for index in range(self.n):
            self.start(index)

    def _read(self, index: int, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            try:
                event = json.loads(line)
            except ValueError:
                continue
            event["_member"] = index
            event["_pid"] = proc.pid
            self.events.put(event)

    def send(self, index: int, line: str) -> None:
        """Write one line to member ``index``'s stdin."""
        proc = self.procs[index]
        assert proc.stdin is not None
        proc.stdin.write(line + "\n")
        proc.stdin.flush()

    def wait_for(self, predicate: Callable[[Event], bool], count: int, timeout: float) -> list[Event]:
        """Return the first ``count`` events matching ``predicate`` (errors: GossipError after ``timeout`` s)."""
        deadline = time.monotonic() + timeout
        matched = [e for e in self.seen if predicate(e)]
        while len(matched) < count:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise GossipError(f"timed out after {timeout} s with {len(matched)}/{count} events: {matched}")
            try:
                event = self.events.get(timeout=remaining)
            except queue.Empty:
                continue
            self.seen.append(event)
            if predicate(event):
                matched.append(event)
        return matched[:count]

    def kill(self, index: int) -> None:
        """SIGKILL member ``index`` and reap it."""
        proc = self.procs[index]
        signal_group(proc, signal.SIGKILL)
        proc.wait(timeout=10)
        self.seen = [e for e in self.seen if e.get("_pid") != proc.pid]

    def stop(self, grace: float = 10.0) -> None:
        """Stop every member's process group: SIGTERM, SIGKILL after ``grace`` s; reap all."""
        terminate(self.procs.values(), grace=grace)
        for proc in self.procs.values():
            if proc.stdin is not None:
                proc.stdin.close()
        for thread in self._threads:
            thread.join(timeout=5)
