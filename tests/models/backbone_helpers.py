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


#: backbones of every supported family and variant, small enough for the CPU: key -> (timm name, create_backbone
#: overrides, frame size). The real timm entry points with tiny widths / depths keep each variant's own settings
#: (layer scale, register tokens, pooling, RoPE type, ...); the micro models are lavish.models.micro's.
SMALL = dict(depth=4, embed_dim=64, num_heads=2)
BACKBONES = {
    "vit_micro": ("lavish_vit_micro_patch8_64", {}, 64),
    "vit_tiny": ("vit_tiny_patch16_224", {}, 224),
    "deit3": ("deit3_small_patch16_224", dict(SMALL, img_size=64), 64),  # layer scale, pos embed without class
    "deit_distilled": ("deit_tiny_distilled_patch16_224", dict(SMALL, img_size=64), 64),  # distillation token
    "clip": ("vit_base_patch16_clip_quickgelu_224", dict(SMALL, img_size=64), 64),  # norm_pre, quick-GELU
    "dinov2_reg": ("vit_small_patch14_reg4_dinov2", dict(SMALL, img_size=56), 56),  # 4 registers, layer scale
    "vit_gap": ("vit_base_patch16_gap_224", dict(SMALL, img_size=64), 64),  # no class token, mean + fc_norm
    "siglip": ("vit_base_patch16_siglip_224", dict(SMALL, img_size=64), 64),  # no class token, attention pool
    "swinv2_micro": ("lavish_swinv2_micro_window4_64", {}, 64),
    # real Swin-V2-T layout (depths 2-2-6-2, shifted windows in stages 1-2) at 64 px
    "swinv2_tiny_64": ("swinv2_tiny_window8_256", {"img_size": 64, "window_size": 4}, 64),
    "swin_micro": ("lavish_swin_micro_window4_64", {}, 64),
    # real Swin-T layout (depths 2-2-6-2, shifted windows with masks) at 64 px
    "swin_tiny_64": ("swin_tiny_patch4_window7_224", {"img_size": 64, "window_size": 4}, 64),
    "eva02_micro": ("lavish_eva02_micro_patch8_64", {}, 64),
    "eva02_tiny": ("eva02_tiny_patch14_224", {"img_size": 56}, 56),  # RoPE rescaled from its 16x16 reference grid
    "eva01": ("eva_giant_patch14_224", dict(SMALL, img_size=56), 56),  # no RoPE, fused qkv with q / v biases
    "dinov3": ("vit_small_patch16_dinov3", dict(SMALL, img_size=64), 64),  # DINOv3 RoPE, registers, layer scale
    "rope_mixed": ("vit_small_patch16_rope_mixed_224", dict(SMALL, img_size=64), 64),  # RoPE per depth
    "pe": ("vit_pe_core_tiny_patch16_384", dict(SMALL, img_size=64), 64),  # Perception Encoder: attention pool
}
