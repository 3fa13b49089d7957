"""The AVVP model: LAVISH backbone -> per-segment audio and visual features -> the Hybrid Attention Network (HAN).

Audio-visual video parsing on LLP (Tian et al., ECCV 2020; their code github:YapengTian/AVVP-ECCV20,
``nets/net_audiovisual.py`` ``MMIL_Net`` / ``HANLayer`` / ``Encoder`` and ``main_avvp.py``): 10 one-second segments
per clip, 25 classes, trained on video-level labels only, evaluated on which events are heard and which are seen
in each second.

Model (``AvvpModel``): each segment's audio and frame run through the LAVISH backbone (time folded into the batch,
adapters fusing the streams as for AVE) and are pooled (``LavishBackbone.pool``) to one D-vector per segment and
modality, (B, T, D) each. :class:`HanHead` then does what ``MMIL_Net`` does after its feature extractors:

* ``fc_a``, ``fc_v``: Linear(D, 512), no non-linearity (the benchmark projects VGGish 128 -> 512 and fuses
  ResNet-152 / R(2+1)D features to 512; we have one backbone feature per segment and modality);
* HAN layer(s) (``HanLayer``, the benchmark's ``HANLayer``): for the query modality x and the other modality y,
  ``x = LN1(x + Drop(CrossAttn(x, y, y)) + Drop(SelfAttn(x, x, x)))``, ``x = LN2(x + Drop(W2 Drop(ReLU(W1 x))))``,
  attention over the T segments (``nn.MultiheadAttention`` with attention dropout). ONE layer serves both
  modalities (audio: ``layer(a, v)``, visual: ``layer(v, a)``, shared weights, as the benchmark's ``Encoder``);
* per segment and modality ``frame_prob = sigmoid(fc_prob(x))`` (B, T, 2, C); attentive MMIL pooling:
  ``frame_att = softmax_T(fc_frame_att(x))`` (over time, per modality and class), ``av_att =
  softmax_M(fc_av_att(x))`` (over the two modalities, per segment and class); ``global_prob = sum_{T,M}
  frame_att * av_att * frame_prob`` (B, C); the per-modality video-level probabilities ``a_prob`` / ``v_prob`` =
  ``sum_T frame_att * frame_prob`` of that modality (the targets of the guided loss terms).

Defaults are the benchmark's code: width 512, feed-forward 512, dropout 0.1, one HAN layer and ONE attention head
(``HANLayer(d_model=512, nhead=1, dim_feedforward=512)`` in ``MMIL_Net``; ``nn.TransformerEncoderLayer``'s
defaults elsewhere do not apply). Where we differ from the benchmark's code, and why:

* ``han_layers`` > 1 stacks layers (each reads the previous layer's outputs); the benchmark's ``Encoder`` feeds
  the ORIGINAL inputs to every layer, so only its last layer would count (a bug that its default of one layer
  hides; with one layer both are identical);
* modules the benchmark builds but its forward never reads (``audio_encoder``, ``visual_encoder``,
  ``cmt_encoder``, ``fc_st``, ``fc_fusion``) are not built: they belong to its feature fusion, not to HAN;
* ``han_layers=0`` (no HAN: projected features straight to the classifiers) is allowed as an ablation.

Loss (:func:`avvp_loss`, ``main_avvp.py`` ``train``): the probabilities are clamped to [1e-7, 1 - 1e-7] and
``BCE(global_prob, y) + BCE(a_prob, y_a) + BCE(v_prob, y_v)`` (the paper's individual-guided learning), each
BCE the mean over the B x C entries; with modality-aware label smoothing ``y_m = (1 - eps_m) y + eps_m / 2``,
eps_a = 0 and eps_v = 0.1 (the code's ``a = 1.0``, ``v = 0.9``: ``Pa = a*y + (1-a)*0.5``), i.e. the audio targets
stay hard and the visual ones become 0.95 / 0.05 (visual labels are noisier: an event heard is often not seen).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from lavish.errors import ConfigError
from lavish.models.adapters import AdapterConfig
from lavish.models.task_config import TaskModelConfig, preset_adapter, task_backbone

AVVP_NUM_CLASSES = 25
AVVP_SEGMENTS = 10
PROB_CLAMP = 1e-7
"""the benchmark clamps every probability to [1e-7, 1 - 1e-7] before its BCE (``output.clamp_``)"""
SMOOTH_AUDIO = 0.0
SMOOTH_VISUAL = 0.1
"""modality-aware label smoothing of ``main_avvp.py`` (``a = 1.0``, ``v = 0.9``): eps_a = 0, eps_v = 0.1"""


@dataclass
class AvvpModelConfig(TaskModelConfig):
    """Model settings; defaults: LAVISH's AVE setting for the backbone and the benchmark's HAN (``MMIL_Net``).
    ``modalities``: "av" (LAVISH), "v" (vision only: no audio stream runs, the head's audio features are zeros) or
    "a" (audio only: the visual features are zeros)."""

    adapter: AdapterConfig = preset_adapter("ave")
    num_classes: int = AVVP_NUM_CLASSES
    han_dim: int = 512
    """width of the HAN (the projections fc_a / fc_v map the backbone's D to it)"""
    han_heads: int = 1
    """attention heads of the self- and cross-modal attention (the benchmark's MMIL_Net: nhead=1)"""
    han_ff_dim: int = 512
    """hidden width of the HAN layer's feed-forward block"""
    han_dropout: float = 0.1
    """dropout on the attention weights, the residual branches and inside the feed-forward block"""
    han_layers: int = 1
    """HAN layers, stacked (0: no HAN, the projected features go straight to the classifiers)"""
    label_smoothing: bool = True
    """the training objective's modality-aware label smoothing (:func:`avvp_loss`; on in the benchmark's training).
    A setting of the loss, kept here so that the adapter file says how its model was trained"""

    def __post_init__(self) -> None:
        if not isinstance(self.label_smoothing, bool):
            raise ConfigError(f"label_smoothing={self.label_smoothing!r} is not valid: true or false")
        super().__post_init__()
        if not _is_int(self.num_classes) or self.num_classes < 1:
            raise ConfigError(f"num_classes={self.num_classes!r} is not valid: it must be at least 1")
        for name in ("han_dim", "han_heads", "han_ff_dim"):
            value = getattr(self, name)
            if not _is_int(value) or value < 1:
                raise ConfigError(f"{name}={value!r} is not valid: it must be a positive integer")
        if self.han_dim % self.han_heads:
            raise ConfigError(f"han_heads={self.han_heads} is not valid: it must divide han_dim={self.han_dim}")
        if not _is_int(self.han_layers) or self.han_layers < 0:
            raise ConfigError(f"han_layers={self.han_layers!r} is not valid: it must be an integer >= 0")
        if isinstance(self.han_dropout, bool) or not isinstance(self.han_dropout, (int, float)) \
                or not 0.0 <= self.han_dropout < 1.0:
            raise ConfigError(f"han_dropout={self.han_dropout!r} is not valid: it must be in [0, 1)")


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass
class AvvpOutput:
    """What :class:`HanHead` returns (C classes, T segments).

    global_prob (B, C): video-level probability (attentive MMIL pooling over time and modality);
    a_prob, v_prob (B, C): per-modality video-level probabilities (pooled over time only);
    audio_prob, visual_prob (B, T, C): per-segment probabilities of the event being heard / seen;
    frame_att (B, T, 2, C): temporal attention (sums to 1 over T), modality 0 audio, 1 visual;
    av_att (B, T, 2, C): modality attention (sums to 1 over the two modalities).
    """

    global_prob: torch.Tensor
    a_prob: torch.Tensor
    v_prob: torch.Tensor
    audio_prob: torch.Tensor
    visual_prob: torch.Tensor
    frame_att: torch.Tensor
    av_att: torch.Tensor


class HanLayer(nn.Module):
    """The benchmark's ``HANLayer``. query (B, T, D), other (B, T, D) -> (B, T, D)."""

    def __init__(self, dim: int = 512, heads: int = 1, ff_dim: int = 512, dropout: float = 0.1) -> None:
        super().__init__()
        self.self_attn = nn.MultiheadAttention(dim, heads, dropout=dropout, batch_first=True)
        self.cm_attn = nn.MultiheadAttention(dim, heads, dropout=dropout, batch_first=True)
        self.linear1 = nn.Linear(dim, ff_dim)
        self.dropout = nn.Dropout(dropout)
        self.linear2 = nn.Linear(ff_dim, dim)
        self.norm1 = nn.LayerNorm(dim)
        self.norm2 = nn.LayerNorm(dim)
        self.dropout11 = nn.Dropout(dropout)
        self.dropout12 = nn.Dropout(dropout)
        self.dropout2 = nn.Dropout(dropout)
        self.activation = nn.ReLU()

    def forward(self, query: torch.Tensor, other: torch.Tensor) -> torch.Tensor:
        cross = self.cm_attn(query, other, other, need_weights=False)[0]
        own = self.self_attn(query, query, query, need_weights=False)[0]
        x = self.norm1(query + self.dropout11(cross) + self.dropout12(own))
        return self.norm2(x + self.dropout2(self.linear2(self.dropout(self.activation(self.linear1(x))))))


class HanHead(nn.Module):
    """Everything after the backbone (module names as the benchmark's ``MMIL_Net``).

    audio_feats (B, T, Da), visual_feats (B, T, Dv) -> :class:`AvvpOutput`.
    """

    def __init__(self, audio_dim: int, visual_dim: int, num_classes: int = AVVP_NUM_CLASSES, *, dim: int = 512,
                 heads: int = 1, ff_dim: int = 512, dropout: float = 0.1, layers: int = 1) -> None:
        super().__init__()
        self.fc_a = nn.Linear(audio_dim, dim)
        self.fc_v = nn.Linear(visual_dim, dim)
        self.han = nn.ModuleList(HanLayer(dim, heads, ff_dim, dropout) for _ in range(layers))
        self.fc_prob = nn.Linear(dim, num_classes)
        self.fc_frame_att = nn.Linear(dim, num_classes)
        self.fc_av_att = nn.Linear(dim, num_classes)

    def forward(self, audio_feats: torch.Tensor, visual_feats: torch.Tensor) -> AvvpOutput:
        a, v = self.fc_a(audio_feats), self.fc_v(visual_feats)
        for layer in self.han:  # one layer for both modalities, each attending to the other
            a, v = layer(a, v), layer(v, a)
        x = torch.stack([a, v], dim=2)  # (B, T, 2, dim): modality 0 audio, 1 visual
        frame_prob = torch.sigmoid(self.fc_prob(x))  # (B, T, 2, C)
        frame_att = torch.softmax(self.fc_frame_att(x), dim=1)  # over the T segments
        av_att = torch.softmax(self.fc_av_att(x), dim=2)  # over the two modalities
        temporal_prob = frame_att * frame_prob
        global_prob = (temporal_prob * av_att).sum(dim=(1, 2))
        return AvvpOutput(global_prob=global_prob, a_prob=temporal_prob[:, :, 0].sum(1),
                          v_prob=temporal_prob[:, :, 1].sum(1), audio_prob=frame_prob[:, :, 0],
                          visual_prob=frame_prob[:, :, 1], frame_att=frame_att, av_att=av_att)


class AvvpModel(nn.Module):
    """audio (B, T, F, M) | None, frames (B, T, 3, H, W) | None -> :class:`AvvpOutput`.

    The input of a stream that does not run (``modalities`` "v" / "a") may be None; its features reach the head
    as zeros (B, T, D), as the AVQA model does.
    """

    def __init__(self, config: AvvpModelConfig, *, pretrained: bool = False,
                 backbone_weights: str | Path | None = None, timm_model: nn.Module | None = None) -> None:
        super().__init__()
        self.config = config
        self.backbone = task_backbone(config, pretrained=pretrained, backbone_weights=backbone_weights,
                                      timm_model=timm_model)
        d = self.backbone.num_features
        self.head = HanHead(d, d, config.num_classes, dim=config.han_dim, heads=config.han_heads,
                            ff_dim=config.han_ff_dim, dropout=config.han_dropout, layers=config.han_layers)

    def features(self, audio: torch.Tensor | None, frames: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-segment pooled features (audio (B, T, D), visual (B, T, D)); zeros for a stream that does not run."""
        mods = self.config.modalities
        inputs = (("audio", "a", audio), ("frames", "v", frames))
        missing = [name for name, key, x in inputs if key in mods and x is None]
        if missing:
            raise ConfigError(f"modalities={mods!r} needs {' and '.join(missing)}")
        b, t = (frames if "v" in mods else audio).shape[:2]
        out = self.backbone(audio.flatten(0, 1) if audio is not None else None,
                            frames.flatten(0, 1) if frames is not None else None)
        feats = [self.backbone.pool(x).view(b, t, -1) if x is not None else None for x in (out.audio, out.visual)]
        present = next(f for f in feats if f is not None)
        audio_feats, visual_feats = (f if f is not None else torch.zeros_like(present) for f in feats)
        return audio_feats, visual_feats

    def forward(self, audio: torch.Tensor | None, frames: torch.Tensor | None) -> AvvpOutput:
        return self.head(*self.features(audio, frames))


def _bce(prob: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean binary cross-entropy, written out (NaN in, NaN out; ``binary_cross_entropy`` raises on NaN and is
    refused under CUDA autocast). prob is clamped to [1e-7, 1 - 1e-7] first, as the benchmark."""
    prob = prob.clamp(PROB_CLAMP, 1.0 - PROB_CLAMP)
    return -(target * torch.log(prob) + (1.0 - target) * torch.log1p(-prob)).mean()


def smoothed_targets(labels: torch.Tensor, eps: float) -> torch.Tensor:
    """Label smoothing over K = 2 outcomes: (1 - eps) y + eps / 2."""
    return (1.0 - eps) * labels + eps / 2.0


def avvp_loss(out: AvvpOutput, labels: torch.Tensor, *, label_smoothing: bool = False, guided: bool = True,
              audio_eps: float = SMOOTH_AUDIO, visual_eps: float = SMOOTH_VISUAL) -> torch.Tensor:
    """The benchmark's training loss on video-level labels, a float32 scalar (NaN if any probability is NaN).

    labels: (B, C) 0/1 (float or int). ``BCE(global_prob, y)``, plus with ``guided`` (the benchmark's
    "individual guided learning", always on in its code) ``BCE(a_prob, y_a) + BCE(v_prob, y_v)``; y_a = y_v = y,
    or with ``label_smoothing`` (modality-aware, the benchmark's training) y_m = (1 - eps_m) y + eps_m / 2 with
    eps_a = ``audio_eps`` (0) and eps_v = ``visual_eps`` (0.1). Each BCE is the mean over the B x C entries of
    the probabilities clamped to [1e-7, 1 - 1e-7]. The benchmark's ``main_avvp.py`` trains with
    ``label_smoothing=True, guided=True``.
    """
    if label_smoothing and not guided:
        raise ConfigError("label_smoothing needs guided=True: the smoothed targets are those of the per-modality "
                          "terms")
    for name, eps in (("audio_eps", audio_eps), ("visual_eps", visual_eps)):
        if not 0.0 <= eps <= 1.0:
            raise ConfigError(f"{name}={eps!r} is not valid: it must be in [0, 1]")
    with torch.autocast(device_type=out.global_prob.device.type, enabled=False):
        y = labels.float()
        loss = _bce(out.global_prob.float(), y)
        if guided:
            y_a = smoothed_targets(y, audio_eps) if label_smoothing else y
            y_v = smoothed_targets(y, visual_eps) if label_smoothing else y
            loss = loss + _bce(out.a_prob.float(), y_a) + _bce(out.v_prob.float(), y_v)
        return loss
