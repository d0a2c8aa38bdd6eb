"""Benchmarks (run as commands, never as timed tests): each figure printed with its limit or a peer measured in the same run."""
