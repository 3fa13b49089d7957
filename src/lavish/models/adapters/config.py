"""Adapter configurations: one typed dataclass per adapter kind, a registry, and the paper's presets.

Every field has a default equal to the paper's AVE setting (spec section 4: the authors' README commands, which
produced the numbers) and a help text; ``__post_init__`` refuses bad values with a message naming them.
A config builds the per-block slots (:mod:`lavish.models.adapters.slots`) and, for the methods that act inside
the frozen backbone (LoRA, BitFit, LayerNorm tuning), prepares the backbone.

Kinds (``ADAPTERS``): ``lavish`` (default), ``avish`` (no latent tokens, Table 4/5), ``adapter`` (bottleneck per
modality, Table 6), ``lora`` (Table 6, through ``peft``), ``compacter`` (Table 6), ``bitfit``, ``norm``, ``none``.
Presets (``PRESETS``): ``ave``, ``avs``, ``avqa`` (the authors' run), ``avqa_paper`` (the paper's text).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, ClassVar

from torch import nn

from lavish.errors import ConfigError
from lavish.models.adapters.fusion import DirectFusion, LatentFusion, NoFusion
from lavish.models.adapters.layers import Bottleneck, Gate, PHMLinear
from lavish.models.adapters.slots import BlockSlots, IdentitySlot, PairSlot, PaperPairSlot, StreamAdapter

FUSIONS = ("bi", "a2v", "v2a", "none")
MODALITIES = ("av", "v", "a")


def _help(default: Any, text: str) -> Any:
    return field(default=default, metadata={"help": text})


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

    reduction: int = _help(8, "bottleneck downsample factor r: C -> C/r -> C")
    groups: int = _help(2, "groups G of the two 1x1 convolutions (block-diagonal maps)")
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
    num_latents: int = _help(2, "latent tokens m per adapter (AVE 2, AVS/AVQA 16 in the paper, 64 in the AVQA run)")
    latent_init: str = _help("uniform", "latent token init: 'uniform' U[0,1) (AVE code) or 'zeros' (AVS, AVQA code)")
    fusion: str = _help("bi", "direction of cross-modal flow: bi, a2v (audio into visual), v2a, none (Table 4)")
    formulation: str = _help("code", "'code': the authors' code maths; 'paper': the paper's Eqs. 6-8")

    def __post_init__(self) -> None:
        self._validate_bottleneck()
        _check_positive("num_latents", self.num_latents)
        _check_choice("latent_init", self.latent_init, ("uniform", "zeros"))
        _check_choice("fusion", self.fusion, FUSIONS)
        _check_choice("formulation", self.formulation, ("code", "paper"))

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
class BottleneckAdapterConfig(BottleneckFields, AdapterConfig):
    """Bottleneck adapter per modality, no cross-modal exchange (Table 6 'Adapter'; Houlsby-style placement)."""

    kind: ClassVar[str] = "adapter"

    def __post_init__(self) -> None:
        self._validate_bottleneck()

    def pair(self, dim: int, modalities: str) -> PairSlot:
        audio = StreamAdapter(NoFusion(), self.bottleneck(dim, True)) if "a" in modalities else None
        visual = StreamAdapter(NoFusion(), self.bottleneck(dim, False)) if "v" in modalities else None
        return PairSlot(audio, visual)

    def build_slots(self, dim: int, modalities: str) -> BlockSlots:
        return BlockSlots(self.pair(dim, modalities), self.pair(dim, modalities))


class CompacterBottleneck(nn.Module):
    """Compacter adapter: gate * PHM_up(ReLU(PHM_down(LN(x)))). x: (B', N, C) -> (B', N, C), zero at init."""

    def __init__(self, dim: int, reduction: int, phm_dim: int, rank: int) -> None:
        super().__init__()
        hidden = max(phm_dim, (dim // reduction) // phm_dim * phm_dim)
        self.ln_before = nn.LayerNorm(dim)
        self.down = PHMLinear(dim, hidden, phm_dim, rank)
        self.act = nn.ReLU()
        self.up = PHMLinear(hidden, dim, phm_dim, rank)
        self.gate = Gate()

    def forward(self, x):
        return self.gate(self.up(self.act(self.down(self.ln_before(x)))))


@dataclass
class CompacterConfig(AdapterConfig):
    """Compacter (Table 6): bottleneck adapters per modality whose maps are PHM (Kronecker) layers."""

    kind: ClassVar[str] = "compacter"
    reduction: int = _help(8, "bottleneck downsample factor")
    phm_dim: int = _help(4, "number n of Kronecker summands (PHM dimension)")
    rank: int = _help(1, "rank of the slow weights")

    def __post_init__(self) -> None:
        for name in ("reduction", "phm_dim", "rank"):
            _check_positive(name, getattr(self, name))

    def pair(self, dim: int, modalities: str) -> PairSlot:
        def make():
            return StreamAdapter(NoFusion(), CompacterBottleneck(dim, self.reduction, self.phm_dim, self.rank))

        return PairSlot(make() if "a" in modalities else None, make() if "v" in modalities else None)

    def build_slots(self, dim: int, modalities: str) -> BlockSlots:
        return BlockSlots(self.pair(dim, modalities), self.pair(dim, modalities))


@dataclass
class LoraConfig(AdapterConfig):
    """LoRA on the attention projections of the frozen blocks (Table 6), injected with the ``peft`` library.

    peft's ``inject_adapter_in_model`` wraps timm's ``nn.Linear`` layers cleanly; the LoRA weights are shared by the
    audio and visual streams (they run through the same blocks), B = 0 at init so the model starts as the backbone.
    """

    kind: ClassVar[str] = "lora"
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
    for cls in (LavishConfig, AvishConfig, BottleneckAdapterConfig, LoraConfig, CompacterConfig, BitfitConfig,
                NormConfig, NoAdapterConfig)
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
