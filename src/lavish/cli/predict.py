"""``lavish predict VIDEO... --checkpoint FILE``: run a trained model on your own videos.

The task is the adapter file's: AVE prints a label per second (``--plot``: a timeline PNG), AVVP the events heard
and the events seen in each second (``--plot``: a timeline with an audio and a visual row), AVS writes a mask per
second and a contact sheet (``--out DIR``), AVQA models answer questions instead (``lavish ask``). One video that
cannot be read is reported and the others go on (exit 1); ``--json`` prints a list, one entry per video.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from lavish.cli.options import task_option_values
from lavish.errors import ConfigError, LavishError
from lavish.engine.registry import TASKS

#: predict's own options that a task may write to, and the task attribute value that says it does
OUTPUT_OPTIONS = {"plot": "--plot", "out": "--out"}


def register(sub) -> None:
    p = sub.add_parser("predict", help="run a trained model on your videos (AVE: label every second; AVVP: heard / seen events)",
                       description=__doc__)
    p.add_argument("videos", nargs="+", metavar="VIDEO")
    p.add_argument("--checkpoint", required=True, help="adapter file (best.safetensors of a run)")
    p.add_argument("--backbone-weights", help="local timm checkpoint of the backbone, if the run used one")
    p.add_argument("--json", action="store_true", help="print a JSON list, one entry per video")
    p.add_argument("--plot", help="AVE, AVVP: timeline PNG (several videos: the video's stem is appended)")
    p.add_argument("--out", help="AVS: folder for the mask PNGs and contact sheets")
    seen = {"--plot", "--out"}
    g = p.add_argument_group("task options")
    for task in TASKS.values():
        for option in task.options:
            if "predict" in option.commands and option.flags[0] not in seen:
                seen.add(option.flags[0])
                g.add_argument(*option.flags, **option.kwargs)
    p.set_defaults(func=run)


def _refuse_foreign(args: argparse.Namespace, task) -> dict:
    """The options of the file's task; any other given option is refused."""
    own = task_option_values(task, args, "predict")
    for name, flag in OUTPUT_OPTIONS.items():
        if getattr(args, name) is not None and name not in task.predict_outputs:
            raise ConfigError(f"{flag} does not apply to {task.name.upper()} predictions")
    for other in TASKS.values():
        for option in other.options:
            if ("predict" in option.commands and option.dest not in own
                    and getattr(args, option.dest, None) is not None):
                raise ConfigError(f"{option.flags[0]} does not apply to {task.name.upper()} predictions")
    if "out" in task.predict_outputs and args.out is None:
        raise ConfigError(f"{task.name.upper()} predictions are files: pass --out DIR")
    return own


def run(args: argparse.Namespace) -> int:
    from lavish.api import load

    model = load(args.checkpoint, backbone_weights=args.backbone_weights)
    task = model.task
    options = _refuse_foreign(args, task)
    results, failed = [], 0
    for video in args.videos:
        per_video = dict(options)
        if args.plot is not None:
            plot = Path(args.plot)
            if len(args.videos) > 1:
                plot = plot.with_name(f"{plot.stem}-{Path(video).stem}{plot.suffix or '.png'}")
            per_video["plot"] = plot
        if args.out is not None:
            per_video["out"] = args.out
        try:
            res = model.predict(video, **per_video)
        except LavishError as err:
            if len(args.videos) == 1:
                raise
            print(f"error: {err}", file=sys.stderr)
            failed += 1
            continue
        results.append(res)
        if not args.json:
            print("\n".join(task.predict_lines(res)))
    if args.json:
        print(json.dumps(results))
    return 1 if failed else 0
