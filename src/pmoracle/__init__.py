"""pmoracle: a decentralized portfolio-margin risk oracle.

Sub-packages by responsibility (see docs/design.md):
``risk`` and ``consensus`` are pure (the spec of the system); ``chain``, ``p2p``, ``config`` and ``node`` are
the I/O shells around them.
"""

__version__ = "0.1.0"
