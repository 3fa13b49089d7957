"""AVE sub-commands: ``lavish train ave`` and ``lavish eval ave``.

Training defaults are the authors' AVE recipe (spec section 4). Settings come from the defaults, then a YAML file
(``--config``, keys = the long option names with ``_``), then the command line; ``configs/ave/*.yaml`` hold one
file per row of the paper's Tables 1, 4, 6, 7, 8 and Fig. 4. Evaluation reports segment accuracy (background
included), per-class accuracy and a confusion matrix PNG.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from lavish.cli.options import adapter_from_args, add_train_options, apply_config_file
from lavish.errors import ConfigError


def info_model(args: argparse.Namespace):
    """The AVE model on the meta device (no memory, no download) and one 1-second segment of input."""
    import torch

    from lavish.media.audio import get_frontend
    from lavish.models.ave import AveModel, AveModelConfig
    from lavish.models.input_spec import input_spec

    adapter = adapter_from_args(args, "ave")  # also fills the model defaults
    spec = input_spec(args.backbone, "ave")
    frontend = get_frontend(spec.audio_frontend)
    with torch.device("meta"):
        model = AveModel(AveModelConfig(backbone=args.backbone, adapter=adapter, modalities=args.modalities))
    inputs = (
        torch.zeros(1, 1, frontend.target_frames, frontend.num_mel_bins, device="meta"),
        torch.zeros(1, 1, 3, *spec.frame_size, device="meta"),
    )
    return model, inputs


def register_train(tasks) -> None:
    p = tasks.add_parser("ave", help="audio-visual event localisation (AVE)", description=__doc__)
    _, t = add_train_options(p, task="ave", unit="videos", lr_help="adapter learning rate (default 5e-5)")
    t.add_argument("--lr-head", type=float, help="head learning rate (default 4e-6)")
    t.add_argument("--extra-audio-features", help="h5 file of per-second audio features (Table 8, VGGish)")
    p.set_defaults(func=run_train, task="ave")


def run_train(args: argparse.Namespace) -> int:
    from lavish.models.ave import AveModelConfig
    from lavish.tasks.ave import AveTrainConfig, train_ave

    apply_config_file(args)
    if not args.data or not args.out:
        raise ConfigError("train needs --data (a prepared cache) and --out (a run folder)")
    adapter = adapter_from_args(args, args.task)  # also fills the model defaults
    model_config = AveModelConfig(backbone=args.backbone, adapter=adapter, modalities=args.modalities,
                                  checkpointing=args.checkpointing or False,
                                  train_norms=False)
    overrides = {k: getattr(args, k) for k in ("epochs", "batch_size", "lr", "lr_head", "patience", "seed",
                                               "precision", "devices", "num_workers")
                 if getattr(args, k) is not None}
    if "precision" in overrides:
        overrides["precision"] = str(overrides["precision"])
    train_config = AveTrainConfig(**overrides)
    pretrained = True if args.pretrained is None else args.pretrained
    result = train_ave(args.data, args.out, model_config, train_config, pretrained=pretrained or bool(args.backbone_weights),
                       backbone_weights=args.backbone_weights, resume=args.resume,
                       extra_features=args.extra_audio_features, progress=args.progress)
    from lightning.pytorch.utilities import rank_zero_only

    if result.best_val_acc is not None and rank_zero_only.rank == 0:
        print(f"best validation accuracy {result.best_val_acc:.4f} at epoch {result.best_epoch}; "
              f"test accuracy {result.test_acc if result.test_acc is None else round(result.test_acc, 4)}; "
              f"adapter file {result.adapter} ({result.seconds:.0f} s)")
    return 0


def register_eval(tasks) -> None:
    p = tasks.add_parser("ave", help="segment accuracy, per-class accuracy, confusion matrix", description=__doc__)
    p.add_argument("--checkpoint", required=True, help="adapter file (best.safetensors of a run)")
    p.add_argument("--data", required=True, help="prepared cache folder")
    p.add_argument("--split", default="test", choices=("train", "val", "test"))
    p.add_argument("--backbone-weights", help="local timm checkpoint of the backbone, if the run used one")
    p.add_argument("--confusion", help="confusion matrix PNG (default: next to the checkpoint)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run_eval, task="ave")


def run_eval(args: argparse.Namespace) -> int:
    from lavish.tasks.ave import evaluate_ave

    png = Path(args.confusion) if args.confusion else Path(args.checkpoint).with_name(f"confusion-{args.split}.png")
    result = evaluate_ave(args.checkpoint, args.data, split=args.split, backbone_weights=args.backbone_weights,
                          confusion_png=png, progress=not args.json)
    result["confusion_png"] = str(png)
    if args.json:
        print(json.dumps(result))
        return 0
    print(f"{args.split}: accuracy {result['accuracy']:.4f} over {result['segments']} segments")
    for name, acc in result["per_class"].items():
        print(f"  {name:<40} {'-' if acc is None else f'{acc:.3f}'}")
    print(f"confusion matrix: {png}")
    return 0
