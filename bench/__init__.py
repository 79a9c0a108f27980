"""Benchmarks for git-claim: `python -m bench` (see docs/performance.md)."""
