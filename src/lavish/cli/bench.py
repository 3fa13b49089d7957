"""``lavish bench``: training-step cost of the adapter methods against the frozen-backbone floor (issue 8).

The measurement code is ``benchmarks/train_step.py`` of the source checkout (runnable on its own); this command
loads it from there, runs it with the same options and prints its table, or one JSON object with ``--json``.
See docs/performance.md for the method and the measured numbers.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path

from lavish.errors import ConfigError

#: the benchmark script, beside src/ in the repository
SCRIPT = Path(__file__).resolve().parents[3] / "benchmarks" / "train_step.py"


def load_benchmark(path: Path = SCRIPT):
    """The ``benchmarks/train_step.py`` module; ConfigError if this install has no source checkout."""
    if not path.is_file():
        raise ConfigError(f"{path} not found: lavish bench needs the source checkout (pip install -e .)")
    spec = importlib.util.spec_from_file_location("lavish_benchmark_train_step", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def register(sub) -> None:
    p = sub.add_parser("bench", help="training-step time / memory of adapter methods vs the frozen backbone",
                       description=__doc__)
    p.add_argument("--task", default="ave", choices=["ave"], help="task whose training step is measured")
    if SCRIPT.is_file():
        load_benchmark().add_arguments(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    bench = load_benchmark()
    if args.videos < 1 or args.repeats < 1:
        raise ConfigError(f"--videos {args.videos} / --repeats {args.repeats}: both must be at least 1")
    try:
        bench.config_from_args(args)
    except ValueError as err:
        raise ConfigError(str(err)) from None
    from lavish.models.input_spec import input_spec

    input_spec(args.backbone, args.task)  # unknown backbone -> one-line ConfigError
    bench.main_from_args(args)
    return 0
