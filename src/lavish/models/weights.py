"""Adapter-only weights: save and load what training changes, never the frozen backbone.

A file is a safetensors archive of (a) every trainable parameter, (b) every parameter and buffer outside the
frozen timm model (adapters, their BatchNorm statistics, the head), with the model configuration as JSON in the
safetensors metadata (``lavish.config``) plus free-form ``lavish.meta`` (task, classes, front-end...). Loading
rebuilds the model from the configuration and refuses, in one line, a file made for another backbone, adapter or
task, or a corrupt file. safetensors never unpickles anything.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from lavish.errors import CheckpointError
from lavish.fileio import atomic_path

FROZEN_PREFIX = "backbone.backbone."
"""where the frozen timm model sits in the task models (``model.backbone`` is the LavishBackbone)"""


def frozen_prefixes(model: nn.Module) -> tuple[str, ...]:
    """State-dict prefixes of the frozen timm models inside ``model``: ``<path>.backbone.`` of every
    LavishBackbone it holds (``backbone.`` when ``model`` is one), wherever a user's model keeps it."""
    return tuple(f"{name}.backbone." if name else "backbone." for name, module in model.named_modules()
                 if _is_backbone(module))


def adapter_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """The tensors an adapter file holds (see module doc), detached and contiguous."""
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    frozen = frozen_prefixes(model)
    return {
        name: t.detach().contiguous()
        for name, t in model.state_dict().items()
        if not name.startswith(frozen) or name in trainable
    }


def _backbones(model: nn.Module) -> dict:
    """attribute path -> LavishBackbone, of every LavishBackbone ``model`` holds (itself: "")."""
    return {name or "": m for name, m in model.named_modules() if _is_backbone(m)}


def _is_backbone(module: nn.Module) -> bool:
    """A :class:`lavish.models.backbone.LavishBackbone` (told by its class marker: the backbone imports this
    module to save and load its adapters, so this one does not import it back)."""
    return getattr(type(module), "is_lavish_backbone", False)


def file_config(model: nn.Module) -> dict:
    """What an adapter file records about ``model``: a task model's config (``to_dict()``), or for any other model
    the settings of the LavishBackbone(s) it holds (``{"lavish_backbones": {path: {backbone, family, adapter,
    modalities}}}``). ConfigError when it holds none."""
    from lavish.errors import ConfigError

    config = getattr(model, "config", None)
    if hasattr(config, "to_dict"):
        return config.to_dict()
    backbones = _backbones(model)
    if not backbones:
        raise ConfigError(f"{type(model).__name__} holds no LavishBackbone: nothing to save as adapters")
    return {"lavish_backbones": {
        name: {"backbone": m.backbone_name, "family": m.family.name, "adapter": m.adapter_config.to_dict(),
               "modalities": m.modalities}
        for name, m in backbones.items()}}


#: safetensors metadata key of the frame statistics of each LavishBackbone (absent in files written before them:
#: those keep ImageNet's)
FRAMES_KEY = "lavish.frame_stats"


def frame_stats_of(model: nn.Module) -> dict:
    """{attribute path: {"mean": [3], "std": [3]}} of the LavishBackbones of ``model``."""
    return {name: {"mean": list(m.frame_mean), "std": list(m.frame_std)} for name, m in _backbones(model).items()}


def apply_frame_stats(model: nn.Module, recorded: dict | None) -> None:
    """Set the frame statistics of ``model``'s LavishBackbones from an adapter file's record; ImageNet's for a
    file without one (written before they were recorded), so that old files give the outputs they always gave."""
    from lavish.media.frames import IMAGENET_MEAN, IMAGENET_STD

    for name, backbone in _backbones(model).items():
        stats = (recorded or {}).get(name) or {"mean": IMAGENET_MEAN, "std": IMAGENET_STD}
        backbone.frame_mean = tuple(float(x) for x in stats["mean"])
        backbone.frame_std = tuple(float(x) for x in stats["std"])


def save_adapter(model: nn.Module, path: str | Path, config: dict, meta: dict | None = None) -> Path:
    """Write ``model``'s adapter state with ``config`` (the model's ``to_dict()``) atomically to ``path``; the frame
    statistics of its LavishBackbones go with them (:data:`FRAMES_KEY`)."""
    path = Path(path)
    metadata = {"lavish.config": json.dumps(config, sort_keys=True), "lavish.meta": json.dumps(meta or {}),
                FRAMES_KEY: json.dumps(frame_stats_of(model))}
    with atomic_path(path) as tmp:
        save_file(adapter_state(model), tmp, metadata=metadata)
    return path


def read_frame_stats(path: str | Path) -> dict | None:
    """The frame statistics an adapter file records (:data:`FRAMES_KEY`), None for a file without them."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), "pt") as f:
            raw = (f.metadata() or {}).get(FRAMES_KEY)
        return json.loads(raw) if raw else None
    except (SafetensorError, OSError, ValueError) as err:
        raise CheckpointError(f"checkpoint {path}: unreadable frame statistics ({err})") from None


def read_adapter(path: str | Path) -> tuple[dict, dict, dict[str, torch.Tensor]]:
    """(config, meta, tensors) of an adapter file; CheckpointError if missing, corrupt or not ours."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        tensors = load_file(str(path))
        from safetensors import safe_open

        with safe_open(str(path), "pt") as f:
            metadata = f.metadata() or {}
    except (SafetensorError, OSError, ValueError) as err:
        raise CheckpointError(f"checkpoint {path} is not a readable safetensors file ({err})") from None
    if "lavish.config" not in metadata:
        raise CheckpointError(f"checkpoint {path} is not a lavish adapter file (no lavish.config metadata)")
    found = []
    for key, default in (("lavish.config", None), ("lavish.meta", "{}")):
        try:
            value = json.loads(metadata.get(key, default))
        except json.JSONDecodeError as err:
            raise CheckpointError(f"checkpoint {path}: its {key} metadata is not valid JSON ({err})") from None
        if not isinstance(value, dict):
            raise CheckpointError(f"checkpoint {path}: its {key} metadata is a JSON {type(value).__name__}, "
                                  "not an object")
        found.append(value)
    return found[0], found[1], tensors


def describe(config: dict) -> str:
    """A short account of what an adapter file's configuration is for: a task model's backbone, adapter,
    modalities and classes, or the LavishBackbone(s) of a user's own model."""
    if "lavish_backbones" in config:
        parts = [f"{name or 'the model'}: backbone {b.get('backbone')}, adapter {b.get('adapter', {}).get('kind')}, "
                 f"modalities {b.get('modalities')}" for name, b in sorted(config["lavish_backbones"].items())]
        return "your own model with " + "; ".join(parts)
    adapter = config.get("adapter", {})
    return (f"backbone {config.get('backbone')}, adapter {adapter.get('kind')}, modalities "
            f"{config.get('modalities')}, {config.get('num_classes')} classes")


def _leaves(value, prefix: str = "") -> dict[str, object]:
    """A nested configuration as {"a.b.c": leaf}."""
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            out.update(_leaves(item, f"{prefix}.{key}" if prefix else str(key)))
        return out
    return {prefix: value}


def differences(saved: dict, config: dict, limit: int = 4) -> str:
    """The settings that differ between a file's configuration and a model's: "adapter.num_latents: file 2,
    model 4; ..." (the first ``limit``; ``lavish_backbones.`` left out of the names)."""
    a, b = _leaves(saved), _leaves(config)
    first = ("kind", "backbone", "modalities", "family")  # what decides everything else comes first
    keys = sorted((k for k in set(a) | set(b) if a.get(k, "absent") != b.get(k, "absent")),
                  key=lambda k: (k.rsplit(".", 1)[-1] not in first, k))
    shown = [f"{k.removeprefix('lavish_backbones.').lstrip('.')}: file {a.get(k, 'absent')!r}, "
             f"model {b.get(k, 'absent')!r}" for k in keys[:limit]]
    more = f"; and {len(keys) - limit} more" if len(keys) > limit else ""
    return "; ".join(shown) + more


def load_adapter_into(model: nn.Module, path: str | Path, config: dict | None = None) -> dict:
    """Load the adapter file ``path`` into ``model``; returns its meta.

    Refuses a file whose tensors do not fit the model, or whose configuration differs from ``config`` (the
    model's ``to_dict()``; None when the model was built from the file's own configuration).
    """
    saved, meta, tensors = read_adapter(path)
    config = None if config is None else json.loads(json.dumps(config, sort_keys=True))
    if config is not None and saved != config:
        if ("lavish_backbones" in saved) != ("lavish_backbones" in config):
            what = ("an adapter file of a user's own model (lavish.save_adapter): load it into that model"
                    if "lavish_backbones" in saved else
                    f"a task model's adapter file ({describe(saved)}): lavish.load(path) rebuilds that model")
            raise CheckpointError(f"checkpoint {path} is {what}, not one for this model ({describe(config)})")
        raise CheckpointError(
            f"checkpoint {path} was made for another configuration: {differences(saved, config)} "
            f"(build the model with the file's settings: lavish.read_adapter_file(path) shows them)"
        )
    expected = adapter_state(model)
    missing, unexpected = sorted(set(expected) - set(tensors)), sorted(set(tensors) - set(expected))
    bad = [k for k in set(expected) & set(tensors) if expected[k].shape != tensors[k].shape]
    if missing or unexpected or bad:
        what = (missing and f"missing {missing[0]}") or (unexpected and f"unexpected {unexpected[0]}") \
            or f"shape of {bad[0]}"
        raise CheckpointError(f"checkpoint {path} does not fit this model ({what})")
    model.load_state_dict(tensors, strict=False)
    apply_frame_stats(model, read_frame_stats(path))
    return meta
