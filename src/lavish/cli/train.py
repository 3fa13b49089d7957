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
    p.set_defaults(write_error_hint=after_write_error)


def after_write_error(args) -> str:
    """How to continue a run stopped by a failed write (the disk is full): every file in it is whole."""
    from lavish.tasks.runner import last_checkpoint

    if args.out and last_checkpoint(args.out).exists():
        again = "rerun the same command" if args.resume else "rerun the same command with --resume"
        return f"the run is resumable from its last epoch: free some space, then {again}"
    return "no epoch was saved yet: free some space, then rerun the same command"
