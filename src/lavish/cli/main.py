"""The ``lavish`` command: one sub-command per module, registered in :data:`COMMANDS`.

Each sub-command module exposes ``register(subparsers)`` which adds its parser and sets ``func`` (called with
the parsed namespace, returns an exit code). Errors derived from :class:`lavish.errors.LavishError` are printed
as one line (``error: ...``) with exit code 2; nothing else is caught.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from lavish.errors import LavishError
from lavish.tasks.allocator import keep_freed_memory

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
)


def build_parser() -> argparse.ArgumentParser:
    from lavish import __version__

    parser = argparse.ArgumentParser(
        prog="lavish",
        description="Teach a frozen image-pretrained vision transformer to see and hear (LAVISH, CVPR 2023).",
    )
    parser.add_argument("--version", action="version", version=f"lavish {__version__}")
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
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except LavishError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
