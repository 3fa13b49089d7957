"""How to step through a timm backbone block by block, per family (registry :data:`FAMILIES`).

The LAVISH wrapper needs the two residual branches of every block separately (adapters are added after the
attention residual and after the MLP residual, spec 1.3), the patch embedding of an input of any size, and the
final norm. Each family here exposes exactly that over timm >= 1.0 modules, without changing the blocks:

* ``vit`` (pre-norm): x + drop_path1(ls1(attn(norm1(x)))), x + drop_path2(ls2(mlp(norm2(x)))); tokens
  (B', 1 + N, C) with the class token first. Audio may have another size than the frames: the absolute position
  embedding is resampled (timm's 2-D bicubic ``resample_abs_pos_embed``) to the audio patch grid. The authors
  interpolate the flattened 197-long sequence linearly in 1-D (spec 1.3 / quirk 8); the 2-D resampling keeps
  neighbouring patches neighbours and is what timm does for any other input size.
* ``swinv2`` (res-post-norm): x + drop_path1(norm1(attn(x))), x + drop_path2(norm2(mlp(x))). timm 1.x moved the
  patch merging to the *start* of a stage (0.6.7: the end) and works on NHWC tensors: we keep tokens (B', H*W, C)
  between blocks (a view) and call the stage's ``downsample`` before its first block, which gives the same
  sequence of operations as the authors' 0.6.7 model. Attention masks are built for the model's input size, so
  the audio image is resized to the frame grid (spec 1.3).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from timm.layers import resample_abs_pos_embed
from torch import nn


@dataclass
class Unit:
    """One frozen block, with the stage transition (patch merging) that precedes it, if any."""

    block: nn.Module
    downsample: nn.Module | None
    stage: int
    dim: int


class ViTFamily:
    """timm ``VisionTransformer``."""

    name = "vit"

    def __init__(self, model: nn.Module) -> None:
        self.model = model

    def units(self) -> list[Unit]:
        return [Unit(blk, None, 0, self.model.embed_dim) for blk in self.model.blocks]

    @property
    def num_features(self) -> int:
        return self.model.num_features

    def embed(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        """x: (B', 3, H, W) -> tokens (B', prefix + gh*gw, C), grid (gh, gw)."""
        m = self.model
        pe = m.patch_embed
        x = pe.proj(x)
        grid = tuple(x.shape[-2:])
        x = pe.norm(x.flatten(2).transpose(1, 2))
        prefix = [t.expand(x.shape[0], -1, -1) for t in (m.cls_token, m.reg_token) if t is not None]
        pos = m.pos_embed
        if pos is not None:
            if grid != tuple(pe.grid_size):
                pos = resample_abs_pos_embed(
                    pos, new_size=grid, old_size=pe.grid_size,
                    num_prefix_tokens=0 if m.no_embed_class else m.num_prefix_tokens,
                )
            if m.no_embed_class:
                x = torch.cat(prefix + [x + pos], dim=1)
            else:
                x = torch.cat(prefix + [x], dim=1) + pos
        else:
            x = torch.cat(prefix + [x], dim=1)
        return m.norm_pre(m.patch_drop(m.pos_drop(x))), grid

    def downsample(self, unit: Unit, x: torch.Tensor, grid: tuple[int, int]):
        return x, grid

    def attn_residual(self, blk: nn.Module, x: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        return x + blk.drop_path1(blk.ls1(blk.attn(blk.norm1(x))))

    def mlp_residual(self, blk: nn.Module, x: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        return x + blk.drop_path2(blk.ls2(blk.mlp(blk.norm2(x))))

    def final(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.norm(x)

    def pool(self, x: torch.Tensor) -> torch.Tensor:
        """(B', N, C) -> (B', C): the class token (the authors' ViT path), else the mean of patch tokens."""
        m = self.model
        if m.cls_token is not None:
            return x[:, 0]
        return x[:, m.num_prefix_tokens:].mean(1)

    def spatial(self, x: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        """(B', prefix + gh*gw, C) -> (B', gh, gw, C) without the prefix tokens."""
        return x[:, self.model.num_prefix_tokens:].reshape(x.shape[0], *grid, x.shape[-1])

    def stage_ends(self) -> list[int]:
        """Indices of the blocks whose outputs are the four 'stages' (evenly spaced, last block included)."""
        depth = len(self.model.blocks)
        return [depth * k // 4 - 1 for k in (1, 2, 3, 4)]


class SwinV2Family:
    """timm ``SwinTransformerV2`` (timm >= 1.0 layout)."""

    name = "swinv2"

    def __init__(self, model: nn.Module) -> None:
        self.model = model

    def units(self) -> list[Unit]:
        units = []
        for s, stage in enumerate(self.model.layers):
            for j, blk in enumerate(stage.blocks):
                down = stage.downsample if j == 0 and not isinstance(stage.downsample, nn.Identity) else None
                units.append(Unit(blk, down, s, blk.norm1.normalized_shape[0]))
        return units

    @property
    def num_features(self) -> int:
        return self.model.num_features

    def embed(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        """x: (B', 3, H, W) -> tokens (B', gh*gw, C), grid (gh, gw)."""
        x = self.model.patch_embed(x)  # (B', gh, gw, C)
        grid = tuple(x.shape[1:3])
        return x.flatten(1, 2), grid

    def downsample(self, unit: Unit, x: torch.Tensor, grid: tuple[int, int]):
        if unit.downsample is None:
            return x, grid
        y = unit.downsample(x.view(x.shape[0], *grid, x.shape[-1]))
        return y.flatten(1, 2), tuple(y.shape[1:3])

    def attn_residual(self, blk: nn.Module, x: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        b, n, c = x.shape
        return x + blk.drop_path1(blk.norm1(blk._attn(x.view(b, *grid, c)))).view(b, n, c)

    def mlp_residual(self, blk: nn.Module, x: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        return x + blk.drop_path2(blk.norm2(blk.mlp(x)))

    def final(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.norm(x)

    def pool(self, x: torch.Tensor) -> torch.Tensor:
        """(B', N, C) -> (B', C): mean over tokens (the authors' Swin path)."""
        return x.mean(1)

    def spatial(self, x: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        return x.reshape(x.shape[0], *grid, x.shape[-1])

    def stage_ends(self) -> list[int]:
        ends, total = [], 0
        for stage in self.model.layers:
            total += len(stage.blocks)
            ends.append(total - 1)
        return ends


FAMILIES = {"vit": ViTFamily, "swinv2": SwinV2Family}
