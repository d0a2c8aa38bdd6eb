"""The node: trio services wiring the pure core to chain, p2p and disk; keys, metrics, API and logging."""
