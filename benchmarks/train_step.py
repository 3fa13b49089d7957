"""Benchmark: cost of one AVE training step of every adapter method against the frozen-backbone floor (issue 8).

The code lives in the package (:mod:`lavish.benchmarking.step`) so that ``lavish bench`` works on any install; this
script runs it from a source checkout without the CLI, with the same options:

    python benchmarks/train_step.py --backbone vit_tiny_patch16_224 --videos 1 [--json] [--device cuda]
"""

from lavish.benchmarking.step import main

if __name__ == "__main__":
    main()
