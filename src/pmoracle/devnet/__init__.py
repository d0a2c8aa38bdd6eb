"""Tools for people and tests, never part of a node: the one-command devnet and what drives it.

- :mod:`pmoracle.devnet.cluster`: anvil, contracts, staked identities, N ``pmoracle node`` processes, the audit;
- :mod:`pmoracle.devnet.world`: the market and the traders the devnet drives;
- :mod:`pmoracle.devnet.faults`: TEST-ONLY misbehaving nodes (started only by the devnet's fault scenarios);
- :mod:`pmoracle.devnet.netlab`: a private network namespace per node, for real partitions;
- :mod:`pmoracle.devnet.table`: the live table (redrawn in place on a terminal, plain lines when piped);
- :mod:`pmoracle.devnet.ports`: TCP ports handed out once per process (:func:`~pmoracle.devnet.ports.reserve_port`);
- :mod:`pmoracle.devnet.processes`: child processes in their own process groups, all ended on SIGTERM/SIGINT;
- :mod:`pmoracle.devnet.scenarios`: the fault scenarios, one module per family; :mod:`pmoracle.devnet.rpc_proxy`:
  the failing JSON-RPC proxy they use;
- :mod:`pmoracle.devnet.reliability`: runs the scenarios and writes ``docs/reliability.md``
  (:mod:`pmoracle.devnet.reliability_table`).

The node's own package (:mod:`pmoracle.node`) never imports from here.
"""
