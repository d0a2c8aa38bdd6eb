"""Survival scenarios on a real devnet (anvil, node processes, libp2p on 127.0.0.1), one module per fault family.

Each ``scenario_*`` function builds a devnet, injects a fault (TEST-ONLY :mod:`pmoracle.devnet.faults` nodes,
``kill -9`` of processes, a cut network, a reorg, a failing RPC endpoint), runs the loop, stops everything and
returns a :class:`~pmoracle.devnet.scenarios.common.ScenarioResult` with what it measured. The end-to-end tests
(tests/e2e) assert on these results; :mod:`pmoracle.devnet.reliability` runs them and writes docs/reliability.md.

- :mod:`~pmoracle.devnet.scenarios.common`: the result record, the devnet around a scenario, the safety figures;
- :mod:`~pmoracle.devnet.scenarios.byzantine`: wrong values, equivocation, silent, slow and spamming nodes;
- :mod:`~pmoracle.devnet.scenarios.crash`: ``kill -9`` and restart;
- :mod:`~pmoracle.devnet.scenarios.partition`: a minority cut off, then healed;
- :mod:`~pmoracle.devnet.scenarios.reorg`: reorgs shallower and deeper than finality;
- :mod:`~pmoracle.devnet.scenarios.rpc_faults`: a primary RPC endpoint that errors, hangs and lags.

Safety is checked the same way in every scenario: every round attested on chain (its ``RoundAttested`` event) was
recomputed independently from chain state by the devnet loop and matched, and no round was attested twice.
"""
