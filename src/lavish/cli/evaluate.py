"""``lavish eval TASK``: evaluate an adapter file on a prepared split; one sub-command per task module."""

from __future__ import annotations

from lavish.cli.train import task_modules


def register(sub) -> None:
    p = sub.add_parser("eval", help="evaluate an adapter file on a prepared split", description=__doc__)
    tasks = p.add_subparsers(dest="task", metavar="TASK", required=True)
    for module in task_modules():
        module.register_eval(tasks)
