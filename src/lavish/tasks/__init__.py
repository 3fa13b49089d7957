"""lavish's own tasks, one folder each with the same file names (docs/tasks.md): ``ave``, ``avs``, ``avqa``, ``avvp``.

Nothing here is imported by the engine: the tasks are listed once, as entry points of the ``lavish.tasks`` group in
pyproject.toml, and :mod:`lavish.engine.registry` loads them on first use.
"""
