"""Benchmarks of the provider (see docs/performance.md); run them with ``make bench``."""
