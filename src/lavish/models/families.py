"""How to step through a timm backbone block by block, per family (registry :data:`FAMILIES`).

The LAVISH wrapper needs the two residual branches of every block separately (adapters are added after the
attention residual and after the MLP residual, spec 1.3), the patch embedding of an input of any size, the final
norm and the pooled feature. Each family here exposes exactly that over timm >= 1.0 modules, without changing the
blocks. A family is chosen by the model's *class* (:data:`TIMM_CLASSES`), never by its name, so any timm model of
a supported class works under any name (``deit3_*``, ``*_clip_*``, ``*_dinov2``, ``eva02_*``, ...); a variant the
family cannot step through (another block type, a CNN stem, patch dropout) is refused by :meth:`Family.refusal`.

* ``vit``, timm ``VisionTransformer`` (and DeiT's ``VisionTransformerDistilled``), pre-norm:
  x + drop_path1(ls1(attn(norm1(x)))), x + drop_path2(ls2(mlp(norm2(x)))); layer scale (DeiT-III, DINOv2) is the
  ``ls`` modules, CLIP's pre-norm is ``norm_pre``, quick-GELU lives inside the MLP. Tokens (B', prefix + N, C):
  class, distillation and register tokens first. Audio may have another size than the frames: the absolute
  position embedding is resampled (timm's 2-D bicubic ``resample_abs_pos_embed``) to the audio patch grid. The
  authors interpolate the flattened 197-long sequence linearly in 1-D (spec 1.3 / quirk 8); the 2-D resampling
  keeps neighbouring patches neighbours and is what timm does for any other input size.
* ``eva``, timm ``Eva`` (EVA-02; also EVA-01, the RoPE ViTs, DINOv3 and PE, which timm builds with this class),
  pre-norm: x + drop_path1(gamma_1 * attn(norm1(x), rope)), x + drop_path2(gamma_2 * mlp(norm2(x))) with rotary
  position embeddings (RoPE) of the token grid, SwiGLU MLPs and optional layer scale (``gamma``). RoPE is a
  function of the grid, and the wrapper runs both streams through each block with one grid; timm's cached RoPE
  (``RotaryEmbeddingCat`` of a fixed-size model) even ignores a requested grid. So, as for Swin, the audio image
  is resized to the frame grid: both streams see the model's own RoPE, exactly as timm computes it for its input
  size, and they share the block calls (one batch).
* ``swinv2`` (res-post-norm): x + drop_path1(norm1(attn(x))), x + drop_path2(norm2(mlp(x))); ``swin`` (V1,
  pre-norm, relative position bias): x + drop_path1(attn(norm1(x))), x + drop_path2(mlp(norm2(x))). timm 1.x
  moved the patch merging to the *start* of a stage (0.6.7: the end) and works on NHWC tensors: we keep tokens
  (B', H*W, C) between blocks (a view) and call the stage's ``downsample`` before its first block, which gives the
  same sequence of operations as the authors' 0.6.7 model. Shifted-window attention masks are built for the
  model's input size, so the audio image is resized to the frame grid (spec 1.3).

Pooling (``pool``) is timm's own pre-logits feature, ``forward_head(x, pre_logits=True)`` without the classifier:
the class token for the paper's ViTs (the authors' ViT path), the mean of the tokens for Swin (the authors' Swin
path), and otherwise what the model was trained with (mean of patch tokens + ``fc_norm`` for EVA-02, the
attention pool of SigLIP / PE models, the mean of class and distillation tokens for distilled DeiT).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar

import torch
from timm.layers import PatchEmbed, resample_abs_pos_embed
from timm.models.deit import VisionTransformerDistilled
from timm.models.eva import Eva, EvaBlock
from timm.models.swin_transformer import SwinTransformer
from timm.models.swin_transformer_v2 import SwinTransformerV2
from timm.models.vision_transformer import Block, VisionTransformer
from torch import nn

from lavish.errors import ConfigError


@dataclass
class Unit:
    """One frozen block, with the stage transition (patch merging) that precedes it, if any."""

    block: nn.Module
    downsample: nn.Module | None
    stage: int
    dim: int


class Family(ABC):
    """How the wrapper steps through one class of timm backbone: the interface every family implements."""

    name: ClassVar[str]
    """registry key (:data:`FAMILIES`)"""
    title: ClassVar[str]
    """the name users know, for messages and docs"""
    timm_classes: ClassVar[tuple[type[nn.Module], ...]]
    """timm model classes of this family (exact classes: a subclass may change the forward)"""
    resize_audio: ClassVar[bool]
    """the audio image is resized to the frame size (one token grid for both streams)"""

    def __init__(self, model: nn.Module) -> None:
        self.model = model

    @classmethod
    def refusal(cls, model: nn.Module) -> str | None:
        """Why ``model`` (of one of :attr:`timm_classes`) cannot be stepped through, or None when it can."""
        return None

    @property
    def num_features(self) -> int:
        """Channels of the final tokens."""
        return self.model.num_features

    def final(self, x: torch.Tensor) -> torch.Tensor:
        """The backbone's last norm, (B', N, C) -> same."""
        return self.model.norm(x)

    @abstractmethod
    def units(self) -> list[Unit]:
        """The frozen blocks in order, each with the patch merging that precedes it."""

    @abstractmethod
    def embed(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        """Images (B', 3, H, W) -> tokens (B', N, C) before the first block, and their patch grid (gh, gw)."""

    @abstractmethod
    def downsample(self, unit: Unit, x: torch.Tensor, grid: tuple[int, int]) -> tuple[torch.Tensor, tuple[int, int]]:
        """Tokens and grid after ``unit.downsample`` (unchanged where there is none)."""

    @abstractmethod
    def attn_residual(self, blk: nn.Module, x: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        """x + the attention branch of ``blk``, (B', N, C) -> same."""

    @abstractmethod
    def mlp_residual(self, blk: nn.Module, x: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        """x + the MLP branch of ``blk``, (B', N, C) -> same."""

    @abstractmethod
    def pool(self, x: torch.Tensor) -> torch.Tensor:
        """Final tokens (B', N, C) -> the pooled feature (B', C)."""

    @abstractmethod
    def spatial(self, x: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        """Tokens (B', N, C) -> the patch map (B', gh, gw, C)."""

    @abstractmethod
    def stage_ends(self) -> list[int]:
        """Indices of the four units whose outputs are the multi-scale maps (AVS)."""


# ----- plain (non-hierarchical) transformers: ViT, EVA ------------------------------------------------------------

class _PlainFamily(Family):
    """One token grid through all blocks, prefix tokens first; timm's ``_pos_embed`` for any input size."""

    resize_audio = False

    @classmethod
    def refusal(cls, model: nn.Module) -> str | None:
        if type(model.patch_embed) is not PatchEmbed:
            return (f"with a {type(model.patch_embed).__name__} patch embedding (a CNN stem): only timm's plain "
                    f"PatchEmbed is supported")
        if getattr(model, "patch_drop", None) is not None and not isinstance(model.patch_drop, nn.Identity):
            return "with patch dropout (patch_drop_rate > 0), which changes the token grid: build it without"
        if model.global_pool not in ("token", "avg", "avgmax", "max", "map"):
            return f"with global_pool={model.global_pool!r} (no pooled feature): use 'token', 'avg' or 'map'"
        return None

    def units(self) -> list[Unit]:
        return [Unit(blk, None, 0, self.model.embed_dim) for blk in self.model.blocks]

    def embed(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        """x: (B', 3, H, W) -> tokens (B', prefix + gh*gw, C), grid (gh, gw)."""
        m = self.model
        pe = m.patch_embed
        x = pe.proj(x)
        grid = tuple(x.shape[-2:])
        x = pe.norm(x.flatten(2).transpose(1, 2))
        tokens = (m.cls_token, getattr(m, "dist_token", None), m.reg_token)
        prefix = [t.expand(x.shape[0], -1, -1) for t in tokens if t is not None]
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
        x = m.pos_drop(x)
        return m.norm_pre(x), grid

    def downsample(self, unit: Unit, x: torch.Tensor, grid: tuple[int, int]):
        return x, grid

    def pool(self, x: torch.Tensor) -> torch.Tensor:
        """(B', N, C) -> (B', C): timm's pre-logits feature (class token, mean of patches, attention pool)."""
        return self.model.forward_head(x, pre_logits=True)

    def spatial(self, x: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        """(B', prefix + gh*gw, C) -> (B', gh, gw, C) without the prefix tokens."""
        return x[:, self.model.num_prefix_tokens:].reshape(x.shape[0], *grid, x.shape[-1])

    def stage_ends(self) -> list[int]:
        """Indices of the blocks whose outputs are the four 'stages' (evenly spaced, last block included)."""
        depth = len(self.model.blocks)
        return [depth * k // 4 - 1 for k in (1, 2, 3, 4)]


class ViTFamily(_PlainFamily):
    """timm ``VisionTransformer``: ViT, DeiT / DeiT-III, CLIP, DINOv2 (with registers), SigLIP, MAE, ..."""

    name = "vit"
    title = "ViT"
    timm_classes = (VisionTransformer, VisionTransformerDistilled)

    @classmethod
    def refusal(cls, model: nn.Module) -> str | None:
        other = {type(blk).__name__ for blk in model.blocks if type(blk) is not Block}
        if other:
            return f"with {', '.join(sorted(other))} blocks: only timm's pre-norm Block is supported"
        return super().refusal(model)

    def attn_residual(self, blk: nn.Module, x: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        return x + blk.drop_path1(blk.ls1(blk.attn(blk.norm1(x))))

    def mlp_residual(self, blk: nn.Module, x: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        return x + blk.drop_path2(blk.ls2(blk.mlp(blk.norm2(x))))


class EvaFamily(_PlainFamily):
    """timm ``Eva``: EVA-02 (RoPE, SwiGLU), EVA-01, RoPE ViTs (also per-depth 'mixed' RoPE), DINOv3, PE."""

    name = "eva"
    title = "EVA-02"
    timm_classes = (Eva,)
    resize_audio = True

    def __init__(self, model: nn.Module) -> None:
        super().__init__(model)
        self._mixed = bool(getattr(model, "rope_mixed", False))
        self._rope: dict[tuple[int, int], torch.Tensor | None] = {}

    @classmethod
    def refusal(cls, model: nn.Module) -> str | None:
        other = {type(blk).__name__ for blk in model.blocks if type(blk) is not EvaBlock}
        if other:
            return (f"with {', '.join(sorted(other))} blocks (residual post-norm): only the pre-norm EvaBlock is "
                    f"supported")
        if model.rope is not None and getattr(model.rope, "aug_active", False):
            return "with RoPE coordinate augmentation (rope_*_coords), which would move a frozen backbone's positions"
        return super().refusal(model)

    def embed(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        """x: (B', 3, H, W) -> tokens (B', prefix + gh*gw, C), grid (gh, gw); keeps the grid's RoPE for the blocks."""
        x, grid = super().embed(x)
        self._rope[grid] = self._rope_of(grid)
        return x, grid

    def _rope_of(self, grid: tuple[int, int]) -> torch.Tensor | None:
        """The rotary embedding timm's ``_pos_embed`` gives for ``grid`` (None without RoPE)."""
        m = self.model
        if m.rope is None:
            return None
        if not m.dynamic_img_size and hasattr(m.rope, "feat_shape") and grid == tuple(m.patch_embed.grid_size):
            return m.rope.get_embed()  # the model's own size: timm's cached embedding
        return m.rope.get_embed(shape=list(grid))

    def _rope_for(self, blk: nn.Module, grid: tuple[int, int]) -> torch.Tensor | None:
        rope = self._rope[grid]
        if self._mixed and rope is not None:  # one embedding per depth: this block's
            return rope[next(i for i, b in enumerate(self.model.blocks) if b is blk)]
        return rope

    def attn_residual(self, blk: nn.Module, x: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        y = blk.attn(blk.norm1(x), rope=self._rope_for(blk, grid))
        return x + blk.drop_path1(y if blk.gamma_1 is None else blk.gamma_1 * y)

    def mlp_residual(self, blk: nn.Module, x: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        y = blk.mlp(blk.norm2(x))
        return x + blk.drop_path2(y if blk.gamma_2 is None else blk.gamma_2 * y)


# ----- hierarchical transformers: Swin, Swin-V2 -------------------------------------------------------------------

class _SwinFamily(Family):
    """Stages of window-attention blocks on NHWC maps, patch merging at the start of stages 2-4 (timm >= 1.0)."""

    resize_audio = True

    def units(self) -> list[Unit]:
        units = []
        for s, stage in enumerate(self.model.layers):
            for j, blk in enumerate(stage.blocks):
                down = stage.downsample if j == 0 and not isinstance(stage.downsample, nn.Identity) else None
                units.append(Unit(blk, down, s, blk.norm1.normalized_shape[0]))
        return units

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

    def pool(self, x: torch.Tensor) -> torch.Tensor:
        """(B', N, C) -> (B', C): timm's head pooling (mean, the authors' Swin path) over the tokens as a 1 x N map."""
        return self.model.forward_head(x.unsqueeze(1), pre_logits=True)

    def spatial(self, x: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        return x.reshape(x.shape[0], *grid, x.shape[-1])

    def stage_ends(self) -> list[int]:
        ends, total = [], 0
        for stage in self.model.layers:
            total += len(stage.blocks)
            ends.append(total - 1)
        return ends


class SwinV2Family(_SwinFamily):
    """timm ``SwinTransformerV2`` (res-post-norm, scaled cosine attention, log-spaced continuous position bias)."""

    name = "swinv2"
    title = "Swin-V2"
    timm_classes = (SwinTransformerV2,)

    def attn_residual(self, blk: nn.Module, x: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        b, n, c = x.shape
        return x + blk.drop_path1(blk.norm1(blk._attn(x.view(b, *grid, c)))).view(b, n, c)

    def mlp_residual(self, blk: nn.Module, x: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        return x + blk.drop_path2(blk.norm2(blk.mlp(x)))


class SwinFamily(_SwinFamily):
    """timm ``SwinTransformer`` (V1: pre-norm, relative position bias table)."""

    name = "swin"
    title = "Swin"
    timm_classes = (SwinTransformer,)

    def attn_residual(self, blk: nn.Module, x: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        b, n, c = x.shape
        return x + blk.drop_path1(blk._attn(blk.norm1(x).view(b, *grid, c))).view(b, n, c)

    def mlp_residual(self, blk: nn.Module, x: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        return x + blk.drop_path2(blk.mlp(blk.norm2(x)))


FAMILIES: dict[str, type[Family]] = {f.name: f for f in (ViTFamily, SwinV2Family, SwinFamily, EvaFamily)}
"""family name -> family"""

TIMM_CLASSES: dict[type[nn.Module], str] = {cls: f.name for f in FAMILIES.values() for cls in f.timm_classes}
"""timm model class -> family name"""

SUPPORTED = ", ".join(f"{f.title} ({', '.join(c.__name__ for c in f.timm_classes)})" for f in FAMILIES.values())
"""the supported families, as error messages list them"""


def family_name(model: nn.Module, label: str) -> str:
    """The family of ``model`` (a timm backbone called ``label`` in messages); ConfigError in one line if none fits."""
    name = TIMM_CLASSES.get(type(model))
    if name is None:
        raise ConfigError(f"backbone {label} is {_a(type(model).__name__)}, not a supported transformer family: "
                          f"{SUPPORTED}")
    reason = FAMILIES[name].refusal(model)
    if reason is not None:
        raise ConfigError(f"backbone {label} is {_a(type(model).__name__)} {reason}")
    return name


def family_of(model: nn.Module, label: str | None = None) -> Family:
    """The family object that steps through ``model`` (see :func:`family_name`)."""
    return FAMILIES[family_name(model, label or "passed in")](model)


def _a(word: str) -> str:
    return f"{'an' if word[0].lower() in 'aeiou' else 'a'} {word}"
