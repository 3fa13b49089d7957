"""Frame normalisation at load time (spec 2.3).

Frames are decoded and cached as uint8 (H, W, 3) RGB; the model sees ``(x / 255 - mean) / std`` with the
ImageNet statistics timm's Swin-V2 / ViT weights were trained with, channels first.
"""

from __future__ import annotations

import torch

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def normalize_frames(frames: torch.Tensor) -> torch.Tensor:
    """(..., H, W, 3) uint8 -> (..., 3, H, W) float32 ImageNet-normalised."""
    if frames.shape[-1] != 3:
        raise ValueError(f"expected (..., H, W, 3) frames, got shape {tuple(frames.shape)}")
    x = frames.to(torch.float32).div_(255.0)
    mean = torch.tensor(IMAGENET_MEAN, dtype=torch.float32)
    std = torch.tensor(IMAGENET_STD, dtype=torch.float32)
    x = (x - mean) / std
    return x.movedim(-1, -3).contiguous()
