"""pmoracle: a decentralized portfolio-margin risk oracle.

Sub-packages by responsibility (see docs/design.md):
``risk`` and ``consensus`` are pure (the spec of the system); ``chain``, ``p2p``, ``config`` and ``node`` are
the I/O shells around them. Importing any of them has no side effect; a program that computes margins calls
:func:`pmoracle.numba_cache.configure` first (see that module).
"""

__version__ = "0.1.0"
