"""Benchmarks, run as commands and never as timed tests: each figure is printed with its limit or with a peer
measured in the same run."""
