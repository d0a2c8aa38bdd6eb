"""Run ``pmoracle devnet … --summary FILE`` as a user does, in its own process, and read the summary."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tests.procscan import kill_marked, new_mark, wait_until_gone


def run_devnet_summary(
    args: Sequence[str], *, timeout: float, name: str, returncodes: Sequence[int] = (0,)
) -> dict[str, Any]:
    """Run ``pmoracle devnet ARGS --summary … --run-dir … --quiet``; return its summary.

    The run directory (``pmoracle-e2e-NAME-*`` under the temporary directory) is kept: its node logs explain a
    failing run. Fails the test when the command exits with a status not in ``returncodes`` (with the tail of its
    output) or leaves a process behind; kills whatever it started either way.
    """
    run_dir = Path(tempfile.mkdtemp(prefix=f"pmoracle-e2e-{name}-"))
    summary_path = run_dir / "summary.json"
    command = [
        sys.executable, "-m", "pmoracle.cli", "devnet", *args,
        "--summary", str(summary_path), "--run-dir", str(run_dir / "net"), "--quiet",
    ]  # fmt: skip
    env = new_mark()
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False, env=env)
        assert not wait_until_gone(env, 10.0), "a devnet process outlived the command"
    finally:
        kill_marked(env)
    assert done.returncode in returncodes, done.stdout[-3000:] + done.stderr[-3000:]
    summary: dict[str, Any] = json.loads(summary_path.read_text())
    return summary
