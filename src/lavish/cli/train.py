"""``lavish train ave``: train on a prepared cache (defaults: the authors' AVE recipe, spec section 4).

Settings come from the defaults, then a YAML file (``--config``, keys = the long option names with ``_``), then
the command line. ``configs/ave/*.yaml`` hold one file per row of the paper's Tables 1, 4, 6, 7 and 8.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import yaml

from lavish.cli.options import adapter_from_args, add_model_options
from lavish.errors import ConfigError


def register(sub) -> None:
    p = sub.add_parser("train", help="train a task model on a prepared dataset", description=__doc__)
    p.add_argument("task", choices=("ave",))
    p.add_argument("--data", required=False, help="prepared cache folder (lavish prepare)")
    p.add_argument("--out", required=False, help="run folder: checkpoints, logs, best.safetensors")
    p.add_argument("--config", help="YAML file of settings (command-line flags win)")
    add_model_options(p)
    g = p.add_argument_group("backbone weights")
    g.add_argument("--no-pretrained", dest="pretrained", action="store_false", default=None,
                   help="random-init backbone (demo and tests; a real run uses pretrained weights)")
    g.add_argument("--backbone-weights", help="local timm checkpoint of the backbone (offline machines)")
    t = p.add_argument_group("training")
    t.add_argument("--epochs", type=int)
    t.add_argument("--batch-size", type=int, help="videos per step, over all devices (default 2)")
    t.add_argument("--lr", type=float, help="adapter learning rate (default 5e-5)")
    t.add_argument("--lr-head", type=float, help="head learning rate (default 4e-6)")
    t.add_argument("--patience", type=int, help="early stopping patience in epochs (default 5)")
    t.add_argument("--seed", type=int)
    t.add_argument("--precision", choices=("32", "bf16-mixed", "16-mixed"))
    t.add_argument("--devices", type=int, help="processes (CPU) or GPUs for DDP (default 1)")
    t.add_argument("--num-workers", type=int, help="data loader workers (default 0)")
    t.add_argument("--checkpointing", action="store_true", default=None, help="activation checkpointing of blocks")
    t.add_argument("--extra-audio-features", help="h5 file of per-second audio features (Table 8, VGGish)")
    t.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    t.add_argument("--no-progress", dest="progress", action="store_false")
    p.set_defaults(func=run)


def apply_config_file(args: argparse.Namespace) -> None:
    """Fill options left unset on the command line from ``--config``."""
    if not args.config:
        return
    path = Path(args.config)
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as err:
        raise ConfigError(f"config file {path}: cannot read it ({str(err).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path}: expected a mapping of option: value")
    for key, value in data.items():
        name = key.replace("-", "_")
        if not hasattr(args, name) or name in ("config", "func", "task", "default_backbone"):
            raise ConfigError(f"config file {path}: unknown setting {key!r}")
        if getattr(args, name) in (None, False):
            setattr(args, name, value)


def run(args: argparse.Namespace) -> int:
    from lavish.models.ave import AveModelConfig
    from lavish.tasks.ave import AveTrainConfig, train_ave

    apply_config_file(args)
    if not args.data or not args.out:
        raise ConfigError("train needs --data (a prepared cache) and --out (a run folder)")
    adapter = adapter_from_args(args, args.task)  # also fills the model defaults
    model_config = AveModelConfig(backbone=args.backbone, adapter=adapter, modalities=args.modalities,
                                  checkpointing=bool(args.checkpointing),
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
    if result.best_val_acc is not None:
        print(f"best validation accuracy {result.best_val_acc:.4f} at epoch {result.best_epoch}; "
              f"test accuracy {result.test_acc if result.test_acc is None else round(result.test_acc, 4)}; "
              f"adapter file {result.adapter} ({result.seconds:.0f} s)")
    return 0
