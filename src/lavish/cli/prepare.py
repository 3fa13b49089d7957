"""``lavish prepare TASK --root DIR --out DIR``: decode a dataset once into a prepared cache.

Decode every video of a dataset once (frames at the backbone's size, log-mel spectrograms) into a cache folder.
Resumable: rerun the same command after an interruption. Videos that cannot be decoded are listed in
<out>/failed.tsv and left out. The backbone decides the frame size and the audio front-end
(:func:`lavish.engine.registry.input_spec`), so a cache is made for one backbone family; ``lavish train`` refuses a
cache made for another one.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from lavish.cli.options import DEFAULT_BACKBONE, add_task_options, task_option_values
from lavish.errors import ConfigError
from lavish.engine.registry import TASKS


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("prepare", help="decode a dataset once into a cache of frames and spectrograms",
                                   description=__doc__)
    tasks = parser.add_subparsers(dest="task", metavar="TASK", required=True)
    for task in TASKS.values():
        p = tasks.add_parser(task.name, help=task.title, description=__doc__)
        p.add_argument("--root", type=Path, required=True, metavar="DIR", help="dataset folder")
        p.add_argument("--out", type=Path, required=True, metavar="DIR", help="cache folder (created)")
        p.add_argument("--workers", type=int, default=1, metavar="N", help="decoding processes (default 1)")
        p.add_argument("--backbone", default=DEFAULT_BACKBONE, metavar="NAME",
                       help=f"timm backbone the cache is for; sets frame size and audio front-end (default "
                            f"{DEFAULT_BACKBONE})")
        p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
        add_task_options(p, task, "prepare")
        p.set_defaults(func=run, write_error_hint=lambda args: "the cache is resumable (finished videos are kept): "
                       "free some space, then rerun the same command")


def run(args: argparse.Namespace) -> int:
    from lavish.api import prepare

    if args.workers < 1:
        raise ConfigError(f"--workers must be at least 1, got {args.workers}")
    task = TASKS[args.task]
    result = prepare(task.name, args.root, args.out, backbone=args.backbone, workers=args.workers,
                     progress=args.progress, **task_option_values(task, args, "prepare"))
    height, width = result["frame_size"]
    print(f"{task.name} cache for {args.backbone}: frames {height}x{width}, audio front-end {result['frontend']!r}")
    print(result["summary"])
    return 0 if result["usable"] else 1
