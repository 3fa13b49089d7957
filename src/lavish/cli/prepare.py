"""``lavish prepare TASK --root DIR --out DIR``: decode a dataset once into a prepared cache.

The backbone decides the frame size and the audio front-end (:func:`lavish.models.input_spec.input_spec`), so a
cache is made for one backbone family; ``lavish train`` refuses a cache made for another one.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from lavish.data.prepare import PREPARERS
from lavish.errors import ConfigError

DEFAULT_BACKBONE = "swinv2_large_window12_192"


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "prepare",
        help="decode a dataset once into a cache of frames and spectrograms",
        description="Decode every video of a dataset once (frames at the backbone's size, log-mel spectrograms) "
        "into a cache folder. Resumable: rerun the same command after an interruption. Videos that cannot be "
        "decoded are listed in <out>/failed.tsv and left out.",
    )
    parser.add_argument("task", choices=tuple(PREPARERS), help="benchmark the dataset belongs to")
    parser.add_argument("--root", type=Path, required=True, metavar="DIR", help="dataset folder")
    parser.add_argument("--out", type=Path, required=True, metavar="DIR", help="cache folder (created)")
    parser.add_argument("--workers", type=int, default=1, metavar="N", help="decoding processes (default 1)")
    parser.add_argument("--backbone", default=DEFAULT_BACKBONE, metavar="NAME",
                        help=f"timm backbone the cache is for; sets frame size and audio front-end (default {DEFAULT_BACKBONE})")
    parser.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    parser.set_defaults(func=run, write_error_hint=lambda args: "the cache is resumable (finished videos are kept): "
                        "free some space, then rerun the same command")


def run(args: argparse.Namespace) -> int:
    from lavish.media.audio import get_frontend
    from lavish.models.input_spec import input_spec

    if args.workers < 1:
        raise ConfigError(f"--workers must be at least 1, got {args.workers}")
    prepare = PREPARERS[args.task]
    spec = input_spec(args.backbone, args.task)
    report = prepare(args.root, args.out, frame_size=spec.frame_size, frontend=get_frontend(spec.audio_frontend),
                     workers=args.workers, progress=args.progress)
    print(f"{args.task} cache for {args.backbone}: frames {spec.frame_size[0]}x{spec.frame_size[1]}, "
          f"audio front-end {spec.audio_frontend!r}")
    print(report.summary())
    return 0 if report.usable else 1
