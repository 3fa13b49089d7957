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
import os
import sys
import traceback

from lavish.errors import LavishError, WriteError
from lavish.quiet import QUIET, one_line, show_warning, user_facing_output  # noqa: F401  (names of this module before)
from lavish.benchmarking.allocator import keep_freed_memory

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
