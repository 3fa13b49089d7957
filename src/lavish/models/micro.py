"""Micro backbones for the demo and the tests: real timm ViT / Swin-V2 / Swin / EVA classes, 0.2M-1.5M parameters.

Registered with timm's registry so every place that takes a backbone name takes them too:
``lavish_vit_micro_patch8_64`` (4 blocks, width 96, 64x64 input), ``lavish_swinv2_micro_window4_64`` and
``lavish_swin_micro_window4_64`` (stages 1-1-2-1, width 32, window 4, 64x64 input), ``lavish_eva02_micro_patch8_64``
(EVA-02 layout: RoPE, SwiGLU with its inner norm, separate q/k/v projections; 4 blocks, width 64, 64x64 input).
They have no pretrained weights; they exist so that the demo and the test suite run the exact code paths of ViT-B /
Swin-V2-L / Swin-B / EVA-02-B on a 2-core CPU in seconds.
"""

from __future__ import annotations

from torch import nn
from timm.models import build_model_with_cfg, generate_default_cfgs, register_model
from timm.models.eva import Eva
from timm.models.eva import checkpoint_filter_fn as eva_filter
from timm.models.swin_transformer import SwinTransformer
from timm.models.swin_transformer import checkpoint_filter_fn as swin_v1_filter
from timm.models.swin_transformer_v2 import SwinTransformerV2
from timm.models.swin_transformer_v2 import checkpoint_filter_fn as swin_filter
from timm.models.vision_transformer import VisionTransformer
from timm.models.vision_transformer import checkpoint_filter_fn as vit_filter


def _cfg(size: int, classifier: str) -> dict:
    return {
        "input_size": (3, size, size),
        "num_classes": 1000,
        "classifier": classifier,  # lets timm drop the head of a full checkpoint when loading with num_classes=0
        "mean": (0.485, 0.456, 0.406),
        "std": (0.229, 0.224, 0.225),
    }


# read by timm's ``register_model`` from this module
default_cfgs = generate_default_cfgs({
    "lavish_vit_micro_patch8_64": _cfg(64, "head"),
    "lavish_swinv2_micro_window4_64": _cfg(64, "head.fc"),
    "lavish_swin_micro_window4_64": _cfg(64, "head.fc"),
    "lavish_eva02_micro_patch8_64": _cfg(64, "head"),
})


@register_model
def lavish_vit_micro_patch8_64(pretrained: bool = False, **kwargs) -> VisionTransformer:
    """ViT, patch 8, 64x64, 4 blocks of width 96 (3 heads)."""
    args = dict(img_size=64, patch_size=8, embed_dim=96, depth=4, num_heads=3)
    return build_model_with_cfg(
        VisionTransformer, "lavish_vit_micro_patch8_64", pretrained,
        pretrained_filter_fn=vit_filter, **dict(args, **kwargs),
    )


@register_model
def lavish_swinv2_micro_window4_64(pretrained: bool = False, **kwargs) -> SwinTransformerV2:
    """Swin-V2, patch 4, 64x64, window 4, depths 1-1-2-1, width 32 (heads 1-2-4-8)."""
    args = dict(img_size=64, window_size=4, embed_dim=32, depths=(1, 1, 2, 1), num_heads=(1, 2, 4, 8))
    model = build_model_with_cfg(
        SwinTransformerV2, "lavish_swinv2_micro_window4_64", pretrained,
        pretrained_filter_fn=swin_filter, **dict(args, **kwargs),
    )
    if not pretrained:
        # timm zero-initialises Swin-V2's residual post-norms (every block starts as the identity, fine for
        # training the backbone, useless for a frozen random one): give the micro model working blocks
        for stage in model.layers:
            for blk in stage.blocks:
                nn.init.ones_(blk.norm1.weight)
                nn.init.ones_(blk.norm2.weight)
    return model


@register_model
def lavish_swin_micro_window4_64(pretrained: bool = False, **kwargs) -> SwinTransformer:
    """Swin (V1), patch 4, 64x64, window 4, depths 1-1-2-1, width 32 (heads 1-2-4-8)."""
    args = dict(img_size=64, window_size=4, embed_dim=32, depths=(1, 1, 2, 1), num_heads=(1, 2, 4, 8))
    return build_model_with_cfg(
        SwinTransformer, "lavish_swin_micro_window4_64", pretrained,
        pretrained_filter_fn=swin_v1_filter, **dict(args, **kwargs),
    )


@register_model
def lavish_eva02_micro_patch8_64(pretrained: bool = False, **kwargs) -> Eva:
    """EVA-02, patch 8, 64x64, 4 blocks of width 64 (2 heads), RoPE on the 8x8 grid, SwiGLU MLP, mean pooling."""
    args = dict(
        img_size=64, patch_size=8, embed_dim=64, depth=4, num_heads=2, mlp_ratio=4 * 2 / 3, qkv_fused=False,
        swiglu_mlp=True, scale_mlp=True, use_rot_pos_emb=True, ref_feat_shape=(8, 8),
    )
    return build_model_with_cfg(
        Eva, "lavish_eva02_micro_patch8_64", pretrained,
        pretrained_filter_fn=eva_filter, **dict(args, **kwargs),
    )
