"""Shared helpers of the model tests.

timm initialises the res-post-norm LayerNorms of every Swin-V2 block to weight 0 (``_init_respostnorm``), so a
randomly initialised Swin-V2 is an identity in all its blocks: attention and MLP contribute nothing. Tests that
must see the blocks act give those norms non-zero weights first (a pretrained checkpoint has them anyway).
"""

from __future__ import annotations

import torch
from timm.models.swin_transformer_v2 import SwinTransformerV2Block
from torch import nn


def activate_post_norms(model: nn.Module, seed: int = 0) -> nn.Module:
    """Give every Swin-V2 block's norm1 / norm2 weights in [0.5, 1.5) (seeded); other models are unchanged."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, SwinTransformerV2Block):
                for norm in (module.norm1, module.norm2):
                    norm.weight.copy_(torch.rand(norm.weight.shape, generator=gen) + 0.5)
    return model


def open_gates(model: nn.Module, value: float = 0.5) -> None:
    """Set every adapter gate to ``value`` and LoRA's B to small values, so that every adapter acts."""
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("gate"):
                p.fill_(value)
            elif "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.02)
