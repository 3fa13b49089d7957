"""The whole AVE model: LAVISH backbone -> pooled [visual, audio] per segment -> head (spec 3.1).

``AveModelConfig`` is everything needed to rebuild the model around saved adapter weights; it travels in the
adapter file (:mod:`lavish.models.weights`). Each 1-second segment is classified on its own (no temporal model),
as the authors.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from lavish.errors import ConfigError
from lavish.models.adapters import AdapterConfig
from lavish.models.backbone import LavishBackbone, create_backbone
from lavish.models.task_config import TaskModelConfig, preset_adapter
from lavish.models.heads import AveHead

AVE_NUM_CLASSES = 29  # 28 events + background


@dataclass
class AveModelConfig(TaskModelConfig):
    """Model settings (defaults: the paper's best AVE model, spec section 4)."""

    backbone: str = "swinv2_large_window12_192"
    adapter: AdapterConfig = preset_adapter("ave")
    modalities: str = "av"
    num_classes: int = AVE_NUM_CLASSES
    extra_audio_dim: int = 0
    """width of precomputed per-second audio features concatenated before the head (Table 8); 0 = none"""
    train_norms: bool = False
    checkpointing: bool | str = False
    """recompute in backward: "none", "adapters" or "blocks" (True = "blocks"); see backbone.CHECKPOINTING"""

    def __post_init__(self) -> None:
        if self.num_classes < 2:
            raise ConfigError(f"num_classes={self.num_classes} is not valid: it must be at least 2")
        if self.extra_audio_dim < 0:
            raise ConfigError(f"extra_audio_dim={self.extra_audio_dim} is not valid: it must be >= 0")



class AveModel(nn.Module):
    """audio (B, T, F, M), frames (B, T, 3, H, W), extra (B, T, E) | None -> logits (B, T, num_classes)."""

    def __init__(self, config: AveModelConfig, *, pretrained: bool = False,
                 backbone_weights: str | Path | None = None) -> None:
        super().__init__()
        self.config = config
        timm_model = create_backbone(config.backbone, pretrained=pretrained, weights=backbone_weights)
        self.backbone = LavishBackbone(
            timm_model, config.adapter, modalities=config.modalities,
            checkpointing=config.checkpointing, train_norms=config.train_norms,
        )
        dim = self.backbone.num_features * len(config.modalities) + config.extra_audio_dim
        self.head = AveHead(dim, config.num_classes)

    def features(self, audio: torch.Tensor | None, frames: torch.Tensor | None,
                 extra: torch.Tensor | None = None) -> torch.Tensor:
        """Per-segment features (B, T, F): [visual, audio, extra] for the streams that run."""
        ref = frames if frames is not None else audio
        b, t = ref.shape[:2]
        out = self.backbone(
            audio.flatten(0, 1) if audio is not None else None,
            frames.flatten(0, 1) if frames is not None else None,
        )
        parts = [self.backbone.pool(x) for x in (out.visual, out.audio) if x is not None]
        feats = torch.cat(parts, dim=-1).view(b, t, -1)
        if self.config.extra_audio_dim:
            if extra is None:
                raise ConfigError("this model was built with extra audio features: pass them (extra_audio_dim "
                                  f"= {self.config.extra_audio_dim})")
            feats = torch.cat([feats, extra.to(feats.dtype)], dim=-1)
        return feats

    def forward(self, audio, frames, extra=None) -> torch.Tensor:
        return self.head(self.features(audio, frames, extra))
