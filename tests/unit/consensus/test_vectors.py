"""The committed shared vectors are exactly what the code produces (the contract tests read the same files)."""

from __future__ import annotations

import pathlib

import pytest

from tests.vectors.generate import VECTORS, render

HERE = pathlib.Path(__file__).resolve().parents[2] / "vectors"


@pytest.mark.parametrize("name", sorted(VECTORS))
def test_vectors_are_current(name: str) -> None:
    assert (HERE / name).read_text() == render(name), "regenerate with: python -m tests.vectors.generate"
