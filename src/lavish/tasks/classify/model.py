"""The clip classifier: LAVISH backbone -> [visual, audio] per segment -> mean over the T segments -> head.

``ClassifyModelConfig`` is everything needed to rebuild the model around saved adapter weights (it travels in the
adapter file). The head is a linear classifier on the pooled features by default (``head="linear"``:
``LayerNorm(F) -> Linear(F, K)``, the classification head of CAV-MAE, whose VGGSound and AudioSet numbers are the
field's reference): the LAVISH adapters already fuse the two streams inside every block, so a probe-style head keeps
the trainable count small and makes the backbone's features, not the head, do the work; the LayerNorm puts the two
streams' pooled tokens (which come out of a frozen image backbone at different scales) on one scale.
``head="mlp"`` (``LayerNorm -> Linear(F, hidden) -> GELU -> Dropout -> Linear(hidden, K)``) is there for small
sets of one's own where a non-linear head on frozen features helps. ``lavish info --task classify`` prints the count.

Single-label sets train with cross-entropy (optional label smoothing), multi-label sets (AudioSet) with a binary
cross-entropy per class; ``class_weighting="balanced"`` weights each class by the inverse of its frequency in the
training split (sklearn's "balanced" rule ``n_clips / (n_classes * n_clips_of_class)``, classes without a clip
weigh 1), stored in the config so that a resumed run, DDP ranks and the adapter file use the same weights.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from lavish.errors import ConfigError
from lavish.models.adapters import AdapterConfig
from lavish.models.task_config import TaskModelConfig, preset_adapter, task_backbone

HEADS = ("linear", "mlp")
WEIGHTINGS = ("none", "balanced")


class ClassifyHead(nn.Module):
    """Pooled features (B, F) -> logits (B, K): ``linear`` (LayerNorm, Linear) or ``mlp`` (LayerNorm, Linear,
    GELU, Dropout, Linear)."""

    def __init__(self, in_features: int, num_classes: int, kind: str = "linear", hidden: int = 512,
                 dropout: float = 0.0) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(in_features)
        if kind == "linear":
            self.fc = nn.Linear(in_features, num_classes)
        else:
            self.fc = nn.Sequential(nn.Linear(in_features, hidden), nn.GELU(), nn.Dropout(dropout),
                                    nn.Linear(hidden, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.norm(x))


@dataclass
class ClassifyModelConfig(TaskModelConfig):
    """Model settings. ``num_classes``, ``multi_label`` and ``class_weights`` are read from the prepared cache when
    training starts; the adapter is the paper's AVE preset (1-s segments of both streams)."""

    TASK_TITLE = "clip classification"

    adapter: AdapterConfig = preset_adapter("ave")
    num_classes: int = 2
    multi_label: bool = False
    """several labels per clip (sigmoid + BCE) instead of one (softmax + cross-entropy); set from the cache"""
    head: str = field(default="linear", metadata={"choices": HEADS})
    """"linear" (LayerNorm + Linear, CAV-MAE's head) or "mlp" (LayerNorm + Linear + GELU + Dropout + Linear)"""
    head_hidden: int = 512
    """width of the MLP head's hidden layer (head="mlp" only)"""
    head_dropout: float = 0.0
    """dropout before the MLP head's last layer (head="mlp" only)"""
    label_smoothing: float = 0.0
    """single-label only: cross-entropy label smoothing in [0, 1)"""
    class_weighting: str = field(default="none", metadata={"choices": WEIGHTINGS})
    """"balanced": weigh each class's loss term by the inverse of its training-split frequency"""
    class_weights: list[float] | None = None
    """the per-class loss weights (K,) that "balanced" gives, computed from the cache's training split"""

    def __post_init__(self) -> None:
        super().__post_init__()
        if not isinstance(self.num_classes, int) or self.num_classes < 2:
            raise ConfigError(f"num_classes={self.num_classes!r} is not valid: a classifier needs at least 2 classes")
        if self.head not in HEADS:
            raise ConfigError(f"head={self.head!r} is not valid: choose {' or '.join(HEADS)}")
        if self.class_weighting not in WEIGHTINGS:
            raise ConfigError(f"class_weighting={self.class_weighting!r} is not valid: choose "
                              f"{' or '.join(WEIGHTINGS)}")
        if not (isinstance(self.label_smoothing, (int, float)) and 0 <= self.label_smoothing < 1):
            raise ConfigError(f"label_smoothing={self.label_smoothing!r} is not valid: it must be in [0, 1)")
        if self.label_smoothing and self.multi_label:
            raise ConfigError("label_smoothing applies to single-label sets (cross-entropy); this set is "
                              "multi-label: leave --label-smoothing out")
        if self.head == "linear" and (self.head_hidden != 512 or self.head_dropout != 0.0):
            raise ConfigError("head_hidden and head_dropout are settings of the MLP head: give --head mlp with them")
        if not isinstance(self.head_hidden, int) or self.head_hidden < 1:
            raise ConfigError(f"head_hidden={self.head_hidden!r} is not valid: it must be a positive integer")
        if not (isinstance(self.head_dropout, (int, float)) and 0 <= self.head_dropout < 1):
            raise ConfigError(f"head_dropout={self.head_dropout!r} is not valid: it must be in [0, 1)")
        if self.class_weights is not None:
            self.class_weights = [float(w) for w in self.class_weights]
            if len(self.class_weights) != self.num_classes:
                raise ConfigError(f"class_weights has {len(self.class_weights)} values for {self.num_classes} classes")


def balanced_weights(labels: np.ndarray, num_classes: int) -> list[float]:
    """(K,) sklearn's "balanced" class weights ``n / (K * n_k)`` of training labels, (N,) class indices or (N, K)
    0/1; a class without a clip weighs 1."""
    labels = np.asarray(labels)
    counts = (labels.sum(0) if labels.ndim == 2 else np.bincount(labels, minlength=num_classes)).astype(np.float64)
    weights = np.ones(num_classes)
    seen = counts > 0
    weights[seen] = len(labels) / (num_classes * counts[seen])
    return [round(float(w), 6) for w in weights]


class ClassifyModel(nn.Module):
    """audio (B, T, F, M), frames (B, T, 3, H, W) -> logits (B, K) (``None`` for a stream that does not run)."""

    def __init__(self, config: ClassifyModelConfig, *, pretrained: bool = False,
                 backbone_weights: str | Path | None = None, timm_model: nn.Module | None = None) -> None:
        super().__init__()
        self.config = config
        self.backbone = task_backbone(config, pretrained=pretrained, backbone_weights=backbone_weights,
                                      timm_model=timm_model)
        dim = self.backbone.num_features * len(config.modalities)
        self.head = ClassifyHead(dim, config.num_classes, config.head, config.head_hidden, config.head_dropout)

    def features(self, audio: torch.Tensor | None, frames: torch.Tensor | None) -> torch.Tensor:
        """Clip features (B, F): the segments' pooled [visual, audio] tokens, averaged over the T segments."""
        ref = frames if frames is not None else audio
        b, t = ref.shape[:2]
        out = self.backbone(audio.flatten(0, 1) if audio is not None else None,
                            frames.flatten(0, 1) if frames is not None else None)
        parts = [self.backbone.pool(x) for x in (out.visual, out.audio) if x is not None]
        return torch.cat(parts, dim=-1).view(b, t, -1).mean(1)

    def forward(self, audio: torch.Tensor | None, frames: torch.Tensor | None) -> torch.Tensor:
        return self.head(self.features(audio, frames))

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        """(B, K) class probabilities: sigmoid (multi-label) or softmax (single-label) of the logits, in float32."""
        logits = logits.float()
        return logits.sigmoid() if self.config.multi_label else logits.softmax(-1)


def classify_loss(logits: torch.Tensor, labels: torch.Tensor, config: ClassifyModelConfig) -> torch.Tensor:
    """The training loss, in float32. logits (B, K); labels (B,) int64 class indices (single-label: cross-entropy
    with ``config.label_smoothing``) or (B, K) 0/1 (multi-label: BCE with logits averaged over clips and classes).
    ``config.class_weights`` weigh each class's terms. A non-finite logit gives a NaN loss (never an exception)."""
    with torch.autocast(device_type=logits.device.type, enabled=False):
        logits = logits.float()
        weight = None if config.class_weights is None else logits.new_tensor(config.class_weights)
        if config.multi_label:
            loss = F.binary_cross_entropy_with_logits(logits, labels.float(), reduction="none")
            return (loss * weight).mean() if weight is not None else loss.mean()
        return F.cross_entropy(logits, labels, weight=weight, label_smoothing=float(config.label_smoothing))
