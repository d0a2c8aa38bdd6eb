"""The pure packages (risk, consensus) import nothing that does I/O, reads a clock or draws randomness."""

from __future__ import annotations

import ast
import pathlib

import pytest

SRC = pathlib.Path(__file__).resolve().parents[2] / "src" / "pmoracle"
PURE_PACKAGES = ("risk", "consensus")
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
}
ALLOWED_PMORACLE = ("pmoracle.risk", "pmoracle.consensus", "pmoracle.errors")


def _imports(path: pathlib.Path) -> list[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.append(node.module)
    return names


@pytest.mark.parametrize("package", PURE_PACKAGES)
def test_pure_package_imports_no_io(package: str) -> None:
    files = sorted((SRC / package).rglob("*.py"))
    assert files, f"no sources under {package}"
    offenders = []
    for path in files:
        for name in _imports(path):
            root = name.split(".")[0]
            if root in FORBIDDEN:
                offenders.append(f"{path.relative_to(SRC)} imports {name}")
            if root == "pmoracle" and not name.startswith(ALLOWED_PMORACLE):
                offenders.append(f"{path.relative_to(SRC)} imports shell module {name}")
    assert offenders == []


def test_walker_sees_forbidden_imports(tmp_path: pathlib.Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("import time\nfrom web3 import Web3\nfrom pmoracle.chain import client\n")
    assert _imports(bad) == ["time", "web3", "pmoracle.chain"]
