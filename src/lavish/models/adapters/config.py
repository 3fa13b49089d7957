"""Adapter configurations: one typed dataclass per adapter kind, a registry, and the paper's presets.

Every field has a default equal to the paper's AVE setting (spec section 4: the authors' README commands, which
produced the numbers) and a help text; ``__post_init__`` refuses bad values with a message naming them.
A config builds the per-block slots (:mod:`lavish.models.adapters.slots`) and, for the methods that act inside
the frozen backbone (LoRA, BitFit, LayerNorm tuning), prepares the backbone.

Kinds (``ADAPTERS``): ``lavish`` (default), ``avish`` (no latent tokens, Table 4/5), ``adapter`` (bottleneck per
modality, Table 6), ``lora`` (Table 6: the authors' rank-C/8 linear adapter per modality), ``compacter`` (Table 6),
``lora_attn`` (LoRA inside the attention projections, through ``peft``), ``bitfit``, ``norm``, ``none``.
The three Table 6 baselines take ``cma`` (the table's CMA column: cross-modal attention in front of the adapter).
Presets (``PRESETS``): ``ave``, ``avs``, ``avqa`` (the authors' run), ``avqa_paper`` (the paper's text).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, ClassVar

from torch import nn

from lavish.errors import ConfigError
from lavish.models.adapters.baselines import FACTORISED, CompacterBottleneck, LowRankBottleneck
from lavish.models.adapters.fusion import DirectFusion, LatentFusion, NoFusion
from lavish.models.adapters.layers import Bottleneck
from lavish.models.adapters.slots import BlockSlots, IdentitySlot, PairSlot, PaperPairSlot, StreamAdapter

FUSIONS = ("bi", "a2v", "v2a", "none")
MODALITIES = ("av", "v", "a")
CMA_MODES = ("none", "direct", "latent")
FORMULATIONS = ("code", "paper")


def _help(default: Any, text: str, *, flag: str | None = None, choices: tuple | None = None) -> Any:
    """A field with its help text; ``flag``: the ``lavish train`` option that sets it (``--latents``), with its
    ``choices`` (the CLI's model options are generated from these fields, :mod:`lavish.cli.options`)."""
    metadata = {"help": text}
    if flag:
        metadata["flag"] = flag
    if choices:
        metadata["choices"] = choices
    return field(default=default, metadata=metadata)


def _check_choice(name: str, value: Any, choices: tuple) -> None:
    if value not in choices:
        raise ConfigError(f"{name}={value!r} is not valid: choose one of {', '.join(map(str, choices))}")


def _check_positive(name: str, value: int) -> None:
    if not isinstance(value, int) or value < 1:
        raise ConfigError(f"{name}={value!r} is not valid: it must be a positive integer")


@dataclass
class AdapterConfig:
    """Base class. ``kind`` names the method in :data:`ADAPTERS`."""

    kind: ClassVar[str] = ""

    def build_slots(self, dim: int, modalities: str) -> BlockSlots:
        """Adapters of one block whose streams have ``dim`` channels."""
        return BlockSlots(IdentitySlot(), IdentitySlot())

    def prepare_backbone(self, backbone: nn.Module) -> None:
        """Act on the frozen backbone (inject layers, unfreeze parameters). Default: nothing."""

    @property
    def has_slots(self) -> bool:
        """Whether the kind adds adapter modules to the blocks (LoRA, BitFit, norm tuning act inside the backbone)."""
        return type(self).build_slots is not AdapterConfig.build_slots

    def to_dict(self) -> dict:
        return {"kind": self.kind, **dataclasses.asdict(self)}


@dataclass
class BottleneckFields:
    """Fields shared by the methods built on the adapter bottleneck (spec 1.1 step C)."""

    reduction: int = _help(8, "bottleneck downsample factor r: C -> C/r -> C", flag="--reduction")
    groups: int = _help(2, "groups G of the two 1x1 convolutions (block-diagonal maps)", flag="--groups")
    use_bn: bool = _help(True, "BatchNorm after each 1x1 convolution (AVE: on)")
    ln_before: bool = _help(True, "LayerNorm on the bottleneck input")
    ln_post: bool = _help(True, "LayerNorm on the bottleneck output")
    audio_gate: bool = _help(True, "zero-initialised output gate on audio adapters (visual ones always gated)")
    order: str = _help("ave", "'ave': gate after LN_post (AVE, AVQA code); 'avs': LN_before unused, gate before LN_post")

    def _validate_bottleneck(self) -> None:
        _check_positive("reduction", self.reduction)
        _check_positive("groups", self.groups)
        _check_choice("order", self.order, ("ave", "avs"))

    def bottleneck(self, dim: int, audio: bool) -> Bottleneck:
        return Bottleneck(
            dim,
            reduction=self.reduction,
            groups=self.groups,
            use_bn=self.use_bn,
            ln_before=self.ln_before,
            ln_post=self.ln_post,
            gate=self.audio_gate or not audio,
            order=self.order,
        )


@dataclass
class LavishConfig(BottleneckFields, AdapterConfig):
    """LAVISH (spec 1.1-1.3): latent-token cross-modal attention + bottleneck, 4 adapters per block."""

    kind: ClassVar[str] = "lavish"
    num_latents: int = _help(2, "latent tokens m per adapter (AVE 2, AVS/AVQA 16 in the paper, 64 in the AVQA run)",
                             flag="--latents")
    latent_init: str = _help("uniform", "latent token init: 'uniform' U[0,1) (AVE code) or 'zeros' (AVS, AVQA code)")
    fusion: str = _help("bi", "direction of cross-modal flow: bi, a2v (audio into visual), v2a, none (Table 4)",
                        flag="--fusion", choices=FUSIONS)
    formulation: str = _help("code", "'code': the authors' code maths; 'paper': the paper's Eqs. 6-8", flag="--formulation",
                             choices=FORMULATIONS)

    def __post_init__(self) -> None:
        self._validate_bottleneck()
        _check_positive("num_latents", self.num_latents)
        _check_choice("latent_init", self.latent_init, ("uniform", "zeros"))
        _check_choice("fusion", self.fusion, FUSIONS)
        _check_choice("formulation", self.formulation, FORMULATIONS)

    def receives(self, modalities: str) -> tuple[bool, bool]:
        """(audio stream takes visual info, visual stream takes audio info)."""
        both = modalities == "av"
        return both and self.fusion in ("bi", "v2a"), both and self.fusion in ("bi", "a2v")

    def fusion_module(self, dim: int, receive: bool) -> nn.Module:
        return LatentFusion(dim, self.num_latents, self.latent_init) if receive else NoFusion()

    def pair(self, dim: int, modalities: str) -> nn.Module:
        recv_a, recv_v = self.receives(modalities)
        # without a receiving stream the paper's summaries would feed nothing (dead parameters): plain bottlenecks
        if self.formulation == "paper" and (recv_a or recv_v):
            return PaperPairSlot(
                dim, self.bottleneck(dim, True), self.bottleneck(dim, False),
                num_latents=self.num_latents, latent_init=self.latent_init,
                receive_audio=recv_a, receive_visual=recv_v,
            )
        audio = StreamAdapter(self.fusion_module(dim, recv_a), self.bottleneck(dim, True)) if "a" in modalities else None
        visual = StreamAdapter(self.fusion_module(dim, recv_v), self.bottleneck(dim, False)) if "v" in modalities else None
        return PairSlot(audio, visual)

    def build_slots(self, dim: int, modalities: str) -> BlockSlots:
        return BlockSlots(self.pair(dim, modalities), self.pair(dim, modalities))


@dataclass
class AvishConfig(LavishConfig):
    """AVISH (Table 4/5): LAVISH without latent tokens, direct cross-attention over all tokens."""

    kind: ClassVar[str] = "avish"
    num_latents: int = _help(0, "unused by AVISH (no latent tokens); must stay 0")

    def __post_init__(self) -> None:
        self._validate_bottleneck()
        if self.num_latents:
            raise ConfigError(f"num_latents={self.num_latents} is not valid for avish, which has no latent tokens")
        _check_choice("fusion", self.fusion, FUSIONS)
        if self.formulation != "code":
            raise ConfigError("formulation='paper' needs latent tokens: use adapter kind 'lavish'")

    def fusion_module(self, dim: int, receive: bool) -> nn.Module:
        return DirectFusion(dim) if receive else NoFusion()


@dataclass
class CmaFields:
    """Cross-modal attention in front of a Table 6 baseline adapter (the table's CMA column).

    Each stream's adapter reads X' = fusion(X, O) instead of X (spec 1.1 steps A-B); the gate g_av starts at 0, so a
    CMA variant starts as its plain adapter. Needs both streams.
    """

    cma: str = _help("none", "cross-modal attention before the adapter (Table 6 'CMA'): 'none'; 'direct': "
                             "X + g softmax(X O^T) O over the other stream's tokens (AVISH's attention, the Table 6 "
                             "rows); 'latent': LAVISH's latent-token attention (cma_latents tokens)", flag="--cma",
                     choices=CMA_MODES)
    cma_latents: int | None = _help(None, "latent tokens per adapter with cma='latent' (default 2, the AVE setting)")

    def _validate_cma(self) -> None:
        _check_choice("cma", self.cma, CMA_MODES)
        if self.cma != "latent" and self.cma_latents is not None:
            raise ConfigError(f"cma_latents={self.cma_latents!r} applies only to cma='latent', not cma={self.cma!r}")
        if self.cma == "latent":
            self.cma_latents = 2 if self.cma_latents is None else self.cma_latents
            _check_positive("cma_latents", self.cma_latents)

    def cma_module(self, dim: int, modalities: str) -> nn.Module:
        if self.cma == "none":
            return NoFusion()
        if modalities != "av":
            raise ConfigError(f"cma={self.cma!r} attends to the other stream: it needs modalities 'av', not "
                              f"{modalities!r}")
        return DirectFusion(dim) if self.cma == "direct" else LatentFusion(dim, self.cma_latents, "uniform")

    def adapter_pair(self, dim: int, modalities: str) -> PairSlot:
        """One position: (cma, adapter) per running stream; ``self.bottleneck(dim, audio)`` builds the adapter."""
        def make(audio: bool) -> StreamAdapter:
            return StreamAdapter(self.cma_module(dim, modalities), self.bottleneck(dim, audio))

        return PairSlot(make(True) if "a" in modalities else None, make(False) if "v" in modalities else None)

    def build_slots(self, dim: int, modalities: str) -> BlockSlots:
        return BlockSlots(self.adapter_pair(dim, modalities), self.adapter_pair(dim, modalities))


@dataclass
class BottleneckAdapterConfig(CmaFields, BottleneckFields, AdapterConfig):
    """Bottleneck adapter per modality (Table 6 'Adapter'; Houlsby-style placement), optionally behind CMA.

    With ``cma="latent"`` it is LAVISH's code formulation with bi-directional fusion (kind ``lavish``).
    """

    kind: ClassVar[str] = "adapter"

    def __post_init__(self) -> None:
        self._validate_bottleneck()
        self._validate_cma()


@dataclass
class CompacterConfig(CmaFields, AdapterConfig):
    """Compacter (Table 6): adapters per modality whose maps are PHM (Kronecker) layers, the authors' settings."""

    kind: ClassVar[str] = "compacter"
    reduction: int = _help(8, "bottleneck downsample factor", flag="--reduction")
    phm_dim: int = _help(4, "number n of Kronecker summands (PHM dimension)")
    rank: int = _help(1, "rank of the factorised slow weights")
    factorised: str = _help("up", "PHM maps with rank-`rank` slow weights: 'up' (the authors' run: full down map), "
                                  "'both' (the Compacter paper), 'none'")

    def __post_init__(self) -> None:
        for name in ("reduction", "phm_dim", "rank"):
            _check_positive(name, getattr(self, name))
        _check_choice("factorised", self.factorised, FACTORISED)
        self._validate_cma()

    def bottleneck(self, dim: int, audio: bool) -> nn.Module:
        return CompacterBottleneck(dim, reduction=self.reduction, phm_dim=self.phm_dim, rank=self.rank,
                                   factorised=self.factorised)


@dataclass
class LoraConfig(CmaFields, AdapterConfig):
    """LoRA as the authors ran it for Table 6: a rank-C/r linear adapter per modality at the adapter positions.

    Their plain bottleneck branch with one group (:class:`~lavish.models.adapters.baselines.LowRankBottleneck`): the
    low-rank update of the block's output, one per stream (the streams share the frozen blocks, so an update inside
    the blocks would be shared; ``lora_attn`` is that variant).
    """

    kind: ClassVar[str] = "lora"
    reduction: int = _help(8, "rank of the update = C / reduction (C the block width: ranks 24-192 on Swin-V2-L)",
                           flag="--reduction")
    use_bn: bool = _help(True, "BatchNorm after each map (AVE: on)")
    ln_before: bool = _help(True, "LayerNorm on the adapter input")
    ln_post: bool = _help(True, "LayerNorm on the adapter output")
    audio_gate: bool = _help(True, "zero-initialised output gate on audio adapters (visual ones always gated)")

    def __post_init__(self) -> None:
        _check_positive("reduction", self.reduction)
        self._validate_cma()

    def bottleneck(self, dim: int, audio: bool) -> nn.Module:
        return LowRankBottleneck(dim, reduction=self.reduction, use_bn=self.use_bn, ln_before=self.ln_before,
                                 ln_post=self.ln_post, gate=self.audio_gate or not audio)


@dataclass
class LoraAttentionConfig(AdapterConfig):
    """LoRA on the attention projections of the frozen blocks, injected with the ``peft`` library.

    peft's ``inject_adapter_in_model`` wraps timm's ``nn.Linear`` layers cleanly; the LoRA weights are shared by the
    audio and visual streams (they run through the same blocks), B = 0 at init so the model starts as the backbone.
    Not the paper's Table 6 LoRA (kind ``lora``, docs/accounting.md).
    """

    kind: ClassVar[str] = "lora_attn"
    rank: int = _help(8, "LoRA rank r")
    alpha: int = _help(16, "LoRA scaling alpha (update scaled by alpha / r)")
    dropout: float = _help(0.0, "dropout on the LoRA input")
    targets: str = _help(r".*\.attn\.(qkv|q_proj|k_proj|v_proj|proj)$",
                         "regex of the backbone modules that get LoRA (fused qkv, or EVA's q/k/v, and the output)")

    def __post_init__(self) -> None:
        _check_positive("rank", self.rank)
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"dropout={self.dropout!r} is not valid: it must be in [0, 1)")

    def prepare_backbone(self, backbone: nn.Module) -> None:
        from peft import LoraConfig as PeftLora
        from peft import inject_adapter_in_model

        for module in backbone.modules():
            # timm Swin-V2 attention otherwise calls F.linear(x, qkv.weight, bias), bypassing a LoRA-wrapped qkv
            if hasattr(module, "qkv_bias_separate"):
                module.qkv_bias_separate = True
        cfg = PeftLora(r=self.rank, lora_alpha=self.alpha, lora_dropout=self.dropout, target_modules=self.targets)
        inject_adapter_in_model(cfg, backbone)
        for name, param in backbone.named_parameters():
            param.requires_grad = "lora_" in name


@dataclass
class BitfitConfig(AdapterConfig):
    """BitFit: train only the biases of the frozen backbone."""

    kind: ClassVar[str] = "bitfit"

    def prepare_backbone(self, backbone: nn.Module) -> None:
        for name, param in backbone.named_parameters():
            param.requires_grad = name.endswith("bias")


@dataclass
class NormConfig(AdapterConfig):
    """LayerNorm tuning: train only the LayerNorm weights and biases of the backbone."""

    kind: ClassVar[str] = "norm"

    def prepare_backbone(self, backbone: nn.Module) -> None:
        for module in backbone.modules():
            if isinstance(module, nn.LayerNorm):
                for param in module.parameters():
                    param.requires_grad = True


@dataclass
class NoAdapterConfig(AdapterConfig):
    """Frozen backbone, only the task head trains."""

    kind: ClassVar[str] = "none"


ADAPTERS: dict[str, type[AdapterConfig]] = {
    cls.kind: cls
    for cls in (LavishConfig, AvishConfig, BottleneckAdapterConfig, LoraConfig, CompacterConfig, LoraAttentionConfig,
                BitfitConfig, NormConfig, NoAdapterConfig)
}

PRESETS: dict[str, AdapterConfig] = {
    # spec section 4, the authors' README commands
    "ave": LavishConfig(num_latents=2, reduction=8, groups=2, use_bn=True, audio_gate=True, latent_init="uniform"),
    "avs": LavishConfig(num_latents=16, reduction=4, groups=2, use_bn=False, audio_gate=False, latent_init="zeros",
                        order="avs"),
    "avqa": LavishConfig(num_latents=64, reduction=8, groups=4, use_bn=False, audio_gate=True, latent_init="zeros"),
    "avqa_paper": LavishConfig(num_latents=16, reduction=4, groups=2, use_bn=False, audio_gate=True,
                               latent_init="zeros"),
}


def preset_settings(kind: str, preset: str) -> dict[str, Any]:
    """The settings of adapter preset ``preset`` that adapter kind ``kind`` has (the one place presets are merged:
    :func:`lavish.adapter_config` and ``lavish train --preset`` both start from it). AVISH takes none of the
    latent-token ones (it has no latent tokens). ConfigError for an unknown preset."""
    if preset not in PRESETS:
        raise ConfigError(f"unknown preset {preset!r}: choose one of {', '.join(PRESETS)}")
    fields = {f.name for f in dataclasses.fields(ADAPTERS[kind])}
    settings = {k: v for k, v in dataclasses.asdict(PRESETS[preset]).items() if k in fields}
    if kind == "avish":
        settings.pop("num_latents", None)
        settings.pop("formulation", None)
    return settings


def adapter_config(kind: str = "lavish", **overrides: Any) -> AdapterConfig:
    """Build the config of adapter ``kind`` with ``overrides``; unknown kind or field -> ConfigError."""
    if kind not in ADAPTERS:
        raise ConfigError(f"unknown adapter {kind!r}: choose one of {', '.join(ADAPTERS)}")
    cls = ADAPTERS[kind]
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(overrides) - names)
    if unknown:
        raise ConfigError(f"adapter {kind!r} has no setting {', '.join(unknown)}; it has {', '.join(sorted(names)) or 'none'}")
    return cls(**overrides)


def config_from_dict(data: dict) -> AdapterConfig:
    """Inverse of :meth:`AdapterConfig.to_dict`."""
    data = dict(data)
    return adapter_config(data.pop("kind"), **data)
