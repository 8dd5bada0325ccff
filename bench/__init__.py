"""Benchmarks: they measure and print numbers; the tests under tests/ assert behaviour."""
