"""Diagnostics that make training dynamics visible: gradient flow through time, long-range benchmarks."""
