"""Tools for people and tests, never part of a node: the one-command devnet and what drives it.

- :mod:`pmoracle.devnet.cluster`: anvil, contracts, staked identities, N ``pmoracle node`` processes, the audit;
- :mod:`pmoracle.devnet.world`: the market and the traders the devnet drives;
- :mod:`pmoracle.devnet.faults`: TEST-ONLY misbehaving nodes (started only by the devnet's fault scenarios);
- :mod:`pmoracle.devnet.netlab`: a private network namespace per node, for real partitions;
- :mod:`pmoracle.devnet.reliability`: the fault scenarios and the table of ``docs/reliability.md``.

The node's own package (:mod:`pmoracle.node`) never imports from here.
"""
