"""Benchmarks: each measures FNTC against a baseline taken in the same run."""
