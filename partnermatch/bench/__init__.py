"""Benchmarks: each measures a system beside a baseline in the same run and writes JSON."""
