"""numba's compiled-code cache follows the engine's sources: any change to risk/*.py compiles afresh."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from pmoracle.numba_cache import RISK_SOURCES, compute_cache_dir, compute_sources_digest


def _sources(tmp_path: Path) -> Path:
    directory = tmp_path / "risk"
    directory.mkdir()
    (directory / "pricing.py").write_text("x = 1\n")
    (directory / "detlanes.py").write_text("y = 2\n")
    return directory


def test_any_change_to_an_engine_source_moves_the_cache(tmp_path: Path) -> None:
    directory = _sources(tmp_path)
    before = compute_sources_digest(directory)
    assert compute_sources_digest(directory) == before  # stable for unchanged sources
    (directory / "detlanes.py").write_text("y = 3\n")  # a dependency of a cached function changes
    after_edit = compute_sources_digest(directory)
    (directory / "new.py").write_text("")
    after_add = compute_sources_digest(directory)
    assert len({before, after_edit, after_add}) == 3


def test_cache_dir_base_and_inheritance(tmp_path: Path) -> None:
    directory = _sources(tmp_path)
    digest = compute_sources_digest(directory)
    default = compute_cache_dir({"XDG_CACHE_HOME": str(tmp_path / "c")}, directory)
    assert default == tmp_path / "c" / "pmoracle" / "numba" / digest
    operator = compute_cache_dir({"NUMBA_CACHE_DIR": str(tmp_path / "op")}, directory)
    assert operator == tmp_path / "op" / digest
    # a child process inherits the parent's configured directory unchanged (one shared cache)
    assert compute_cache_dir({"NUMBA_CACHE_DIR": str(operator)}, directory) == operator


def test_a_pmoracle_process_points_numba_at_the_engine_cache(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_CACHE_DIR"} | {"XDG_CACHE_HOME": str(tmp_path)}
    code = "import numba, pmoracle; print(numba.config.CACHE_DIR)"  # numba first: its config is updated too
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert Path(out.stdout.strip()) == tmp_path / "pmoracle" / "numba" / compute_sources_digest(RISK_SOURCES)


def test_an_unwritable_cache_home_falls_back_to_the_temporary_directory(tmp_path: Path) -> None:
    blocked = tmp_path / "blocked"
    blocked.write_text("a file where the cache home should be")  # mkdir under it fails
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_CACHE_DIR"} | {"XDG_CACHE_HOME": str(blocked)}
    code = "import pmoracle, numba; print(numba.config.CACHE_DIR)"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    cache = Path(out.stdout.strip())
    assert cache.name == compute_sources_digest(RISK_SOURCES) and cache.is_dir() and blocked not in cache.parents
