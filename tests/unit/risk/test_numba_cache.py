"""numba's compiled-code cache follows the engine's sources: any change to risk/*.py compiles afresh."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from pmoracle.numba_cache import CACHED_MODULES, RISK_SOURCES, compute_cache_dir, compute_sources_digest


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


def _run(code: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)


def _env(**extra: str) -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != "NUMBA_CACHE_DIR"} | extra


def test_configure_points_numba_at_the_engine_cache(tmp_path: Path) -> None:
    code = (
        "import numba\n"  # numba first: configure() updates its already-read config too
        "from pmoracle import numba_cache\n"
        "path = numba_cache.configure()\n"
        "from pmoracle.risk import kernel\n"
        "print(numba.config.CACHE_DIR == str(path), path)"
    )
    out = _run(code, _env(XDG_CACHE_HOME=str(tmp_path)))
    assert out.returncode == 0, out.stderr
    same, path = out.stdout.split()
    assert same == "True"
    assert Path(path) == tmp_path / "pmoracle" / "numba" / compute_sources_digest(RISK_SOURCES)
    assert Path(path).is_dir()


def test_kernels_imported_before_configure_are_refused(tmp_path: Path) -> None:
    """numba picks a cached function's directory when its decorator runs: configuring later would be a lie."""
    code = "import pmoracle.risk.margin\nfrom pmoracle import numba_cache\nnumba_cache.configure()"
    out = _run(code, _env(XDG_CACHE_HOME=str(tmp_path)))
    assert out.returncode == 1
    assert "NumbaCacheOrderError: pmoracle.risk.kernel, pmoracle.risk.pricing imported before" in out.stderr
    # a child of a configured process inherits the directory, which numba read before the kernels were defined
    inherited = compute_cache_dir({"XDG_CACHE_HOME": str(tmp_path)})
    assert _run(code, _env(NUMBA_CACHE_DIR=str(inherited))).returncode == 0


def test_cached_modules_lists_every_cached_kernel() -> None:
    cached = {f"pmoracle.risk.{path.stem}" for path in RISK_SOURCES.glob("*.py") if "cache=True" in path.read_text()}
    assert cached == set(CACHED_MODULES)


def test_an_unwritable_cache_home_falls_back_to_the_temporary_directory(tmp_path: Path) -> None:
    blocked = tmp_path / "blocked"
    blocked.write_text("a file where the cache home should be")  # mkdir under it fails
    code = "import numba\nfrom pmoracle import numba_cache\nnumba_cache.configure()\nprint(numba.config.CACHE_DIR)"
    out = _run(code, _env(XDG_CACHE_HOME=str(blocked)))
    assert out.returncode == 0, out.stderr
    cache = Path(out.stdout.strip())
    assert cache.name == compute_sources_digest(RISK_SOURCES) and cache.is_dir() and blocked not in cache.parents
