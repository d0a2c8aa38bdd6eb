"""Benchmarks printed as tables (figures are measured in the run that prints them)."""
