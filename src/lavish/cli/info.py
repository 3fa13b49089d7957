"""``lavish info``: trainable / frozen / total parameters and GFLOPs of a task model, without downloads."""

from __future__ import annotations

import argparse
import json

import torch

from lavish.cli.options import adapter_from_args, add_model_options
from lavish.errors import ConfigError
from lavish.media.audio import get_frontend
from lavish.models.accounting import account
from lavish.models.input_spec import input_spec


def register(sub) -> None:
    p = sub.add_parser("info", help="parameter and FLOP accounting of a model (paper Tables 1-3, 5)",
                       description=__doc__)
    p.add_argument("--task", default="ave", choices=("ave",), help="task whose model is counted")
    add_model_options(p)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run)


def build_model(args: argparse.Namespace):
    """The task model on the meta device (no memory, no download) and one segment of dummy input."""
    adapter = adapter_from_args(args, args.task)  # also fills the model defaults
    spec = input_spec(args.backbone, args.task)
    frontend = get_frontend(spec.audio_frontend)
    if args.task == "ave":
        from lavish.models.ave import AveModel, AveModelConfig

        with torch.device("meta"):
            model = AveModel(AveModelConfig(backbone=args.backbone, adapter=adapter, modalities=args.modalities))
        inputs = (
            torch.zeros(1, 1, frontend.target_frames, frontend.num_mel_bins, device="meta"),
            torch.zeros(1, 1, 3, *spec.frame_size, device="meta"),
        )
        return model, inputs
    raise ConfigError(f"task {args.task!r} has no model yet")


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
