"""The pure packages (risk, consensus) import nothing that does I/O, reads a clock or draws randomness.

And ``risk`` stands alone: the engine knows nothing of reports, leaves or Merkle trees (the round does).
"""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys

import pytest

from tests.unit.imports import PMORACLE, imported_modules, sources_of

FORBIDDEN = {
    "trio",
    "anyio",
    "asyncio",
    "web3",
    "libp2p",
    "logging",
    "random",
    "secrets",
    "time",
    "datetime",
    "os",
    "socket",
    "requests",
    "httpx",
    "sqlite3",
    "subprocess",
    "threading",
    "multiprocessing",
    "pathlib",
    "shutil",
    "tempfile",
    "urllib",
    "prometheus_client",
    "signal",
    "io",
    "importlib",  # package data and dynamic imports are the shell's: it passes the text in
}
# The pmoracle modules each pure package may import.
ALLOWED_PMORACLE = {
    # the cascade stress test (risk/stress.py) liquidates with the Liquidator's rule as the keeper mirrors it
    "risk": ("pmoracle.risk", "pmoracle.errors", "pmoracle.keeper.decision"),
    "consensus": ("pmoracle.consensus", "pmoracle.risk", "pmoracle.errors"),
    # the keeper's decisions (its shell is keeper.keeper), in the contracts' unit WAD as the engine's inputs define it
    "keeper/decision": ("pmoracle.keeper", "pmoracle.errors", "pmoracle.risk.inputs"),
}


def _offences(package: str) -> list[str]:
    files = sources_of(package)
    assert files, f"no sources under {package}"
    offenders = []
    for path in files:
        for name in imported_modules(path):
            root = name.split(".")[0]
            where = path.relative_to(PMORACLE)
            if root in FORBIDDEN:
                offenders.append(f"{where} imports {name}")
            if root == "pmoracle" and not name.startswith(ALLOWED_PMORACLE[package]):
                offenders.append(f"{where} imports {name}, outside {', '.join(ALLOWED_PMORACLE[package])}")
    return offenders


@pytest.mark.parametrize("package", sorted(ALLOWED_PMORACLE))
def test_pure_package_imports_no_io(package: str) -> None:
    assert _offences(package) == []


def test_walker_sees_forbidden_imports(tmp_path: pathlib.Path) -> None:
    src = tmp_path / "src"
    bad = src / "pmoracle" / "risk" / "bad.py"
    bad.parent.mkdir(parents=True)
    bad.write_text(
        "import time\nfrom web3 import Web3\n"
        "def later():\n    from importlib import resources\n    from ..consensus import merkle\n"
    )
    assert imported_modules(bad, src) == [
        "time", "web3", "web3.Web3", "importlib", "importlib.resources", "pmoracle.consensus",
        "pmoracle.consensus.merkle",
    ]  # fmt: skip


def test_importing_pmoracle_has_no_side_effect(tmp_path: pathlib.Path) -> None:
    """A fresh process with a fresh home imports the library: no directory appears, NUMBA_CACHE_DIR stays unset."""
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("NUMBA_CACHE_DIR", "XDG_CACHE_HOME")} | {"HOME": str(home)}
    code = (
        "import os, sys, pmoracle, pmoracle.risk, pmoracle.risk.params, pmoracle.risk.documents, pmoracle.consensus, "
        "pmoracle.consensus.report, pmoracle.config, pmoracle.config.params\n"
        "print(os.environ.get('NUMBA_CACHE_DIR', 'unset'), 'numba' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], env=env, cwd=tmp_path, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["unset", "False"]
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["home"]
