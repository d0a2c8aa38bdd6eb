"""Where numba keeps its compiled-code cache: a directory per version of the risk engine's sources.

numba's ``cache=True`` checks only the source file of the cached function itself: edit ``risk/detlanes.py`` and
the cached ``pricing.value_options`` that inlined its old code is still loaded (a known numba limitation). On a
node that would mean computing with the previous engine after an upgrade and signing values its peers do not
sign. So the cache lives under a directory named by a hash of every ``risk/*.py``: any change to the engine
compiles afresh, and an unchanged engine reuses its cache.

Nothing here runs at import. numba picks a function's cache directory when the ``@njit(cache=True)`` decorator
runs, that is when ``pmoracle.risk.kernel`` or ``pmoracle.risk.pricing`` is imported, so every program calls
:func:`configure` before importing them: the ``pmoracle`` command (``pmoracle.cli.main``), the ``python -m``
entry points of the harness and benchmarks, and ``tests/conftest.py``. A library user does the same::

    from pmoracle import numba_cache
    numba_cache.configure()
    from pmoracle.risk.margin import compute_book

``NUMBA_CACHE_DIR`` set by the operator is kept as the base directory; by default it is
``$XDG_CACHE_HOME/pmoracle/numba`` (``~/.cache``).
"""

from __future__ import annotations

import hashlib
import os
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path

from pmoracle.errors import PmoracleError

RISK_SOURCES = Path(__file__).parent / "risk"
# The engine modules that define ``@njit(cache=True)`` functions (a test keeps this list complete).
CACHED_MODULES = ("pmoracle.risk.kernel", "pmoracle.risk.pricing")


class NumbaCacheOrderError(PmoracleError):
    """Raised when the engine's cached kernels were imported before :func:`configure` chose their directory."""


def compute_sources_digest(directory: Path = RISK_SOURCES) -> str:
    """Return a short hash of the names and contents of the ``*.py`` files in ``directory``."""
    digest = hashlib.sha256()
    for path in sorted(directory.glob("*.py")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def compute_cache_dir(environ: Mapping[str, str], directory: Path = RISK_SOURCES) -> Path:
    """Return the cache directory for the engine's current sources under the operator's or the user's base.

    A ``NUMBA_CACHE_DIR`` that already ends in the digest (inherited from a parent pmoracle process, e.g. the
    devnet's node processes) is kept, so parent and children share one cache.
    """
    digest = compute_sources_digest(directory)
    base = environ.get("NUMBA_CACHE_DIR")
    if base is None:
        cache_home = environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
        base = str(Path(cache_home) / "pmoracle" / "numba")
    elif Path(base).name == digest:
        return Path(base)
    return Path(base) / digest


def configure() -> Path:
    """Point numba at the cache directory of the current engine; return that directory.

    Creates the directory and sets ``NUMBA_CACHE_DIR`` (inherited by child processes) and numba's own config if
    numba is already imported. When the directory cannot be created (a read-only home), the cache goes under the
    system's temporary directory instead: numba refuses to compile ``cache=True`` functions without a writable
    cache. Calling it again is harmless.

    Errors:
        NumbaCacheOrderError when ``pmoracle.risk.kernel`` or ``pmoracle.risk.pricing`` was imported before, under
        another cache directory: their compiled code could come from a stale cache.
    """
    path = compute_cache_dir(os.environ)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError:
        path = Path(tempfile.gettempdir()) / f"pmoracle-numba-{os.getuid()}" / compute_sources_digest()
        path.mkdir(parents=True, exist_ok=True)
    cache_dir = str(path)
    config = sys.modules.get("numba.core.config")
    # numba reads NUMBA_CACHE_DIR once, when it is imported; the decorators read its config when they run.
    chosen = getattr(config, "CACHE_DIR", "") if config is not None else os.environ.get("NUMBA_CACHE_DIR", "")
    early = [name for name in CACHED_MODULES if name in sys.modules]
    if early and chosen != cache_dir:
        used = repr(chosen) if chosen else "numba's default cache"
        raise NumbaCacheOrderError(
            f"{', '.join(early)} imported before pmoracle.numba_cache.configure(): its cached kernels use "
            f"{used}, not {cache_dir!r}; call configure() before importing them"
        )
    os.environ["NUMBA_CACHE_DIR"] = cache_dir
    if config is not None:
        config.CACHE_DIR = cache_dir
    return path
