"""Layering: the product never imports the test harness, and the node's packages never import tools above them.

``pmoracle.testing`` (forgeable committees, demo clusters) and ``pmoracle.devnet`` / ``pmoracle.bench`` are tools for
people and tests; the CLI (``pmoracle.cli``, ``pmoracle.commands``) is the outermost shell. Imports inside functions
count too.
"""

from __future__ import annotations

import pytest

from tests.unit.imports import PMORACLE, imported_modules, sources_of

PRODUCT = (
    "risk", "consensus", "chain", "p2p", "config", "storage", "node",
    "commands", "cli", "files", "errors", "numba_cache", "trio_types", "keeper",
)  # fmt: skip
NODE = ("risk", "consensus", "chain", "p2p", "config", "storage", "node", "keeper")
HARNESS = ("pmoracle.testing",)
TOOLS = ("pmoracle.testing", "pmoracle.devnet", "pmoracle.bench", "pmoracle.commands", "pmoracle.cli")


def _offences(package: str, forbidden: tuple[str, ...]) -> list[str]:
    files = sources_of(package)
    assert files and all(f.is_file() for f in files), f"no sources for pmoracle.{package}"
    return [
        f"{path.relative_to(PMORACLE)} imports {name}"
        for path in files
        for name in imported_modules(path)
        if any(name == f or name.startswith(f + ".") for f in forbidden)
    ]


@pytest.mark.parametrize("package", PRODUCT)
def test_product_never_imports_the_test_harness(package: str) -> None:
    assert _offences(package, HARNESS) == []


@pytest.mark.parametrize("package", NODE)
def test_node_packages_never_import_tools_or_the_cli(package: str) -> None:
    assert _offences(package, TOOLS) == []


def test_every_package_is_classified() -> None:
    """A new sub-package must be placed in the layering (product or tool) when it is added."""
    tools = {"testing", "devnet", "bench"}
    found = {p.name for p in PMORACLE.iterdir() if p.is_dir() and (p / "__init__.py").is_file()}
    found |= {p.stem for p in PMORACLE.glob("*.py") if p.stem != "__init__"}
    assert found == set(PRODUCT) | tools
