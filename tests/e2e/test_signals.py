"""SIGTERM to ``pmoracle devnet`` and ``pmoracle bench devnet``, while seeding and while running: no child is left.

Each driver runs as a real process with a unique mark in its environment, which every child it starts (anvil, the
node processes) inherits; after the signal the driver must exit within a few seconds and no marked process may be
left. The seeding phase is recognised by the deployment file (written just before the accounts are opened) with no
node log yet; 400 accounts keep anvil busy seeding for several seconds after it appears.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.procscan import kill_marked, marked_pids, new_mark, wait_until_gone

EXIT_WITHIN_S = 5.0  # the supervisor ends the children within 2 s; the rest is the interpreter's exit
SEEDING_ACCOUNTS = 400


def _pmoracle(args: list[str], env: dict[str, str], out: Path) -> subprocess.Popen[bytes]:
    log = open(out, "wb")  # noqa: SIM115 - owned by the child
    try:
        return subprocess.Popen([sys.executable, "-m", "pmoracle.cli", *args], env={**env, "PYTHONUNBUFFERED": "1"},
                                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)  # fmt: skip
    finally:
        log.close()


def _wait_for(driver: subprocess.Popen[bytes], done: Callable[[], bool], timeout: float, what: str, out: Path) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        if driver.poll() is not None:
            raise AssertionError(f"the driver exited ({driver.returncode}) before {what}:\n{out.read_text()[-3000:]}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}:\n{out.read_text()[-3000:]}")
        time.sleep(0.05)


def _node_logs(run_dir: Path) -> list[Path]:
    return sorted(run_dir.glob("node-*/node.log"))


def _seeding(run_dir: Path) -> Callable[[], bool]:
    return lambda: (run_dir / "deployment.json").exists() and not _node_logs(run_dir)


def _running(run_dir: Path, nodes: int) -> Callable[[], bool]:
    def every_api_listens() -> bool:
        logs = _node_logs(run_dir)
        return len(logs) == nodes and all("API listening" in log.read_text(errors="replace") for log in logs)

    return every_api_listens


def _terminate_and_check(driver: subprocess.Popen[bytes], env: dict[str, str], out: Path) -> int:
    try:
        children = [pid for pid in marked_pids(env) if pid != driver.pid]
        assert children, "the driver had started no child yet"
        sent = time.monotonic()
        driver.send_signal(signal.SIGTERM)
        try:
            code = driver.wait(timeout=EXIT_WITHIN_S)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"the driver ignored SIGTERM for {EXIT_WITHIN_S} s:\n{out.read_text()}") from None
        exited_after = time.monotonic() - sent
        left = wait_until_gone(env, 0.5)
        assert left == [], f"processes left after the driver exited: {left}\n{out.read_text()[-3000:]}"
        assert exited_after < EXIT_WITHIN_S
        return code
    finally:
        driver.kill()
        driver.wait()
        kill_marked(env)


@pytest.mark.chain
@pytest.mark.timeout(180)
def test_devnet_ends_every_child_on_sigterm_while_seeding(tmp_path: Path) -> None:
    env, out, run_dir = new_mark(), tmp_path / "out.txt", tmp_path / "run"
    args = ["devnet", "--nodes", "1", "--accounts", str(SEEDING_ACCOUNTS), "--run-dir", str(run_dir)]
    driver = _pmoracle(args, env, out)
    _wait_for(driver, _seeding(run_dir), 120, "seeding", out)
    code = _terminate_and_check(driver, env, out)
    assert code == 128 + signal.SIGTERM
    assert "accounts opened" not in out.read_text()  # it was stopped while seeding
    assert "stopped by SIGTERM" in out.read_text()


@pytest.mark.chain
@pytest.mark.timeout(180)
def test_devnet_ends_every_child_on_sigterm_while_running(tmp_path: Path) -> None:
    env, out, run_dir = new_mark(), tmp_path / "out.txt", tmp_path / "run"
    args = ["devnet", "--nodes", "1", "--accounts", "5", "--duration", "600", "--run-dir", str(run_dir)]
    driver = _pmoracle(args, env, out)
    _wait_for(driver, _running(run_dir, 1), 150, "the node's API", out)
    code = _terminate_and_check(driver, env, out)
    assert code in (0, 1)  # a normal end: 0 when rounds were attested and verified
    assert "devnet: logs and data in" in out.read_text()  # the summary was printed


@pytest.mark.chain
@pytest.mark.timeout(180)
def test_bench_devnet_ends_every_child_on_sigterm_while_seeding(tmp_path: Path) -> None:
    env, out, base = new_mark(), tmp_path / "out.txt", tmp_path / "bench"
    args = ["bench", "devnet", "--nodes", "1", "--accounts", str(SEEDING_ACCOUNTS), "--run-dir", str(base)]
    driver = _pmoracle(args, env, out)
    _wait_for(driver, _seeding(base / "n1"), 120, "seeding", out)
    assert _terminate_and_check(driver, env, out) == 128 + signal.SIGTERM


@pytest.mark.chain
@pytest.mark.timeout(180)
def test_bench_devnet_ends_every_child_on_sigterm_while_running(tmp_path: Path) -> None:
    env, out, base = new_mark(), tmp_path / "out.txt", tmp_path / "bench"
    args = ["bench", "devnet", "--nodes", "1", "--accounts", "5", "--rounds", "100", "--run-dir", str(base)]
    driver = _pmoracle(args, env, out)
    _wait_for(driver, _running(base / "n1", 1), 150, "the node's API", out)
    assert _terminate_and_check(driver, env, out) == 128 + signal.SIGTERM
