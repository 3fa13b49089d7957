"""What the task model configurations (AVE, AVS, AVQA) share: the adapter preset default and the JSON round trip.

A task model config travels in every adapter file (``lavish.models.weights``); ``to_dict`` is what is compared
when a file is loaded, so it holds the model's settings only (runtime choices such as activation checkpointing
and fused adapters are dropped) in JSON types (tuples become lists; ``__post_init__`` of each config turns them back).
"""

from __future__ import annotations

import dataclasses
from dataclasses import field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from torch import nn

from lavish.models.adapters import PRESETS, config_from_dict

if TYPE_CHECKING:  # pragma: no cover
    from lavish.models.backbone import LavishBackbone


def preset_adapter(name: str) -> Any:
    """Dataclass field whose default is a fresh copy of adapter preset ``name``."""
    return field(default_factory=lambda: dataclasses.replace(PRESETS[name]))


def task_backbone(config: Any, *, pretrained: bool = False, backbone_weights: str | Path | None = None,
                  timm_model: nn.Module | None = None) -> "LavishBackbone":
    """The LAVISH backbone of a task model config (fields backbone, adapter, modalities, checkpointing,
    train_norms): around ``timm_model`` when the caller passes one (an already-built timm model of any supported
    family), else a timm model built from ``config.backbone`` (hub weights, a local file or the seeded random init,
    see :func:`lavish.models.backbone.create_backbone`)."""
    from lavish.models.backbone import LavishBackbone, create_backbone

    if timm_model is None:
        timm_model = create_backbone(config.backbone, pretrained=pretrained, weights=backbone_weights)
    return LavishBackbone(timm_model, config.adapter, modalities=config.modalities,
                          checkpointing=config.checkpointing, fused_adapters=getattr(config, "fused_adapters", False),
                          train_norms=config.train_norms)


class TaskModelConfig:
    """Mix-in for a dataclass with an ``adapter`` field."""

    RUNTIME_FIELDS: ClassVar[tuple[str, ...]] = ("checkpointing", "fused_adapters")

    def to_dict(self) -> dict:
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name not in self.RUNTIME_FIELDS}
        data["adapter"] = self.adapter.to_dict()
        return {k: list(v) if isinstance(v, tuple) else v for k, v in data.items()}

    @classmethod
    def from_dict(cls, data: dict):
        data = dict(data)
        data["adapter"] = config_from_dict(data["adapter"])
        return cls(**data)
