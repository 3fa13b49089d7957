"""``lavish serve``: a web page and an HTTP API for trained models (docs/serve.md).

Layers: :mod:`lavish.serve.uploads` (the per-process upload folder), :mod:`lavish.serve.models` (loaded models and
one request's run through :class:`lavish.TrainedModel`), :mod:`lavish.serve.app` (the FastAPI app, its queue and
limits; ``page.html`` the page). FastAPI and uvicorn come with the optional extra: ``pip install -e ".[serve]"``.
"""

from __future__ import annotations

from lavish.errors import ConfigError

#: what the ``serve`` extra installs (imported names)
NEEDS = ("fastapi", "uvicorn")
INSTALL = 'pip install -e ".[serve]"'


def require_extra() -> None:
    """One line naming the extra when FastAPI / uvicorn cannot be imported."""
    import importlib

    missing = []
    for name in NEEDS:
        try:
            importlib.import_module(name)
        except ImportError:
            missing.append(name)
    if missing:
        raise ConfigError(f"lavish serve needs {' and '.join(missing)}, which {'is' if len(missing) == 1 else 'are'} "
                          f"not installed: {INSTALL}")
