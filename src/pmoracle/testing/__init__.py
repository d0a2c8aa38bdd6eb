"""Test helpers shipped for tests and benchmarks, never imported by the product: forgeable test committees, and
clusters of small gossip processes on 127.0.0.1.

The committees' signing keys are derived from public labels: anyone can forge their signatures.
"""
