"""Command-line options shared by several sub-commands (model choice), turned into typed configs."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import yaml

from lavish.errors import ConfigError

from lavish.models.adapters import ADAPTERS, CMA_MODES, FUSIONS, MODALITIES, PRESETS, adapter_config


def add_model_options(parser: argparse.ArgumentParser, *, default_backbone: str = "swinv2_large_window12_192") -> None:
    """--backbone, --adapter, --preset, --fusion, --cma, --modalities, --latents, --reduction, --groups,
    --formulation."""
    g = parser.add_argument_group("model")
    g.add_argument("--backbone", help=f"timm ViT / Swin-V2 name (default: {default_backbone})")
    g.add_argument("--adapter", choices=list(ADAPTERS), help="adapter kind (default: lavish)")
    g.add_argument("--preset", default=None, choices=list(PRESETS),
                   help="LAVISH settings of a paper task (default: the task's own preset)")
    g.add_argument("--fusion", choices=FUSIONS, help="cross-modal direction for lavish/avish (Table 4)")
    g.add_argument("--cma", choices=CMA_MODES,
                   help="cross-modal attention in front of adapter/compacter/lora (Table 6's CMA column: direct)")
    g.add_argument("--modalities", choices=MODALITIES, help="streams that run (Table 7; default: av)")
    g.add_argument("--latents", type=int, help="latent tokens m (lavish)")
    g.add_argument("--reduction", type=int, help="bottleneck downsample factor r")
    g.add_argument("--groups", type=int, help="groups G of the bottleneck maps")
    g.add_argument("--formulation", choices=("code", "paper"), help="lavish maths: the authors' code or the paper")
    parser.set_defaults(default_backbone=default_backbone)


def add_train_options(parser: argparse.ArgumentParser, *, task: str, unit: str, lr_help: str):
    """The options every ``lavish train TASK`` has; returns (weights group, training group) for task extras.

    unit: what one batch element is ("videos", "clips", "questions"); lr_help: the --lr help text.
    """
    parser.add_argument("--data", help=f"prepared cache folder (lavish prepare {task})")
    parser.add_argument("--out", help="run folder: checkpoints, logs, best.safetensors")
    parser.add_argument("--config", help="YAML file of settings (command-line flags win)")
    add_model_options(parser)
    g = parser.add_argument_group("backbone weights")
    g.add_argument("--no-pretrained", dest="pretrained", action="store_false", default=None,
                   help="random-init backbone (demo and tests; a real run uses pretrained weights)")
    g.add_argument("--backbone-weights", help="local timm checkpoint of the backbone (offline machines)")
    t = parser.add_argument_group("training")
    t.add_argument("--epochs", type=int)
    t.add_argument("--batch-size", type=int, help=f"{unit} per step, over all devices")
    t.add_argument("--lr", type=float, help=lr_help)
    t.add_argument("--patience", type=int, help="early stopping patience in epochs (default 5)")
    t.add_argument("--seed", type=int)
    t.add_argument("--precision", choices=("32", "bf16-mixed", "16-mixed"))
    t.add_argument("--devices", type=int, help="processes (CPU) or GPUs for DDP (default 1)")
    t.add_argument("--num-workers", type=int, help="data loader workers (default 0)")
    t.add_argument("--checkpointing", nargs="?", const="blocks", choices=("adapters", "blocks"), default=None,
                   help="activation checkpointing: recompute the adapters only (most of the memory saving for a few "
                        "%% of time) or whole blocks (least memory); bare --checkpointing = blocks")
    t.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    t.add_argument("--no-progress", dest="progress", action="store_false")
    return g, t


def resolve_model_defaults(args: argparse.Namespace) -> None:
    """Fill the model options still unset (after any config file) with their defaults."""
    args.backbone = args.backbone or args.default_backbone
    args.adapter = args.adapter or "lavish"
    args.modalities = args.modalities or "av"


def adapter_from_args(args: argparse.Namespace, task: str):
    """The AdapterConfig the options describe: the task preset's LAVISH/bottleneck settings, then overrides."""
    resolve_model_defaults(args)
    preset = PRESETS[args.preset or task]
    kind = args.adapter
    cls = ADAPTERS[kind]
    fields = {f.name for f in dataclasses.fields(cls)}
    base = {k: v for k, v in dataclasses.asdict(preset).items() if k in fields}
    if kind == "avish":
        base.pop("num_latents", None)
        base.pop("formulation", None)
    if args.cma is not None and "cma" not in fields:
        raise ConfigError(f"--cma does not apply to adapter {kind!r} (its settings: {', '.join(sorted(fields))})")
    overrides = {
        "cma": args.cma, "fusion": args.fusion, "num_latents": args.latents, "reduction": args.reduction,
        "groups": args.groups, "formulation": args.formulation,
    }
    for key, value in overrides.items():
        if value is not None:
            base[key] = value
    base = {k: v for k, v in base.items() if k in fields}
    return adapter_config(kind, **base)


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
