"""Benchmarks: each measures pmoracle and its limit or peer in the same run and prints figures with ratios."""
