"""``lavish info``: trainable / frozen / total parameters and GFLOPs of a task model, without downloads."""

from __future__ import annotations

import argparse
import importlib
import json

from lavish.cli.options import add_model_options
from lavish.cli.train import task_modules
from lavish.models.accounting import account


def register(sub) -> None:
    p = sub.add_parser("info", help="parameter and FLOP accounting of a model (paper Tables 1-3, 5)",
                       description=__doc__)
    p.add_argument("--task", default="ave", choices=[m.__name__.rsplit(".", 1)[1] for m in task_modules()],
                   help="task whose model is counted")
    add_model_options(p)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run)


def build_model(args: argparse.Namespace):
    """(task model on the meta device, one segment of dummy input): from ``lavish.cli.<task>.info_model``."""
    module = importlib.import_module(f"lavish.cli.{args.task}")
    return module.info_model(args)


def run(args: argparse.Namespace) -> int:
    model, inputs = build_model(args)
    acc = account(model, args.backbone, inputs)
    if args.json:
        print(json.dumps({"task": args.task, "adapter": model.backbone.adapter_config.to_dict(), **acc.to_dict()}))
        return 0
    rows = [
        ("backbone", acc.backbone),
        ("adapter", model.backbone.adapter_config.kind),
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
