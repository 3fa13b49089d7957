"""Benchmarks: the training-step benchmark (``lavish bench``), the loader benchmark, kernel counts, the allocator setting."""
