"""pmoracle: a decentralized portfolio-margin risk oracle.

Sub-packages by responsibility (see docs/design.md):
``risk`` and ``consensus`` are pure (the spec of the system); ``chain``, ``p2p``, ``config`` and ``node`` are
the I/O shells around them.
"""

from pmoracle import numba_cache

__version__ = "0.1.0"

# numba's cache is keyed by the engine's sources (see numba_cache): done before anything imports numba
numba_cache.configure()
