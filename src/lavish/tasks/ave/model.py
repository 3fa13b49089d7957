"""The whole AVE model: LAVISH backbone -> pooled [visual, audio] per segment -> head (spec 3.1).

``AveModelConfig`` is everything needed to rebuild the model around saved adapter weights; it travels in the
adapter file (:mod:`lavish.models.weights`). Each 1-second segment is classified on its own (no temporal model),
as the authors.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from lavish.errors import ConfigError
from lavish.models.adapters import AdapterConfig
from lavish.models.task_config import TaskModelConfig, preset_adapter, task_backbone

AVE_NUM_CLASSES = 29  # 28 events + background
EXTRA_FROM_CACHE = -1


class AveHead(nn.Module):
    """Per-segment classifier (spec 3.1): ``Linear(F, 512) -> Linear(512, 29)`` with no non-linearity in between (the
    authors' head); F = 2D for audio-visual features ([visual, audio], visual first), D for one modality, plus the
    width of optional precomputed audio features (Table 8, e.g. VGGish 128).

    x: (..., in_features) -> logits (..., num_classes)."""

    def __init__(self, in_features: int, num_classes: int = 29, hidden: int = 512) -> None:
        super().__init__()
        self.mlp_class = nn.Linear(in_features, hidden)
        self.mlp_class_2 = nn.Linear(hidden, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mlp_class_2(self.mlp_class(x))


@dataclass
class AveModelConfig(TaskModelConfig):
    """Model settings (defaults: the paper's best AVE model, spec section 4)."""

    adapter: AdapterConfig = preset_adapter("ave")
    num_classes: int = AVE_NUM_CLASSES
    extra_audio_dim: int = 0
    """width of precomputed per-second audio features concatenated before the head (Table 8, VGGish: 128);
    0 = none; :data:`EXTRA_FROM_CACHE` (-1) = the width of the features the prepared cache holds (training
    resolves it; a model is never built with -1)"""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.num_classes < 2:
            raise ConfigError(f"num_classes={self.num_classes} is not valid: it must be at least 2")
        if not isinstance(self.extra_audio_dim, int) or self.extra_audio_dim < EXTRA_FROM_CACHE:
            raise ConfigError(f"extra_audio_dim={self.extra_audio_dim!r} is not valid: a width >= 0, or "
                              f"{EXTRA_FROM_CACHE} for the width of the prepared cache's features")


class AveModel(nn.Module):
    """audio (B, T, F, M), frames (B, T, 3, H, W), extra (B, T, E) | None -> logits (B, T, num_classes)."""

    def __init__(self, config: AveModelConfig, *, pretrained: bool = False,
                 backbone_weights: str | Path | None = None, timm_model: nn.Module | None = None) -> None:
        super().__init__()
        if config.extra_audio_dim == EXTRA_FROM_CACHE:
            raise ConfigError("extra_audio_dim=-1 (the prepared cache's width) must be resolved before the model "
                              "is built: train on a cache prepared with --extra-audio-features")
        self.config = config
        self.backbone = task_backbone(config, pretrained=pretrained, backbone_weights=backbone_weights,
                                      timm_model=timm_model)
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
                raise ConfigError(f"this model was built with {self.config.extra_audio_dim}-wide extra audio "
                                  "features per second (Table 8): pass them")
            feats = torch.cat([feats, extra.to(feats.dtype)], dim=-1)
        return feats

    def forward(self, audio, frames, extra=None) -> torch.Tensor:
        return self.head(self.features(audio, frames, extra))


def ave_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """BCE(softmax(logits), one-hot(labels)), mean over all entries (the authors' loss), in float32.

    logits: (B, T, K), labels: (B, T) int64. A non-finite logit makes the loss NaN (``binary_cross_entropy``
    would raise on a NaN probability instead): the training step reports it with its step number.
    """
    with torch.autocast(device_type=logits.device.type, enabled=False):
        logits = logits.float()
        probs = logits.softmax(-1)
        # one-hot by comparison, not F.one_hot: that reads the labels' min and max on the host (two syncs a step,
        # which keep a step from being captured whole); labels come from a validated cache
        target = (labels.unsqueeze(-1) == torch.arange(logits.shape[-1], device=labels.device)).float()
        # exactly 0 for finite logits, NaN otherwise; NaN probabilities are replaced so that BCE does not raise
        poison = logits.sum() * 0.0
        return F.binary_cross_entropy(torch.nan_to_num(probs, nan=0.5), target) + poison
