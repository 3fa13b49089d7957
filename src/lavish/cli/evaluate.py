"""``lavish eval TASK --checkpoint FILE --data CACHE``: evaluate an adapter file on a split of a prepared cache.

Prints the task's metrics (AVE: segment accuracy, per class; AVS: mIoU, F-score; AVQA: accuracy per question type),
or one JSON object with ``--json``.
"""

from __future__ import annotations

import argparse
import json

from lavish.cli.options import add_task_options, task_option_values
from lavish.engine.registry import TASKS


def register(sub) -> None:
    p = sub.add_parser("eval", help="evaluate an adapter file on a prepared split", description=__doc__)
    tasks = p.add_subparsers(dest="task", metavar="TASK", required=True)
    for task in TASKS.values():
        tp = tasks.add_parser(task.name, help=task.title, description=__doc__)
        tp.add_argument("--checkpoint", required=True, help="adapter file (best.safetensors of a run)")
        tp.add_argument("--data", required=True, help="prepared cache folder")
        tp.add_argument("--split", default="test", choices=("train", "val", "test"))
        tp.add_argument("--batch-size", type=int, default=2, help="clips per forward pass (default: %(default)s)")
        tp.add_argument("--backbone-weights", help="local timm checkpoint of the backbone, if the run used one")
        tp.add_argument("--json", action="store_true", help="print one JSON object")
        add_task_options(tp, task, "eval")
        tp.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from lavish.errors import ConfigError
    from lavish.engine.train import evaluate

    task = TASKS[args.task]
    if args.batch_size < 1:
        raise ConfigError(f"--batch-size {args.batch_size} is not valid: it must be at least 1")
    result = evaluate(args.checkpoint, args.data, split=args.split, backbone_weights=args.backbone_weights,
                      batch_size=args.batch_size, progress=not args.json, task=task,
                      **task_option_values(task, args, "eval"))
    print(json.dumps(result) if args.json else "\n".join(task.eval_lines(result)))
    return 0
