"""The modules a Python source imports, read from its syntax tree (function bodies included), for layering tests."""

from __future__ import annotations

import ast
import pathlib

SRC = pathlib.Path(__file__).resolve().parents[2] / "src"
PMORACLE = SRC / "pmoracle"


def module_name(path: pathlib.Path, src: pathlib.Path = SRC) -> str:
    """Return the dotted module name of ``path`` under ``src`` (``pmoracle/risk/__init__.py`` -> ``pmoracle.risk``)."""
    parts = list(path.relative_to(src).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: pathlib.Path, src: pathlib.Path = SRC) -> list[str]:
    """Return every module ``path`` imports, anywhere in the file, with relative imports resolved.

    ``from a.b import c`` yields ``a.b`` and ``a.b.c`` (``c`` may be a submodule: ``from pmoracle import testing``).
    """
    tree = ast.parse(path.read_text(), filename=str(path))
    package = module_name(path, src).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                module = ".".join([*base, node.module] if node.module else base)
            else:
                module = node.module or ""
            names.append(module)
            names.extend(f"{module}.{alias.name}" for alias in node.names if alias.name != "*")
    return names


def sources_of(*names: str) -> list[pathlib.Path]:
    """Return the sources of the ``pmoracle`` sub-packages or modules ``names`` (``"risk"``, ``"cli"``)."""
    files: list[pathlib.Path] = []
    for name in names:
        package = PMORACLE / name
        files += sorted(package.rglob("*.py")) if package.is_dir() else [package.with_suffix(".py")]
    return files
