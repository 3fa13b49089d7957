"""The frozen backbone shared by the audio and the visual stream, with adapters in every block (spec 1.3, 2).

``LavishBackbone`` takes a timm ViT, Swin-V2, Swin or EVA (any model of a class in
:mod:`lavish.models.families`, docs/backbones.md), freezes every one of its parameters and runs both streams through
the same weights. Per block: p1 adapters read the streams before the attention and are added after the attention
residual; p2 adapters read the streams after it and are added after the MLP residual. Where the two streams have
the same shape (always on the families whose audio image is resized to the frame grid) both streams live in one
(B'_a + B'_v, N, C) tensor from the patch embedding to the final norm: the frozen parts of each block run on it
once, the adapters read the two streams as views of it and add their outputs in place (no concatenation per
residual, which a straightforward implementation pays twice per block in time and activation memory). Time is folded into the batch by the caller: B' = B * T segments.

Weights: ``create_backbone(name, pretrained=True)`` uses timm's loader (hub), ``weights=PATH`` a local timm
checkpoint (``.safetensors``, ``.pth``, ``.bin``; the authors' timm 0.6.7 Swin-V2 files are converted by timm's
filter). Offline without a file raises one :class:`~lavish.errors.ConfigError` naming both ways out.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path

import timm
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from lavish.errors import ConfigError, ShapeError
from lavish.models import micro  # noqa: F401  (registers the demo backbones)
from lavish.models.adapters import AdapterConfig, LavishConfig, MODALITIES, Streams
from lavish.models.adapters.fused import fusable, joint_added, position_added
from lavish.models.adapters.slots import add_deltas
from lavish.models.families import Unit, family_of
from lavish.models.input_spec import backbone_family

#: the pretrained tag of each paper backbone (the authors' timm 0.6.7 names in comments)
PRETRAINED_TAGS = {
    "swinv2_large_window12_192": "ms_in22k",  # swinv2_large_window12_192_22k
    "swinv2_base_window12_192": "ms_in22k",  # swinv2_base_window12_192_22k
    "vit_base_patch16_224": "augreg_in21k",  # vit_base_patch16_224_in21k
    "vit_large_patch16_224": "augreg_in21k",  # vit_large_patch16_224_in21k
}

#: seed of the weights of a backbone built without pretrained weights
RANDOM_INIT_SEED = 0

#: activation checkpointing modes (``checkpointing=``): what is recomputed in the backward pass.
#: "adapters": only the adapters (their inputs are the block's own inputs, which the frozen block keeps anyway,
#: so the adapters store nearly nothing; recomputing costs their forward again: measured on the CPU, +12 % step
#: time on Swin-V2-B and -13 % on ViT-B, where storing their activations cost more than recomputing them);
#: "blocks": each block with its adapters (only the block inputs are kept; the whole forward runs twice).
#: True means "blocks" and False "none".
CHECKPOINTING = ("none", "adapters", "blocks")


def checkpointing_mode(value: bool | str) -> str:
    """``checkpointing=`` value -> one of :data:`CHECKPOINTING`; ConfigError for anything else."""
    if isinstance(value, bool):
        return "blocks" if value else "none"
    if value not in CHECKPOINTING:
        raise ConfigError(f"checkpointing={value!r} is not valid: choose one of {', '.join(CHECKPOINTING)}")
    return value


#: how the adapters run (``fused_adapters=``): "none": eager PyTorch, one kernel per operator (the reference);
#: "compile": each adapter position (both streams' fusion and bottleneck) is one ``torch.compile`` region (inductor,
#: ``fullgraph=True``, static shapes), whose elementwise and normalisation passes are fused into few kernels, forward
#: and backward; LAVISH positions run :mod:`lavish.models.adapters.fused` (both streams stacked, the latent
#: attention as fused reductions, the residual add included), other adapter kinds their eager ``deltas``;
#: "cuda-graphs": the same regions compiled with ``mode="reduce-overhead"``, which also replays them as CUDA graphs (a
#: GPU only); "inline": the same code as "compile" but not compiled by itself, for a caller that compiles the whole
#: training step (``lavish train --compile-step``), so that the compiler sees the fusable form of the adapters inside
#: its one graph. Only training steps use these (evaluation runs the eager adapters). True = "compile".
FUSED_ADAPTERS = ("none", "compile", "cuda-graphs", "inline")


#: activation memory budget of the stacked LAVISH regions (``torch._functorch.config.activation_memory_budget``, 1.0
#: = torch's default, keep whatever is cheapest to keep): 0.3 makes the partitioner recompute the region's cheap
#: elementwise and normalisation passes in the backward instead of keeping their outputs (measured on a ViT
#: position: kept activations 3.7 -> 1.8 token tensors for 49 -> 51 kernels forward + backward); the matrix
#: products are not recomputed
FUSED_MEMORY_BUDGET = 0.3


def compile_mode(setting: str, value: bool | str, modes: tuple[str, ...]) -> str:
    """A compile setting's value -> one of ``modes`` (``modes[0]`` is off, ``modes[1]`` what True means);
    ConfigError naming ``setting`` for anything else or for "cuda-graphs" on a machine without a CUDA GPU."""
    if isinstance(value, bool):
        return modes[1] if value else modes[0]
    if value not in modes:
        raise ConfigError(f"{setting}={value!r} is not valid: choose one of {', '.join(modes)}")
    if value == "cuda-graphs" and not torch.cuda.is_available():
        raise ConfigError(f"{setting}='cuda-graphs' needs a CUDA GPU, and torch sees none on this machine: use "
                          f"{modes[1]!r}")
    return value


def fused_adapters_mode(value: bool | str) -> str:
    """``fused_adapters=`` value -> one of :data:`FUSED_ADAPTERS` (see :func:`compile_mode`)."""
    return compile_mode("fused_adapters", value, FUSED_ADAPTERS)


#: backbones named in the paper, for ``lavish info`` and the docs
PAPER_BACKBONES = ("vit_base_patch16_224", "vit_large_patch16_224", "swinv2_base_window12_192",
                   "swinv2_large_window12_192")


def full_name(name: str) -> str:
    """``name`` with its default pretrained tag when it has none (``swinv2_large_window12_192.ms_in22k``)."""
    base, _, tag = name.partition(".")
    return f"{base}.{tag or PRETRAINED_TAGS[base]}" if (tag or base in PRETRAINED_TAGS) else base


def create_backbone(name: str, *, pretrained: bool = False, weights: str | Path | None = None,
                    **kwargs) -> nn.Module:
    """A timm backbone of a supported family (:mod:`lavish.models.families`) without classifier (``num_classes=0``).

    pretrained: load timm's pretrained weights for ``name`` (needs the hub); weights: a local checkpoint file
    instead (implies pretrained). Raises ConfigError for an unknown name, a missing file or an unreachable hub.
    """
    backbone_family(name)  # unknown or unsupported -> one-line ConfigError, before any weights are built
    base = name.split(".")[0]
    kwargs.setdefault("num_classes", 0)
    if weights is not None:
        path = Path(weights)
        if not path.is_file():
            raise ConfigError(f"backbone weights file {path} does not exist")
        try:
            return timm.create_model(full_name(name), pretrained=True,
                                     pretrained_cfg_overlay={"file": str(path)}, **kwargs)
        except Exception as err:  # noqa: BLE001  (any loader failure is the file's fault here)
            raise ConfigError(f"cannot load backbone weights {path} into {name}: {str(err).splitlines()[0]}") from None
    if not pretrained:
        # seeded, so that an adapter trained on a random-init backbone (demo, tests) can be evaluated later
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(RANDOM_INIT_SEED)
            return timm.create_model(base, pretrained=False, **kwargs)
    try:
        return timm.create_model(full_name(name), pretrained=True, **kwargs)
    except Exception as err:  # noqa: BLE001  (offline hub errors come in many types)
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise ConfigError(
            f"cannot download pretrained weights for {name} ({first}): give a local timm checkpoint "
            f"(weights=PATH; lavish train: --backbone-weights PATH), or use random weights on purpose "
            f"(pretrained=False; lavish train: --no-pretrained)"
        ) from None


#: the files of a :meth:`LavishBackbone.save_pretrained` folder (peft's names)
PRETRAINED_WEIGHTS = "adapter_model.safetensors"
PRETRAINED_CONFIG = "adapter_config.json"


def micro_backbone(name: str) -> bool:
    """Whether ``name`` is one of lavish's micro demo backbones (random by design: no pretrained weights exist)."""
    from lavish.models.input_spec import describe

    return describe(name).micro


def frame_stats(model: nn.Module | str) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """(mean, std) per RGB channel that timm model ``model`` (built, or a name) was pretrained with, from timm's
    pretrained config (for a name: of its default pretrained tag, :func:`full_name`); ImageNet's when none is
    recorded."""
    from lavish.media.frames import IMAGENET_MEAN, IMAGENET_STD

    if isinstance(model, str):
        cfg = timm.get_pretrained_cfg(full_name(model))
        cfg = cfg.to_dict() if cfg is not None else {}
    else:
        cfg = getattr(model, "pretrained_cfg", None) or {}
    mean, std = cfg.get("mean"), cfg.get("std")
    if not (mean and std and len(mean) == 3 and len(std) == 3):
        return IMAGENET_MEAN, IMAGENET_STD
    return tuple(float(x) for x in mean), tuple(float(x) for x in std)


@dataclass
class BackboneOutput:
    """Final tokens (after the backbone's last norm) and, if asked, visual features at four depths.

    audio: (B', N_a, D) or None; visual: (B', N_v, D) or None; visual_stages: four (B', h, w, C_s) maps
    (Swin-V2: each stage's output before patch merging, the last one normed; ViT: see ``stage_ends``).
    """

    audio: torch.Tensor | None
    visual: torch.Tensor | None
    visual_stages: list[torch.Tensor]


class LavishBackbone(nn.Module):
    """Frozen timm backbone + per-block adapter slots, shared by an audio and a visual stream.

    Args:
        backbone: a timm model of a supported family (its parameters are frozen here); ConfigError otherwise.
        adapter: adapter configuration (default: LAVISH with the AVE preset).
        modalities: ``"av"`` both streams, ``"v"`` vision only (no audio stream runs), ``"a"`` audio only.
        checkpointing: what to recompute in the backward pass (less memory, more time): "none", "adapters",
            "blocks" (see :data:`CHECKPOINTING`); True = "blocks".
        batch_streams: run the frozen parts of a block on both streams as one batch when shapes allow.
        fused_adapters: run each adapter position of a training step as one compiled region: "none", "compile",
            "cuda-graphs" (see :data:`FUSED_ADAPTERS`); True = "compile". Same maths, fewer kernels.
        train_norms: also train the backbone's LayerNorms (the authors' AVQA run, ``--is_vit_ln 1``).
    """

    is_lavish_backbone: ClassVar[bool] = True
    """the marker :mod:`lavish.models.weights` finds backbones by (without importing this module)"""

    def __init__(
        self,
        backbone: nn.Module,
        adapter: AdapterConfig | None = None,
        *,
        modalities: str = "av",
        checkpointing: bool | str = False,
        batch_streams: bool = True,
        fused_adapters: bool | str = False,
        train_norms: bool = False,
    ) -> None:
        super().__init__()
        if modalities not in MODALITIES:
            raise ConfigError(f"modalities={modalities!r} is not valid: choose one of {', '.join(MODALITIES)}")
        self.backbone = backbone
        self.family = family_of(backbone)
        self.adapter_config = adapter if adapter is not None else LavishConfig()
        self.modalities = modalities
        self.checkpointing = checkpointing
        self.fused_adapters = fused_adapters
        self.batch_streams = batch_streams
        self.units: list[Unit] = self.family.units()
        self.slots = nn.ModuleList(self.adapter_config.build_slots(u.dim, modalities) for u in self.units)
        # what unwrap() gives back: the user's requires_grad flags and the attention settings LoRA changes
        self._user_state = ({n: p.requires_grad for n, p in backbone.named_parameters()},
                            {n: m.qkv_bias_separate for n, m in backbone.named_modules()
                             if hasattr(m, "qkv_bias_separate")})
        self.frame_mean, self.frame_std = frame_stats(backbone)
        self.pretrained: bool | None = None
        """whether the frozen weights are pretrained (set by ``lavish.wrap`` for a name; None: not known)"""
        for param in backbone.parameters():
            param.requires_grad = False
        self.adapter_config.prepare_backbone(backbone)
        if train_norms:
            for module in backbone.modules():
                if isinstance(module, nn.LayerNorm):
                    module.requires_grad_(True)
        self._stage_ends = set(self.family.stage_ends())
        self.img_size = tuple(backbone.patch_embed.img_size)

    @property
    def checkpointing(self) -> str:
        """What the backward pass recomputes: one of :data:`CHECKPOINTING` (settable, also with a bool)."""
        return self._checkpointing

    @checkpointing.setter
    def checkpointing(self, value: bool | str) -> None:
        self._checkpointing = checkpointing_mode(value)

    @property
    def fused_adapters(self) -> str:
        """How a training step runs the adapters: one of :data:`FUSED_ADAPTERS` (settable, also with a bool)."""
        return self._fused_adapters

    @fused_adapters.setter
    def fused_adapters(self, value: bool | str) -> None:
        self._fused_adapters = fused_adapters_mode(value)
        self.__dict__["_compiled_cache"] = {}  # not a submodule: compiled functions are rebuilt, never saved

    def _compiled(self, position: nn.Module, kind: str):
        """One compiled region of ``position`` (built on first use; keyed by the module itself, so that a deep copy
        of this backbone compiles its own adapters). kind: "deltas" (``position.deltas``, any adapter kind),
        "streams" (:func:`position_added`) or "joint" (:func:`joint_added`), both LAVISH positions only."""
        cache = self.__dict__.setdefault("_compiled_cache", {})
        key = (id(position), kind)
        entry = cache.get(key)
        if entry is None or entry[0] is not position:
            mode = "reduce-overhead" if self.fused_adapters == "cuda-graphs" else None
            fn = {"deltas": lambda: position.deltas,
                  "streams": lambda: lambda pre, post: position_added(position, pre, post),
                  "joint": lambda: lambda pre, post: joint_added(position, pre, post)}[kind]()
            if self.fused_adapters == "inline":  # traced by the caller's compile of the whole step
                return fn
            compiled = torch.compile(fn, fullgraph=True, dynamic=False, mode=mode)
            if kind != "deltas":
                compiled = _with_memory_budget(compiled, FUSED_MEMORY_BUDGET)
            entry = cache[key] = (position, compiled)
        return entry[1]

    def _compiled_deltas(self, position: nn.Module):
        """``position.deltas`` as one compiled region (round 1 of issue 16; adapter kinds other than LAVISH)."""
        return self._compiled(position, "deltas")

    def _fused_added(self, position: nn.Module) -> bool:
        """Whether this training step runs ``position`` with its residual add as one stacked compiled region."""
        return (self.training and self.fused_adapters != "none" and self.checkpointing != "adapters"
                and torch.is_grad_enabled() and fusable(position))

    @property
    def num_features(self) -> int:
        """Channels D of the final tokens."""
        return self.family.num_features

    def stage_dims(self) -> list[int]:
        """Channels of the four ``visual_stages`` maps."""
        return [self.units[i].dim for i in sorted(self._stage_ends)]

    def audio_image(self, spec: torch.Tensor) -> torch.Tensor:
        """Spectrogram (B', F, M) (time x mel) -> 3-channel image (B', 3, F', M').

        Families with ``resize_audio`` (Swin-V2, Swin, EVA): bilinear resize to the frame size (a no-op for the
        authors' 192x192 front-end on Swin-V2); ViT: as is.
        """
        img = spec.unsqueeze(1)
        if self.family.resize_audio and tuple(img.shape[-2:]) != self.img_size:
            img = F.interpolate(img, size=self.img_size, mode="bilinear", align_corners=False)
        return img.expand(-1, 3, -1, -1)

    def _frozen(self, fn, blk: nn.Module, s: Streams, grid) -> Streams:
        a, v = s
        if a is None:
            return Streams(None, fn(blk, v, grid))
        if v is None:
            return Streams(fn(blk, a, grid), None)
        return Streams(fn(blk, a, grid), fn(blk, v, grid))

    def _block(self, i: int, audio, visual, grid):
        """One block with its adapters, streams apart: (B', N, C) tokens of each stream (or None) -> same."""
        unit, slot, fam = self.units[i], self.slots[i], self.family
        pre = Streams(audio, visual)
        mid = self._added(slot.p1, pre, self._frozen(fam.attn_residual, unit.block, pre, grid))
        out = self._added(slot.p2, mid, self._frozen(fam.mlp_residual, unit.block, mid, grid))
        return out.audio, out.visual

    def _added(self, position: nn.Module, pre: Streams, post: Streams) -> Streams:
        """post + what ``position`` adds to each stream, reading ``pre``."""
        if self._fused_added(position) and pre.audio is not None and pre.visual is not None:
            return self._compiled(position, "streams")(pre, post)
        return add_deltas(post, self._deltas(position, pre))

    def _joint_block(self, i: int, x: torch.Tensor, n_audio: int, grid) -> torch.Tensor:
        """One block on both streams held in one tensor x (B'_a + B'_v, N, C), audio rows first -> same.

        The frozen residual branches run once on x; the adapters read the two streams as views and their deltas
        are added in place into the residual sums (outputs of an add, which autograd does not keep), so no
        concatenation or split copies the streams. Same maths as :meth:`_block`.
        """
        unit, slot, fam = self.units[i], self.slots[i], self.family
        if self._fused_added(slot.p1) and 2 * n_audio == x.shape[0]:
            # LAVISH, fused: each position one compiled region over both streams stacked, residual add included
            x = self._compiled(slot.p1, "joint")(x, fam.attn_residual(unit.block, x, grid))
            return self._compiled(slot.p2, "joint")(x, fam.mlp_residual(unit.block, x, grid))
        deltas = self._deltas(slot.p1, Streams(*x.split(n_audio)))
        x = _add_rows(fam.attn_residual(unit.block, x, grid), deltas, n_audio)
        deltas = self._deltas(slot.p2, Streams(*x.split(n_audio)))
        return _add_rows(fam.mlp_residual(unit.block, x, grid), deltas, n_audio)

    def _deltas(self, position: nn.Module, pre: Streams) -> Streams:
        """What one adapter position adds to each stream; recomputed in backward under "adapters" checkpointing;
        one compiled region in a training step under ``fused_adapters``."""
        grad = torch.is_grad_enabled() and _has_parameters(position)
        fused = grad and self.training and self.fused_adapters != "none"
        deltas = self._compiled_deltas(position) if fused else position.deltas
        if self.checkpointing == "adapters" and grad:
            # the inputs are views of tensors the frozen block keeps for its own backward: nothing new is stored
            return checkpoint(deltas, pre, use_reentrant=False,
                              context_fn=lambda: (contextlib.nullcontext(), _buffers_kept(position)))
        return deltas(pre)

    def _run(self, fn, i: int, *args):
        if self.checkpointing == "blocks" and torch.is_grad_enabled():
            # the recomputation in backward runs the adapters' BatchNorms in train mode again: keep their running
            # statistics as the forward left them, so that a checkpointed step updates them once, as without
            slot = self.slots[i]
            return checkpoint(fn, i, *args, use_reentrant=False,
                              context_fn=lambda: (contextlib.nullcontext(), _buffers_kept(slot)))
        return fn(i, *args)

    def forward(self, audio: torch.Tensor | None, visual: torch.Tensor | None,
                return_stages: bool = False) -> BackboneOutput:
        """audio: (B', F, M) spectrograms (normalised) or None; visual: (B', 3, H, W) normalised frames or None.

        The streams that run are those of ``modalities``; the other input is ignored (may be None). Inputs of the
        wrong rank, dtype or size, mismatched batch sizes or swapped streams raise :class:`lavish.ShapeError`
        naming what was expected and what was given (checks of static shapes only: free, and traced away by
        ``torch.compile``).
        """
        self.check_inputs(audio, visual)
        fam = self.family
        a, grid_a = fam.embed(self.audio_image(audio)) if "a" in self.modalities else (None, None)
        v, grid_v = fam.embed(visual) if "v" in self.modalities else (None, None)
        grid = grid_v if v is not None else grid_a
        joint = self.batch_streams and a is not None and v is not None and a.shape == v.shape
        n_audio = a.shape[0] if a is not None else 0
        x = torch.cat([a, v]) if joint else None
        stages = []
        for i, unit in enumerate(self.units):
            if unit.downsample is not None:  # Swin families only, where both streams share the grid
                if joint:
                    x, grid = fam.downsample(unit, x, grid)
                else:
                    a_out = fam.downsample(unit, a, grid) if a is not None else (None, None)
                    v_out = fam.downsample(unit, v, grid) if v is not None else (None, None)
                    (a, grid_a), (v, grid_v) = a_out, v_out
                    grid = grid_v if v is not None else grid_a
            if joint:
                x = self._run(self._joint_block, i, x, n_audio, grid)
                v = x[n_audio:]
            else:
                a, v = self._run(self._block, i, a, v, grid)
            if return_stages and v is not None and i in self._stage_ends:
                stages.append(fam.spatial(v, grid))
        if joint:
            a, v = fam.final(x).split(n_audio)
        else:
            a = fam.final(a) if a is not None else None
            v = fam.final(v) if v is not None else None
        if stages:
            stages[-1] = fam.spatial(v, grid)  # the last map after the final norm
        return BackboneOutput(a, v, stages)

    def check_inputs(self, audio: torch.Tensor | None, visual: torch.Tensor | None) -> None:
        """Raise :class:`~lavish.errors.ShapeError` unless the streams that run get (B', F, M) spectrograms and
        (B', 3, H, W) frames at the model's size ``img_size``, floating point, with the same B'. Only shapes and
        dtypes are read (never values), so the check costs nothing and compiles to nothing."""
        h, w = self.img_size
        want_v = f"frames (B', 3, {h}, {w})"
        if "v" in self.modalities:
            _check_tensor("frames", visual, want_v)
            if visual.dim() == 3 and "a" in self.modalities and audio is not None and audio.dim() == 4:
                raise ShapeError(f"streams swapped: got frames of shape {_shape(visual)} and spectrograms of shape "
                                 f"{_shape(audio)}; call backbone(spectrograms (B', F, M), {want_v})")
            if visual.dim() != 4 or visual.shape[1] != 3:
                hint = " (fold time into the batch: B' = B * T)" if visual.dim() == 5 else ""
                raise ShapeError(f"expected {want_v}, got frames of shape {_shape(visual)}{hint}")
            if tuple(visual.shape[-2:]) != (h, w):
                raise ShapeError(f"frames of {visual.shape[-2]}x{visual.shape[-1]} given to a {h}x{w} backbone: "
                                 f"expected {want_v} (lavish.input_spec(name).frame_size), got {_shape(visual)}")
        if "a" in self.modalities:
            _check_tensor("spectrograms", audio, "spectrograms (B', F, M)")
            if audio.dim() != 3:
                hint = " (fold time into the batch: B' = B * T)" if audio.dim() == 4 and audio.shape[1] != 3 else ""
                if audio.dim() == 4 and audio.shape[1] == 3:
                    hint = "; streams swapped? call backbone(spectrograms, frames)"
                raise ShapeError(f"expected spectrograms (B', F, M), got shape {_shape(audio)}{hint}")
        if self.modalities == "av" and audio.shape[0] != visual.shape[0]:
            raise ShapeError(f"batch sizes differ: {audio.shape[0]} spectrograms and {visual.shape[0]} frames "
                             f"(row i of each must be the same segment)")

    def pool(self, tokens: torch.Tensor) -> torch.Tensor:
        """(B', N, D) -> (B', D): timm's pre-logits feature (Swin: mean of tokens, ViT: class token, as the authors)."""
        return self.family.pool(tokens)

    def trainable_parameters(self) -> list[nn.Parameter]:
        """What training changes, for an optimiser: the adapters (and, for LoRA / BitFit / norm tuning, the
        backbone parameters the adapter kind unfroze). Everything else stays frozen."""
        return [p for p in self.parameters() if p.requires_grad]

    # ------------------------------------------------------------------------------- what a peft user reaches for
    @property
    def frame_stats(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """(mean, std) per RGB channel the frames must be normalised with (the backbone's pretraining statistics,
        from timm's pretrained config; ImageNet's when it has none): ``lavish.normalize_frames(frames,
        *backbone.frame_stats)``. Recorded in adapter files; a file without them sets ImageNet's on load."""
        return tuple(self.frame_mean), tuple(self.frame_std)

    @property
    def backbone_name(self) -> str:
        """The timm architecture name of the frozen model (its class name when it has no timm config)."""
        return getattr(self.backbone, "pretrained_cfg", {}).get("architecture") or type(self.backbone).__name__

    def print_trainable_parameters(self) -> None:
        """Print ``trainable params: N || all params: M || trainable%: P`` (as peft's method does)."""
        trainable = sum(p.numel() for p in self.parameters() if p.requires_grad)
        total = sum(p.numel() for p in self.parameters())
        print(f"trainable params: {trainable:,} || all params: {total:,} || trainable%: {100 * trainable / total:.4f}")

    def pretrained_config(self) -> dict:
        """What :meth:`save_pretrained` writes as ``adapter_config.json``."""
        from lavish import __version__

        return {"lavish_version": __version__, "backbone": self.backbone_name, "family": self.family.name,
                "pretrained": self.pretrained, "adapter": self.adapter_config.to_dict(),
                "modalities": self.modalities, "frame_mean": list(self.frame_mean), "frame_std": list(self.frame_std)}

    def save_pretrained(self, directory: str | Path) -> Path:
        """Write ``directory/adapter_model.safetensors`` (the adapter file of :func:`lavish.save_adapter`) and
        ``directory/adapter_config.json`` (readable settings: backbone, adapter kind and fields, modalities, frame
        statistics), the layout peft users share; :meth:`from_pretrained` rebuilds the model. Returns the folder."""
        import json

        from lavish.fileio import write_json
        from lavish.models.weights import file_config, save_adapter

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        save_adapter(self, directory / PRETRAINED_WEIGHTS, file_config(self))
        write_json(directory / PRETRAINED_CONFIG, json.loads(json.dumps(self.pretrained_config())))
        return directory

    @classmethod
    def from_pretrained(cls, directory: str | Path, backbone: nn.Module | str | None = None, *,
                        pretrained: bool | None = None, weights: str | Path | None = None) -> "LavishBackbone":
        """The model :meth:`save_pretrained` wrote into ``directory``: the frozen backbone from ``backbone`` (a
        built timm model, or a name), else the recorded name (pretrained as it was saved: timm's weights for a real
        name, random for a micro one; ``pretrained`` / ``weights`` override), with the saved adapters loaded."""
        import json

        from lavish.errors import CheckpointError
        from lavish.models.adapters import config_from_dict
        from lavish.models.weights import file_config, load_adapter_into

        directory = Path(directory)
        path = directory / PRETRAINED_CONFIG
        try:
            config = json.loads(path.read_text())
            adapter = config_from_dict(config["adapter"])
            name, modalities = config["backbone"], config["modalities"]
        except FileNotFoundError:
            raise CheckpointError(f"{directory} holds no {PRETRAINED_CONFIG} (not a save_pretrained folder)") from None
        except (ValueError, KeyError, TypeError, AttributeError) as err:
            raise CheckpointError(f"{path} is not a valid adapter config ({type(err).__name__}: {err})") from None
        if backbone is None or isinstance(backbone, str):
            name = backbone or name
            if pretrained is None:
                recorded = config.get("pretrained")
                pretrained = (not micro_backbone(name)) if recorded is None else bool(recorded)
            backbone = create_backbone(name, pretrained=pretrained or weights is not None, weights=weights)
        model = cls(backbone, adapter, modalities=modalities)
        model.pretrained = pretrained
        load_adapter_into(model, directory / PRETRAINED_WEIGHTS, file_config(model))
        return model

    def unwrap(self) -> nn.Module:
        """The user's timm model back: LoRA layers removed (not merged), every parameter's ``requires_grad`` and
        the attention settings as they were before wrapping; the frozen weights untouched. This LavishBackbone is
        not usable afterwards."""
        self._remove_lora(merge=False)
        grads, separate = self._user_state
        for name, param in self.backbone.named_parameters():
            param.requires_grad = grads.get(name, param.requires_grad)
        for name, module in self.backbone.named_modules():
            if name in separate:
                module.qkv_bias_separate = separate[name]
        return self.backbone

    def merge_and_unload(self) -> nn.Module:
        """For the LoRA kind injected into the backbone (``lora_attn``): fold each LoRA update into the weight it
        adapts (W + B A * alpha / r) and return the plain timm model, whose forward then equals this model's on a
        single stream. Other kinds are refused in one :class:`~lavish.errors.ConfigError` line with the reason."""
        kind = self.adapter_config.kind
        if kind != "lora_attn":
            reason = {
                "lavish": "its cross-modal adapters read the other stream's tokens through latent tokens, a function "
                          "of both inputs that no weight of a single-stream model can hold",
                "avish": "its cross-modal adapters read the other stream's tokens, which no single-stream weight holds",
                "none": "it has no adapters to merge",
            }.get(kind, "its bottleneck adapters have normalisation, non-linearities and gates between their "
                        "projections, so they are no linear update of a frozen weight")
            raise ConfigError(f"merge_and_unload() does not apply to adapter {kind!r}: {reason}; only 'lora_attn' "
                              f"(LoRA inside the frozen projections) merges; use unwrap() for the plain timm model")
        self._remove_lora(merge=True)
        for param in self.backbone.parameters():
            param.requires_grad = False
        return self.backbone

    def _remove_lora(self, merge: bool) -> None:
        """Replace every peft LoRA layer in the backbone by its base layer (merged into it first when ``merge``)."""
        try:
            from peft.tuners.lora import LoraLayer
        except ImportError:  # pragma: no cover - peft is a dependency
            return
        for name, module in list(self.backbone.named_modules()):
            if isinstance(module, LoraLayer):
                if merge:
                    module.merge()
                parent_name, _, child = name.rpartition(".")
                parent = self.backbone.get_submodule(parent_name) if parent_name else self.backbone
                setattr(parent, child, module.get_base_layer())


def _shape(x: torch.Tensor) -> tuple[int, ...]:
    return tuple(int(n) for n in x.shape)


def _check_tensor(what: str, x, expected: str) -> None:
    """ShapeError unless ``x`` is a floating-point tensor."""
    if not isinstance(x, torch.Tensor):
        raise ShapeError(f"expected {expected} as a tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        hint = " (uint8 frames: lavish.normalize_frames(frames))" if what == "frames" else ""
        raise ShapeError(f"expected floating-point {what}, got dtype {str(x.dtype).replace('torch.', '')}{hint}")


def _with_memory_budget(compiled, budget: float):
    """``compiled`` called under an activation memory budget (read when its forward and backward are partitioned,
    at the first call of each shape)."""
    import torch._functorch.config as functorch_config

    def run(*args):
        with functorch_config.patch(activation_memory_budget=budget):
            return compiled(*args)

    return run


def _has_parameters(module: nn.Module) -> bool:
    return next(module.parameters(), None) is not None


@contextlib.contextmanager
def _buffers_kept(module: nn.Module):
    """Restore every buffer of ``module`` (BatchNorm running statistics) on exit."""
    saved = [(b, b.clone()) for b in module.buffers()]
    try:
        yield
    finally:
        with torch.no_grad():
            for b, value in saved:
                b.copy_(value)


def _add_rows(x: torch.Tensor, deltas: Streams, n_audio: int) -> torch.Tensor:
    """x (B'_a + B'_v, N, C) with deltas.audio added to its first n_audio rows and deltas.visual to the rest.

    In place: x must be the fresh output of an add (the residual sum), which autograd does not save.
    """
    if deltas.audio is not None:
        x[:n_audio] += deltas.audio
    if deltas.visual is not None:
        x[n_audio:] += deltas.visual
    return x

