"""Benchmarks: print a table, write JSON to bench/results/. Not tests: nothing here asserts speed."""
