"""Benchmarks (not timed tests): `python -m benchmarks` (or `make bench`) runs every `bench_*.py` here."""
