"""Benchmarks: print a table and write JSON to bench/results/. They assert nothing."""
