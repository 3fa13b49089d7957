"""``lavish bench``: training-step cost of the adapter methods against the frozen-backbone floor (issue 8).

The measurement code is :mod:`lavish.benchmarking.step` (also runnable as ``python -m lavish.benchmarking.step`` or
``python benchmarks/train_step.py``); this command runs it with the same options and prints its table, or one
JSON object with ``--json``. See docs/performance.md for the method and the measured numbers.
"""

from __future__ import annotations

import argparse

from lavish.benchmarking import step as benchmark


def register(sub) -> None:
    p = sub.add_parser("bench", help="training-step time / memory of adapter methods vs the frozen backbone",
                       description=__doc__)
    p.add_argument("--task", default="ave", choices=["ave"], help="task whose training step is measured")
    benchmark.add_arguments(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from lavish.api import run_bench

    run_bench(args)
    return 0
