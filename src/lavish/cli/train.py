"""``lavish train TASK``: train a task's model on a prepared dataset; one sub-command per registered task.

Settings come from the defaults (the authors' recipe of each task), then a YAML file (``--config``, keys = the long
option names), then the command line; ``configs/<task>/*.yaml`` hold one file per row of the paper's tables.
"""

from __future__ import annotations

import argparse

from lavish.cli.options import (add_train_options, apply_config_file, model_config_from_args, task_option_values,
                                train_config_from_args)
from lavish.errors import ConfigError
from lavish.engine.registry import TASKS


def register(sub) -> None:
    p = sub.add_parser("train", help="train a task model on a prepared dataset", description=__doc__)
    tasks = p.add_subparsers(dest="task", metavar="TASK", required=True)
    for task in TASKS.values():
        tp = tasks.add_parser(task.name, help=task.title, description=task.description,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
        add_train_options(tp, task)
        tp.set_defaults(func=run, parser=tp)
    p.set_defaults(write_error_hint=after_write_error)


def after_write_error(args) -> str:
    """How to continue a run stopped by a failed write (the disk is full): every file in it is whole."""
    from lavish.engine.runner import last_checkpoint

    if args.out and last_checkpoint(args.out).exists():
        again = "rerun the same command" if args.resume else "rerun the same command with --resume"
        return f"the run is resumable from its last epoch: free some space, then {again}"
    return "no epoch was saved yet: free some space, then rerun the same command"


def run(args: argparse.Namespace) -> int:
    from lightning.pytorch.utilities import rank_zero_only

    from lavish.engine.train import train

    task = TASKS[args.task]
    apply_config_file(args)
    if not args.data or not args.out:
        raise ConfigError("train needs --data (a prepared cache) and --out (a run folder)")
    values = task_option_values(task, args)
    data_options = {k: values.pop(k) for k in list(values) if k in task.data_options}
    train_config = train_config_from_args(task, args, values)
    train_fields = set(train_config.__dataclass_fields__)
    model_config = model_config_from_args(task, args, {k: v for k, v in values.items() if k not in train_fields})
    if args.pretrained is False and args.backbone_weights:
        raise ConfigError("--no-pretrained does not go with --backbone-weights, which loads pretrained weights: "
                          "give one of them")
    pretrained = (True if args.pretrained is None else args.pretrained) or bool(args.backbone_weights)
    result = train(task, args.data, args.out, model_config, train_config, pretrained=pretrained,
                   backbone_weights=args.backbone_weights, resume=bool(args.resume),
                   progress=args.progress is not False, data_options=data_options)
    if result.best_value is not None and rank_zero_only.rank == 0:
        print("\n".join(task.train_lines(result)))
    return 0
