"""Task heads on top of the pooled LAVISH features.

AVE (spec 3.1): ``Linear(F, 512) -> Linear(512, 29)`` with no non-linearity in between (the authors' head),
where F = 2D for audio-visual features ([visual, audio] concatenated, visual first, as the Swin path), D for a
single modality, plus the width of optional precomputed audio features (Table 8, e.g. VGGish 128).
"""

from __future__ import annotations

import torch
from torch import nn


class AveHead(nn.Module):
    """Per-segment classifier. x: (..., in_features) -> logits (..., num_classes)."""

    def __init__(self, in_features: int, num_classes: int = 29, hidden: int = 512) -> None:
        super().__init__()
        self.mlp_class = nn.Linear(in_features, hidden)
        self.mlp_class_2 = nn.Linear(hidden, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mlp_class_2(self.mlp_class(x))
