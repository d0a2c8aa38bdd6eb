"""Benchmarks of the risk engine (run as commands, never as timed tests)."""
