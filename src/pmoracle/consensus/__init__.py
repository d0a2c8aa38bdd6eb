"""The consensus rules: reports, EIP-712 hashing, Merkle leaves, rounds, quorum, evidence. PURE."""
