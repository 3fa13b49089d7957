"""Frame normalisation at load time (spec 2.3).

Frames are decoded and cached as uint8 (H, W, 3) RGB; the model sees ``(x / 255 - mean) / std``, channels first.
The statistics are those the backbone was pretrained with: :attr:`lavish.LavishBackbone.frame_mean` /
``frame_std``, read from timm's pretrained config (ImageNet's for Swin-V2 and the micro backbones, 0.5 for the
augreg ViTs, CLIP's for CLIP and EVA-02 checkpoints, ...) and recorded in adapter files. The default here, and for
adapter files written before they recorded them, is ImageNet's.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from lavish.errors import ShapeError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def normalize_frames(frames: torch.Tensor, mean: Sequence[float] = IMAGENET_MEAN,
                     std: Sequence[float] = IMAGENET_STD) -> torch.Tensor:
    """(..., H, W, 3) uint8 -> (..., 3, H, W) float32, ``(x / 255 - mean) / std`` per channel (default: ImageNet's
    statistics; pass the backbone's own: ``normalize_frames(frames, *backbone.frame_stats)``)."""
    if frames.shape[-1] != 3:
        raise ShapeError(f"expected (..., H, W, 3) uint8 frames, got shape {tuple(frames.shape)}")
    if isinstance(frames, np.ndarray):
        frames = torch.from_numpy(frames)
    x = frames.to(torch.float32).div_(255.0)
    mean = torch.tensor(tuple(mean), dtype=torch.float32)
    std = torch.tensor(tuple(std), dtype=torch.float32)
    x = (x - mean) / std
    return x.movedim(-1, -3).contiguous()
