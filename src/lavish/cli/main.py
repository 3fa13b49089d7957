"""The ``lavish`` command: one sub-command per module, registered in :data:`COMMANDS`.

Each sub-command module exposes ``register(subparsers)`` which adds its parser and sets ``func`` (called with
the parsed namespace, returns an exit code). What reaches the user is one line, never a traceback:

* bad input (a :class:`lavish.errors.LavishError`: a file that cannot be read, a setting out of range, a disk that
  is full) prints ``error: <message>`` and exits with code 2; a sub-command may set ``write_error_hint(args)`` to
  say how to continue after a failed write (``lavish prepare``, ``lavish train``);
* anything else is a bug of ours: ``error: internal error: <type>: <message> (...)`` and exit code 1;
* warnings print as ``warning: <message>`` (no file name, no source line); Lightning's notes that a user
  cannot act on (:data:`QUIET`, its deprecation notices) and INFO log lines are not shown.

``lavish --debug COMMAND ...`` (or ``LAVISH_DEBUG=1``) shows the traceback of any error and warnings in Python's
own format (file and line), for reporting a bug.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import logging
import os
import sys
import traceback
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

from lavish.errors import LavishError, WriteError
from lavish.bench.allocator import keep_freed_memory

#: sub-command modules, in the order ``lavish --help`` lists them
COMMANDS = (
    "lavish.cli.demo",
    "lavish.cli.prepare",
    "lavish.cli.train",
    "lavish.cli.evaluate",
    "lavish.cli.predict",
    "lavish.cli.info",
    "lavish.cli.ask",
    "lavish.cli.bench",
    "lavish.cli.serve",
)

DEBUG_ENV = "LAVISH_DEBUG"
FULL_DISK = (errno.ENOSPC, errno.EDQUOT, errno.EROFS)

#: (message regex, module regex) of warnings not shown: Lightning's notes about choices lavish makes on purpose
#: (data loaders without workers by default, fewer steps than the logging interval on tiny splits, logging and
#: checkpointing into a resumed run's folder)
QUIET = (
    (r".*does not have many workers", r"lightning"),
    (r".*number of training batches .* is smaller than the logging interval", r"lightning"),
    (r"Experiment logs directory .* exists and is not empty", r"lightning"),
    (r"Checkpoint directory .* exists and is not empty", r"lightning"),
)


def build_parser() -> argparse.ArgumentParser:
    from lavish import __version__

    parser = argparse.ArgumentParser(
        prog="lavish",
        description="Teach a frozen image-pretrained vision transformer to see and hear (LAVISH, CVPR 2023).",
    )
    parser.add_argument("--version", action="version", version=f"lavish {__version__}")
    parser.add_argument("--debug", action="store_true",
                        help=f"show the traceback of any error and where warnings come from (also {DEBUG_ENV}=1)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as err:  # a sub-command not built yet in this checkout
            if err.name == name:
                continue
            raise
        module.register(sub)
    return parser


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
def user_facing_output(debug: bool) -> Iterator[None]:
    """While a command runs: one-line warnings without the notes in :data:`QUIET`, no INFO log lines (lavish
    logs nothing; Lightning's say which accelerators it found, advertise, and narrate its steps), and none of
    torch's log lines below ERROR (the compiler's notes while ``--fused-adapters`` compiles, e.g. "No CUDA runtime
    is found", in torch's glog format with its file paths); all as before afterwards. ``debug``: everything as
    is."""
    disabled = logging.root.manager.disable
    handlers = [] if debug else _torch_log_handlers()
    with warnings.catch_warnings():
        if not debug:
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


def main(argv: list[str] | None = None) -> int:
    keep_freed_memory()  # CPU steps reuse their activation buffers instead of page-faulting them in again
    parser = build_parser()
    args = parser.parse_args(argv)
    debug = args.debug or os.environ.get(DEBUG_ENV, "0") not in ("", "0")
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    with user_facing_output(debug):
        try:
            return int(args.func(args) or 0)
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            return 130
        except Exception as err:  # noqa: BLE001  every error is one line; the traceback is behind --debug
            if isinstance(err, OSError) and err.errno in FULL_DISK:  # a write outside lavish.fileio (Lightning's logs)
                err = WriteError(f"cannot write {err.filename or 'a file'} ({err.strerror})")
            if not isinstance(err, LavishError):
                if debug:
                    raise
                print(f"error: internal error: {type(err).__name__}: {one_line(err)} (a bug in lavish: "
                      f"`lavish --debug {args.command} ...` shows the traceback)", file=sys.stderr)
                return 1
            if debug:
                traceback.print_exc()
            hint = getattr(args, "write_error_hint", None)
            message = f"{err}; {hint(args)}" if isinstance(err, WriteError) and hint else str(err)
            print(f"error: {one_line(message, 2000)}", file=sys.stderr)
            return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
