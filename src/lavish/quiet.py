"""What a user sees while lavish runs: one-line warnings, none of Lightning's or torch's notes that a user cannot act
on. Used by the CLI around every command (:mod:`lavish.cli.main`) and by the Python API around training and
evaluation (:func:`lavish.train`, :func:`lavish.evaluate`), so both show the same lines. Imports nothing of lavish.
"""

from __future__ import annotations

import logging
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

#: (message regex, module regex) of warnings not shown: Lightning's notes about choices lavish makes on purpose
#: (data loaders without workers by default, fewer steps than the logging interval on tiny splits, logging and
#: checkpointing into a resumed run's folder)
QUIET = (
    (r".*does not have many workers", r"lightning"),
    (r".*number of training batches .* is smaller than the logging interval", r"lightning"),
    (r"Experiment logs directory .* exists and is not empty", r"lightning"),
    (r"Checkpoint directory .* exists and is not empty", r"lightning"),
)


def one_line(text: str, limit: int = 500) -> str:
    """``text`` with its whitespace runs (newlines included) collapsed, cut at ``limit`` characters."""
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """``warnings.showwarning`` of the command: ``warning: <message>`` on stderr, one line."""
    print(f"warning: {one_line(message)}", file=sys.stderr if file is None else file)


def _errors_only(record: logging.LogRecord) -> bool:
    """Handler filter: keep records of level ERROR and above."""
    return record.levelno >= logging.ERROR


def _torch_log_handlers() -> list[logging.Handler]:
    """The handlers torch's logging set up (on ``torch`` and its registered children, which do not propagate)."""
    names = ["torch", *(n for n in logging.root.manager.loggerDict if n.startswith("torch."))]
    handlers = {id(h): h for n in names for h in getattr(logging.getLogger(n), "handlers", [])}
    return list(handlers.values())


@contextmanager
def user_facing_output(debug: bool = False, *, one_line_warnings: bool = True) -> Iterator[None]:
    """While a command runs: one-line warnings without the notes in :data:`QUIET`, no INFO log lines (lavish
    logs nothing; Lightning's say which accelerators it found, advertise, and narrate its steps), and none of
    torch's log lines below ERROR (the compiler's notes while ``--fused-adapters`` compiles, e.g. "No CUDA runtime
    is found", in torch's glog format with its file paths); all as before afterwards. ``debug``: everything as
    is. ``one_line_warnings=False``: warnings keep Python's own format (for the API's callers)."""
    disabled = logging.root.manager.disable
    handlers = [] if debug else _torch_log_handlers()
    with warnings.catch_warnings():
        if not debug:
            if one_line_warnings:
                warnings.showwarning = show_warning
            for message, module in QUIET:
                warnings.filterwarnings("ignore", message=message, module=module)
            for category in (DeprecationWarning, FutureWarning):  # Lightning's own use of torch APIs
                warnings.filterwarnings("ignore", category=category, module=r"lightning\.")
            logging.disable(max(disabled, logging.INFO))
            for handler in handlers:
                handler.addFilter(_errors_only)
        try:
            yield
        finally:
            logging.disable(disabled)
            for handler in handlers:
                handler.removeFilter(_errors_only)
