"""Benchmarks, run on demand (never in CI); each script writes its own section of the results."""
