"""The ``pmoracle`` command starts as a user's shell starts it: a fresh process with no ``NUMBA_CACHE_DIR`` set.

The test session itself configures numba's cache (``tests/conftest.py``) and its subprocesses inherit the variable,
which once hid a command line that refused every command: a command module imported the risk kernels while the
parser was built, before the cache directory was chosen.
"""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
HEAVY = ("web3", "libp2p", "trio", "pmoracle.risk.kernel")


def _user_env(tmp_path: pathlib.Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NUMBA_")}
    env["XDG_CACHE_HOME"] = str(tmp_path / "cache")  # a user's cache home, not the test session's
    return env


def _run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-X", "importtime", "-m", "pmoracle.cli", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=False, env=env, cwd=ROOT)


def _imported(stderr: str) -> set[str]:
    return {line.rsplit("|", 1)[-1].strip() for line in stderr.splitlines() if line.startswith("import time:")}


@pytest.mark.parametrize("command", ["margin", "params", "bench", "devnet", "dispute"])
def test_every_command_starts_without_a_preset_cache(command: str, tmp_path: pathlib.Path) -> None:
    done = _run([command, "--help"], _user_env(tmp_path))
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"usage: pmoracle {command}" in done.stdout


def test_a_light_command_imports_neither_the_kernels_nor_the_network_stack(tmp_path: pathlib.Path) -> None:
    done = _run(["params", "check", str(ROOT / "examples" / "params" / "span16.toml")], _user_env(tmp_path))
    assert done.returncode == 0, done.stderr[-2000:]
    assert "0x" in done.stdout  # the document's paramsHash
    assert not _imported(done.stderr) & set(HEAVY), sorted(_imported(done.stderr) & set(HEAVY))


def test_the_top_level_help_lists_every_command(tmp_path: pathlib.Path) -> None:
    from pmoracle.cli import COMMANDS

    done = _run(["--help"], _user_env(tmp_path))
    assert done.returncode == 0, done.stderr[-2000:]
    assert all(name in done.stdout for name in COMMANDS)
