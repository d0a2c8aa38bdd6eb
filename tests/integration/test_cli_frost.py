"""``pmoracle frost dkg``: bad input exits 2 naming the field before anything is joined or written (the run itself
is tested by tests/e2e/test_devnet.py, whose devnet runs it in every node's process)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest


def _dkg(config: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "pmoracle.cli", "frost", "dkg", "--config", str(config), *extra]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)


def _config(tmp_path: Path, frost_share: str | None) -> Path:
    line = f'frost_share = "{frost_share}"' if frost_share is not None else ""
    text = f"""[node]
data_dir = "data"
[chain]
rpc_urls = ["http://127.0.0.1:9"]
deployment = "deployment.json"
[keys]
signing_keystore = "keys/signing.json"
transmitter_keystore = "keys/transmitter.json"
p2p_key = "keys/p2p.json"
{line}
[risk]
params_file = "params.toml"
"""
    path = tmp_path / "node.toml"
    path.write_text(text)
    return path


def test_an_unset_share_path_is_refused(tmp_path: Path) -> None:
    done = _dkg(_config(tmp_path, None))
    assert done.returncode == 2, done.stderr
    assert "keys.frost_share: is not set" in done.stderr


def test_an_existing_share_is_never_overwritten_without_force(tmp_path: Path) -> None:
    share = tmp_path / "frost-share.json"
    share.write_text("kept")
    done = _dkg(_config(tmp_path, str(share)))
    assert done.returncode == 2, done.stderr
    assert "--force replaces it" in done.stderr
    assert share.read_text() == "kept"


@pytest.mark.parametrize(("flag", "field"), [("--run=256", "--run"), ("--timeout=0", "--timeout")])
def test_out_of_range_flags_are_named(tmp_path: Path, flag: str, field: str) -> None:
    done = _dkg(_config(tmp_path, str(tmp_path / "frost-share.json")), flag)
    assert done.returncode == 2, done.stderr
    assert f"{field}: must be" in done.stderr
