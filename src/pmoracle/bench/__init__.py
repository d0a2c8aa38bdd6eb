"""Benchmarks of the risk engine (run as commands, never as timed tests): each figure with its limit or peer."""
