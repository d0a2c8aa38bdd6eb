"""The risk engine's version: one integer that the network commits to through ``configDigest``.

Two engines that give different bits for the same inputs must never sign under one config: a committee config
names the engine version its members run (``CommitteeConfig.engine_version``, ``SolverRegistry.setCommittee``),
and a node whose ``ENGINE_VERSION`` differs refuses to start. Bump it with any change to any bit of any output for
any input: the deterministic maths (``detmath`` coefficients, ``det_exp``/``det_log``/the normal CDF), the kernel's
arithmetic or its order of operations, quantization and rounding, scenario generation, parameter parsing that
changes a validated value, or the unit of the outputs. The golden vectors (``tests/vectors/margin``) pin those
outputs: when they change, the version changes with them (docs/determinism.md).
"""

from __future__ import annotations

ENGINE_VERSION = 3  # 3: equity marks futures and perpetuals to market and counts cash, costs and funding
