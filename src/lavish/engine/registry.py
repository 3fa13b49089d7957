"""The registry of tasks: name -> :class:`~lavish.engine.task.Task`. ``lavish train|eval|predict|info|demo|prepare``
and :func:`lavish.load` dispatch through it.

The registry imports no task. Tasks are found through the ``lavish.tasks`` entry-point group (``name =
"module:TaskClass"``): lavish's own four are declared in its pyproject.toml, and a package of your own adds a task by
declaring one there too (docs/tasks.md), without editing lavish. :func:`register` adds a task object directly (a
script, a test). Entry points are loaded on the first look-up, so ``import lavish`` stays cheap.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from importlib.metadata import distributions
from typing import TYPE_CHECKING

from lavish.errors import ConfigError

if TYPE_CHECKING:  # pragma: no cover
    from lavish.engine.task import Task

GROUP = "lavish.tasks"
"""The entry-point group that lists tasks."""

_registered: dict[str, "Task"] = {}
_loaded = False


def register(task: "Task | type[Task]") -> "Task":
    """Add ``task`` (a Task instance or subclass) under its ``name``; returns the instance. A name registered twice
    is refused (two packages claiming one task)."""
    obj = task() if isinstance(task, type) else task
    other = _registered.get(obj.name)
    if other is not None and type(other) is not type(obj):
        raise ConfigError(f"task {obj.name!r} is registered twice: {type(other).__module__}.{type(other).__name__} "
                          f"and {type(obj).__module__}.{type(obj).__name__}")
    _registered[obj.name] = obj
    return obj


def _load() -> None:
    global _loaded
    if _loaded:
        return
    _loaded = True
    for ep in _entry_points():
        if ep.name in _registered:
            continue
        try:
            cls = ep.load()
        except Exception as err:  # noqa: BLE001  (a broken plug-in names itself, in one line)
            _loaded = False
            raise ConfigError(f"task {ep.name!r} (entry point {ep.value}) cannot be loaded: "
                              f"{type(err).__name__}: {err}") from None
        task = register(cls)
        if task.name != ep.name:
            raise ConfigError(f"entry point {ep.name!r} = {ep.value} is a task called {task.name!r}; name them alike")


def _entry_points() -> list:
    """Every entry point of :data:`GROUP`, of every installed distribution. ``entry_points(group=...)`` keeps only the
    first distribution of each name on ``sys.path``, so a stale ``lavish.egg-info`` ahead of the installed metadata
    (``PYTHONPATH=src``) would hide lavish's own tasks; the union over all distributions does not."""
    found = {}
    for dist in distributions():
        for ep in dist.entry_points:
            if ep.group == GROUP:
                found.setdefault(ep.name, ep)
    if not found:
        raise ConfigError(f"no task is registered: no installed package declares {GROUP!r} entry points (reinstall "
                          "lavish: pip install -e .)")
    return list(found.values())


class _Tasks(Mapping):
    """Every registered task, in the order the CLI lists them (:attr:`Task.order`, then name)."""

    def _all(self) -> dict[str, "Task"]:
        _load()
        return dict(sorted(_registered.items(), key=lambda kv: (kv[1].order, kv[0])))

    def __getitem__(self, name: str) -> "Task":
        return self._all()[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._all())

    def __len__(self) -> int:
        return len(self._all())

    def __repr__(self) -> str:
        return f"TASKS({', '.join(self._all())})"


#: every task, in the order the CLI lists them
TASKS: Mapping[str, "Task"] = _Tasks()


def get_task(name: str) -> "Task":
    """The task called ``name``; ConfigError naming the known ones otherwise."""
    try:
        return TASKS[name]
    except (KeyError, TypeError):
        raise ConfigError(f"unknown task {name!r}: choose one of {', '.join(TASKS)}") from None


def input_spec(backbone: str, task: str = "ave"):
    """Frame size and audio front-end (:class:`lavish.models.input_spec.InputSpec`) for ``backbone`` (a timm name)
    on ``task`` (a registered task's name): what ``lavish prepare`` stores and ``lavish train`` expects."""
    return get_task(task).input_spec(backbone)
