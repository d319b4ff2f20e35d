"""Benchmarks: real service processes driven by native load generators (`make bench`).

Not tests: nothing here is collected by pytest, and figures are reported, never asserted.
"""
