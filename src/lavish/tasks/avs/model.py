"""The AVS model: LAVISH multi-scale visual features -> AVSBench decoder -> one mask logit map per frame (spec 3.2).

Pipeline per 5-frame clip (time folded into the batch, B' = B * T):

1. the LAVISH backbone runs both streams; the visual map at the end of each of its four stages (Swin-V2: before
   patch merging, the last one after the final norm; ViT: four evenly spaced blocks, see
   :meth:`lavish.models.families.ViTFamily.stage_ends`) is taken as (B', h, w, C_s);
2. ``x{1..4}_linear``: Linear C_s -> 64 / 128 / 320 / 512 (the PVT-v2-b5 widths the AVSBench decoder expects),
   then bicubic resize (align_corners False) to ``mask/4, mask/8, mask/16, mask/32`` (56 / 28 / 14 / 7 for the
   benchmark's 224 masks; for other mask sizes ``8b, 4b, 2b, b`` with ``b = round(mask / 32)`` so the x2 steps of
   the decoder meet exactly);
3. the AVSBench decoder unchanged: ``conv{1..4}`` atrous modules (sum of four 3x3 convs, dilations 3/6/12/18,
   weights N(0, 0.01)), optional TPAVI on the stages of ``tpavi_stages``, feature-fusion blocks ``path4..path1``
   made of residual conv units, ``output_conv`` up to the mask size: logits (B, T, H_m, W_m).

Audio for TPAVI: ``audio_linear(mean of the final audio tokens)`` (D -> 128), as the authors.

Where we differ from the authors' code, on purpose (quirks 16-17):
* their forward re-views the stage maps as 64/32/16/8 grids and applies ``swin.norm`` to the image tensor (dead
  lines that crash with the 192 model); we use the real grids (48/24/12/6 for Swin-V2-L at 192);
* no PVT-v2-b5 or VGGish is built (unused by LAVISH, needs their checkpoints);
* TPAVI's ``(theta phi^T / N) g`` is computed as ``theta (phi^T g) / N``: the same product without softmax
  ("dot" mode), associated so the (THW x THW) matrix (~1 GB per clip at 56x56) is never formed;
* a mask size that is not 32 * b gets a final bilinear resize of the logits (the benchmark's 224 does not).

Kept as the authors, deliberately: ``audio_linear`` exists without TPAVI (it is in their 37.65M count, spec 7)
and ``path4.rcu1`` exists though path4 has one input (same reason); both then get no gradient. The residual conv
unit adds ``relu(x)`` (their in-place ReLU rewrites the skip input), written here without the in-place op.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from lavish.errors import ConfigError
from lavish.models.adapters import AdapterConfig
from lavish.models.task_config import TaskModelConfig, preset_adapter, task_backbone

#: channel widths the AVSBench decoder reads (PVT-v2-b5 stages)
DECODER_INPUTS = (64, 128, 320, 512)
#: width of the audio feature TPAVI reads (VGGish width in AVSBench)
AUDIO_DIM = 128
#: TPAVI placements: none = the authors' README run (reported numbers), all = their train.sh
TPAVI_PRESETS: dict[str, tuple[int, ...]] = {"none": (), "all": (0, 1, 2, 3)}
MASK_SIZE = 224


@dataclass
class AvsModelConfig(TaskModelConfig):
    """Model settings (defaults: the authors' AVS-S4 README run, spec sections 3.2 and 4). ``modalities``: "av"
    (LAVISH) or "v" (vision only; no audio stream, no TPAVI)."""

    MODALITIES = ("av", "v")  # segmentation needs frames: no audio-only model
    TASK_TITLE = "AVS"

    adapter: AdapterConfig = preset_adapter("avs")
    tpavi_stages: tuple[int, ...] = ()
    """decoder stages (0 = finest) with TPAVI audio-visual attention"""
    mask_size: tuple[int, int] = (MASK_SIZE, MASK_SIZE)
    """(H, W) of the predicted masks"""
    decoder_channels: int = 256

    def __post_init__(self) -> None:
        self.tpavi_stages = tuple(sorted(int(s) for s in self.tpavi_stages))
        self.mask_size = tuple(int(s) for s in self.mask_size)
        super().__post_init__()
        if any(s not in range(4) for s in self.tpavi_stages) or len(set(self.tpavi_stages)) != len(self.tpavi_stages):
            raise ConfigError(f"tpavi_stages={self.tpavi_stages} is not valid: distinct stages among 0, 1, 2, 3")
        if self.tpavi_stages and self.modalities != "av":
            raise ConfigError("TPAVI needs the audio stream: use modalities av or no TPAVI stages")
        if len(self.mask_size) != 2 or min(self.mask_size) < 8:
            raise ConfigError(f"mask_size={self.mask_size} is not valid: (H, W), each at least 8 pixels")
        if self.decoder_channels < 1:
            raise ConfigError(f"decoder_channels={self.decoder_channels} is not valid: it must be positive")

    def stage_sizes(self) -> list[tuple[int, int]]:
        """(h, w) the four projected maps are resized to, finest first (224 -> 56, 28, 14, 7)."""
        base = [max(1, round(s / 32)) for s in self.mask_size]
        return [(base[0] * 2 ** (3 - k), base[1] * 2 ** (3 - k)) for k in range(4)]


class ClassifierModule(nn.Module):
    """AVSBench ``Classifier_Module``: sum of four dilated 3x3 convs. (N, C_in, h, w) -> (N, C_out, h, w)."""

    def __init__(self, in_channels: int, out_channels: int, dilations=(3, 6, 12, 18)) -> None:
        super().__init__()
        self.conv2d_list = nn.ModuleList(
            nn.Conv2d(in_channels, out_channels, 3, padding=d, dilation=d, bias=True) for d in dilations
        )
        for conv in self.conv2d_list:
            nn.init.normal_(conv.weight, 0.0, 0.01)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return sum(conv(x) for conv in self.conv2d_list)


class ResidualConvUnit(nn.Module):
    """conv3x3(relu(conv3x3(relu(x)))) + relu(x) (the authors' in-place ReLU makes the skip relu(x))."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1, bias=True)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(x)
        return self.conv2(F.relu(self.conv1(x))) + x


class FeatureFusionBlock(nn.Module):
    """AVSBench ``FeatureFusionBlock``: (coarse [, skip]) -> rcu2(coarse + rcu1(skip)) upsampled x2 (bilinear,
    align_corners True). (N, C, h, w) -> (N, C, 2h, 2w)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.resConfUnit1 = ResidualConvUnit(channels)
        self.resConfUnit2 = ResidualConvUnit(channels)

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None = None) -> torch.Tensor:
        if skip is not None:
            x = x + self.resConfUnit1(skip)
        x = self.resConfUnit2(x)
        return F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=True)


class TPAVI(nn.Module):
    """AVSBench ``TPAVIModule`` ("dot" mode, 3-D): audio-visual attention over time and space.

    x: (B, C, T, h, w) visual, audio: (B, T, 128) -> (B, C, T, h, w):
    z = LN_C(x + BN(W_z((theta(x) phi(a)^T / N) g(x)))) with N = T*h*w and a the audio broadcast over (h, w).
    BN weight and bias start at 0, so z = LN_C(x) at init.
    """

    def __init__(self, channels: int, audio_dim: int = AUDIO_DIM) -> None:
        super().__init__()
        inter = max(1, channels // 2)
        self.inter = inter
        self.align_channel = nn.Linear(audio_dim, channels)
        self.norm_layer = nn.LayerNorm(channels)
        self.g = nn.Conv3d(channels, inter, 1)
        self.theta = nn.Conv3d(channels, inter, 1)
        self.phi = nn.Conv3d(channels, inter, 1)
        self.W_z = nn.Sequential(nn.Conv3d(inter, channels, 1), nn.BatchNorm3d(channels))
        nn.init.zeros_(self.W_z[1].weight)
        nn.init.zeros_(self.W_z[1].bias)

    def forward(self, x: torch.Tensor, audio: torch.Tensor) -> torch.Tensor:
        b, c, t, h, w = x.shape
        a = self.align_channel(audio).permute(0, 2, 1)[..., None, None].expand(-1, -1, -1, h, w)
        g = self.g(x).flatten(2)  # (B, C', N)
        theta = self.theta(x).flatten(2)
        phi = self.phi(a.contiguous()).flatten(2)
        n = t * h * w
        # (theta^T phi / N) g^T == theta^T (phi g^T) / N: (B, N, C') without the (N, N) matrix
        y = torch.einsum("bcn,bcd->bdn", theta, phi @ g.transpose(1, 2) / n).reshape(b, self.inter, t, h, w)
        z = x + self.W_z(y)
        return self.norm_layer(z.movedim(1, -1)).movedim(-1, 1)


class AvsModel(nn.Module):
    """audio (B, T, F, M), frames (B, T, 3, H, W) -> mask logits (B, T, H_m, W_m)."""

    def __init__(self, config: AvsModelConfig, *, pretrained: bool = False,
                 backbone_weights: str | Path | None = None, timm_model: nn.Module | None = None) -> None:
        super().__init__()
        self.config = config
        self.backbone = task_backbone(config, pretrained=pretrained, backbone_weights=backbone_weights,
                                      timm_model=timm_model)
        dims = self.backbone.stage_dims()
        ch = config.decoder_channels
        self.x1_linear, self.x2_linear, self.x3_linear, self.x4_linear = (
            nn.Linear(d, w) for d, w in zip(dims, DECODER_INPUTS))
        self.audio_linear = nn.Linear(self.backbone.num_features, AUDIO_DIM)
        self.conv1, self.conv2, self.conv3, self.conv4 = (ClassifierModule(w, ch) for w in DECODER_INPUTS)
        self.tpavi = nn.ModuleDict({str(s): TPAVI(ch) for s in config.tpavi_stages})
        self.path4, self.path3, self.path2, self.path1 = (FeatureFusionBlock(ch) for _ in range(4))
        self.output_conv = nn.Sequential(
            nn.Conv2d(ch, 128, 3, padding=1),
            nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
            nn.Conv2d(128, 32, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(32, 1, 1),
        )

    def visual_maps(self, audio: torch.Tensor | None, frames: torch.Tensor):
        """Projected, resized stage maps [(B', 64, 8b, 8b), ..., (B', 512, b, b)] and the audio feature (B', 128)."""
        out = self.backbone(audio, frames, return_stages=True)
        maps = []
        for x, linear, size in zip(out.visual_stages, (self.x1_linear, self.x2_linear, self.x3_linear,
                                                       self.x4_linear), self.config.stage_sizes()):
            x = linear(x).permute(0, 3, 1, 2)
            maps.append(F.interpolate(x, size=size, mode="bicubic", align_corners=False))
        a = self.audio_linear(self.backbone.pool(out.audio)) if out.audio is not None else None
        return maps, a

    def forward(self, audio: torch.Tensor | None, frames: torch.Tensor) -> torch.Tensor:
        b, t = frames.shape[:2]
        maps, a = self.visual_maps(audio.flatten(0, 1) if audio is not None else None, frames.flatten(0, 1))
        feats = [conv(x) for conv, x in zip((self.conv1, self.conv2, self.conv3, self.conv4), maps)]
        for key, module in self.tpavi.items():
            i = int(key)
            x = feats[i].unflatten(0, (b, t)).transpose(1, 2)  # (B, C, T, h, w)
            feats[i] = module(x, a.view(b, t, -1)).transpose(1, 2).flatten(0, 1)
        x = self.path4(feats[3])
        x = self.path3(x, feats[2])
        x = self.path2(x, feats[1])
        x = self.path1(x, feats[0])
        logits = self.output_conv(x)
        if tuple(logits.shape[-2:]) != self.config.mask_size:
            logits = F.interpolate(logits, size=self.config.mask_size, mode="bilinear", align_corners=False)
        return logits.view(b, t, *self.config.mask_size)


def avs_loss(logits: torch.Tensor, masks: torch.Tensor, annotated: torch.Tensor) -> torch.Tensor:
    """Mean BCE over the pixels of the annotated frames, in float32.

    logits: (B, T, H, W); masks: (B, T, H, W) 0/1; annotated: (B, T) bool.
    """
    with torch.autocast(device_type=logits.device.type, enabled=False):
        return F.binary_cross_entropy_with_logits(logits[annotated].float(), masks[annotated].float())
