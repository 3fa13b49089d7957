"""``lavish info``: trainable / frozen / total parameters and GFLOPs of a task model, without downloads."""

from __future__ import annotations

import argparse
import json

from lavish.cli.options import (add_model_options, add_train_options, apply_config_file, model_config_from_args,
                                task_option_values)
from lavish.engine.registry import TASKS, get_task


def register(sub) -> None:
    p = sub.add_parser("info", help="parameter and FLOP accounting of a model (paper Tables 1-3, 5)",
                       description=__doc__)
    p.add_argument("--task", default="ave", choices=list(TASKS), help="task whose model is counted")
    p.add_argument("--config", help="a row's YAML file (configs/<task>/): count the model it trains")
    add_model_options(p)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run)


def model_config(args: argparse.Namespace):
    """The model ``lavish train TASK`` would build with these model options (and ``--config`` file)."""
    task = get_task(args.task)
    parser = argparse.ArgumentParser(prog=f"lavish train {task.name}")
    add_train_options(parser, task)
    train_args = parser.parse_args([])
    for key, value in vars(args).items():
        if hasattr(train_args, key) and value is not None:
            setattr(train_args, key, value)
    apply_config_file(train_args, parser)
    values = task_option_values(task, train_args)
    train_fields = set(task.train_config_cls.__dataclass_fields__)
    model_values = {k: v for k, v in values.items() if k not in train_fields and k not in task.data_options}
    return task, model_config_from_args(task, train_args, model_values), train_args


def run(args: argparse.Namespace) -> int:
    from lavish.api import info

    _, config, _ = model_config(args)
    result = info(args.task, config)
    if args.json:
        print(json.dumps(result))
        return 0
    acc = _Counts(result)
    rows = [
        ("backbone", acc.backbone),
        ("adapter", result["adapter"]["kind"]),
        ("trainable params", f"{acc.trainable_params:,} ({acc.trainable_params / 1e6:.2f}M)"),
        ("  adapters", f"{acc.adapter_params:,}"),
        ("  task head", f"{acc.head_params:,}"),
        ("frozen params", f"{acc.frozen_params:,}"),
        ("total params", f"{acc.total_params:,} ({acc.total_params / 1e6:.2f}M)"),
        ("total + pretrained classifier", f"{acc.total_params_with_pretrained_head:,} "
                                          f"({acc.total_params_with_pretrained_head / 1e6:.2f}M, the paper's convention)"),
        ("GFLOPs / segment, backbone", f"{acc.backbone_gflops:.2f} ({acc.backbone_gmacs:.2f} GMACs)"),
        ("GFLOPs / segment, adapters", f"{acc.adapter_gflops:.3f} ({acc.adapter_gmacs:.3f} GMACs)"),
    ]
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"{key:<{width}}  {value}")
    return 0


class _Counts:
    """The dict of :func:`lavish.info` read by attribute, for the table."""

    def __init__(self, data: dict) -> None:
        self.__dict__.update(data)
