"""The registry of tasks: name -> :class:`~lavish.tasks.base.Task`. ``lavish train|eval|predict|info|demo|prepare``
and :func:`lavish.load` dispatch through it; a new task is one module here plus one line below (docs/tasks.md)."""

from __future__ import annotations

from lavish.errors import ConfigError
from lavish.tasks.ave import AveTask
from lavish.tasks.avqa import AvqaTask
from lavish.tasks.avs import AvsTask
from lavish.tasks.avvp import AvvpTask
from lavish.tasks.base import Task

#: every task, in the order the CLI lists them
TASKS: dict[str, Task] = {task.name: task for task in (AveTask(), AvsTask(), AvqaTask(), AvvpTask())}


def get_task(name: str) -> Task:
    """The task called ``name``; ConfigError naming the known ones otherwise."""
    try:
        return TASKS[name]
    except (KeyError, TypeError):
        raise ConfigError(f"unknown task {name!r}: choose one of {', '.join(TASKS)}") from None
