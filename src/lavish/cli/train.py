"""``lavish train TASK``: train a task model on a prepared dataset; one sub-command per task module."""

from __future__ import annotations

import importlib

#: modules that provide ``register_train(tasks)`` / ``register_eval(tasks)`` for their task
TASK_MODULES = ("lavish.cli.ave", "lavish.cli.avs", "lavish.cli.avqa")


def task_modules():
    """The task CLI modules present in this installation."""
    for name in TASK_MODULES:
        try:
            yield importlib.import_module(name)
        except ModuleNotFoundError as err:
            if err.name != name:
                raise


def register(sub) -> None:
    p = sub.add_parser("train", help="train a task model on a prepared dataset", description=__doc__)
    tasks = p.add_subparsers(dest="task", metavar="TASK", required=True)
    for module in task_modules():
        module.register_train(tasks)
