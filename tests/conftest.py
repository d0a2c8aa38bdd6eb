"""Shared fixtures: a real anvil chain per test module (no mock chain anywhere)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from pmoracle import numba_cache
from pmoracle.devnet.devchain import Devchain, start_devchain

# Before any test module imports the risk kernels: numba picks their cache directory when they are defined.
numba_cache.configure()


@pytest.fixture(scope="module")
def anvil() -> Iterator[Devchain]:
    """A fresh anvil on a free 127.0.0.1 port, stopped when the module's tests end."""
    chain = start_devchain()
    try:
        yield chain
    finally:
        chain.stop()
