"""What every task model configuration shares, written once: :class:`TaskModelConfig` (backbone, adapter,
modalities, trainable norms, the JSON round trip) on top of :class:`RuntimeConfig` (how the model runs: activation
recomputation, fused adapters).

A task model config travels in every adapter file (``lavish.models.weights``); ``to_dict`` is what is compared
when a file is loaded, so it holds the model's settings only (the fields of :class:`RuntimeConfig` are left out: they
change how a step runs, not what the model computes) in JSON types (tuples become lists; ``__post_init__`` of each
config turns them back). A task's config subclasses :class:`TaskModelConfig`, adds its own fields and names its
adapter preset (``adapter: AdapterConfig = preset_adapter("avs")``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from torch import nn

from lavish.errors import ConfigError
from lavish.models.adapters import ADAPTERS, MODALITIES, PRESETS, AdapterConfig, config_from_dict

if TYPE_CHECKING:  # pragma: no cover
    from lavish.models.backbone import LavishBackbone


DEFAULT_BACKBONE = "swinv2_large_window12_192"
"""The paper's backbone (Swin-V2-L, 192x192, ImageNet-22k): every task model's default."""


def preset_adapter(name: str, **metadata: Any) -> Any:
    """Dataclass field whose default is a fresh copy of adapter preset ``name`` (``metadata``: the field's)."""
    return field(default_factory=lambda: dataclasses.replace(PRESETS[name]), metadata=metadata)


def task_backbone(config: Any, *, pretrained: bool = False, backbone_weights: str | Path | None = None,
                  timm_model: nn.Module | None = None) -> "LavishBackbone":
    """The LAVISH backbone of a task model config (its :class:`TaskModelConfig` and :class:`RuntimeConfig` fields): around ``timm_model`` when the caller passes one (an already-built timm model of any supported
    family), else a timm model built from ``config.backbone`` (hub weights, a local file or the seeded random init,
    see :func:`lavish.models.backbone.create_backbone`)."""
    from lavish.models.backbone import LavishBackbone, create_backbone

    if timm_model is None:
        timm_model = create_backbone(config.backbone, pretrained=pretrained, weights=backbone_weights)
    return LavishBackbone(timm_model, config.adapter, modalities=config.modalities,
                          checkpointing=config.checkpointing, fused_adapters=config.fused_adapters,
                          train_norms=config.train_norms)


@dataclass
class RuntimeConfig:
    """How a model runs, not what it computes: never saved in an adapter file (:meth:`TaskModelConfig.to_dict` leaves
    these fields out), given to the backbone when the model is built."""

    checkpointing: bool | str = field(default=False, metadata={
        "help": "activation checkpointing: recompute the adapters only (most of the memory saving for a few % of "
                "time) or whole blocks (least memory); bare --checkpointing = blocks",
        "choices": ("adapters", "blocks"), "const": "blocks"})
    """recompute in backward: "none", "adapters" or "blocks" (True = "blocks"); see backbone.CHECKPOINTING"""
    fused_adapters: bool | str = field(default=False, metadata={
        "help": "run each adapter position of a training step as one torch.compile region (same maths, fewer "
                "kernels; the first steps compile); cuda-graphs: also replay them as CUDA graphs (a GPU only); "
                "bare --fused-adapters = compile",
        "choices": ("compile", "cuda-graphs"), "const": "compile"})
    """run each adapter position of a training step as one compiled region: "none", "compile" or
    "cuda-graphs" (True = "compile"); see backbone.FUSED_ADAPTERS"""

    @classmethod
    def runtime_fields(cls) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(RuntimeConfig))

    def runtime(self) -> dict:
        """The runtime settings (name -> value)."""
        return {name: getattr(self, name) for name in RuntimeConfig.runtime_fields()}


@dataclass
class TaskModelConfig(RuntimeConfig):
    """The fields every task model has; a task's config subclasses it (its own fields, its adapter preset)."""

    backbone: str = field(default=DEFAULT_BACKBONE, metadata={"help": "timm ViT / Swin backbone"})
    """timm model name of the frozen backbone (``arch`` or ``arch.tag``)"""
    adapter: AdapterConfig = preset_adapter("ave", help="adapter kind", choices=tuple(ADAPTERS), shown="lavish")
    """the adapter kind and its settings (a task's config defaults to its preset; the flag ``--adapter`` picks the
    kind, the adapter options its settings)"""
    modalities: str = field(default="av", metadata={"help": "streams that run (Table 7)", "choices": MODALITIES})
    """streams that run: "av" (both), "v" (vision only) or "a" (audio only), among the task's :attr:`MODALITIES`"""
    train_norms: bool = False
    """also train the backbone's norm layers"""

    MODALITIES: ClassVar[tuple[str, ...]] = MODALITIES
    """the values of ``modalities`` the task's model takes"""
    TASK_TITLE: ClassVar[str] = ""
    """e.g. "AVS": named where a setting is not valid for this task only"""

    def __post_init__(self) -> None:
        if self.modalities not in self.MODALITIES:
            where = f" for {self.TASK_TITLE}" if self.MODALITIES != MODALITIES else ""
            choose = " or ".join(self.MODALITIES) if where else "one of " + ", ".join(self.MODALITIES)
            raise ConfigError(f"modalities={self.modalities!r} is not valid{where}: choose {choose}")

    def to_dict(self) -> dict:
        runtime = RuntimeConfig.runtime_fields()
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name not in runtime}
        data["adapter"] = self.adapter.to_dict()
        return {k: list(v) if isinstance(v, tuple) else v for k, v in data.items()}

    @classmethod
    def from_dict(cls, data: dict, **runtime):
        """The config of ``data`` (a :meth:`to_dict`, e.g. an adapter file's), run with the ``runtime`` settings."""
        data = {**data, **runtime}
        data["adapter"] = config_from_dict(data["adapter"])
        return cls(**data)
