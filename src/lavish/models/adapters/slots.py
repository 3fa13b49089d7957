"""Per-block adapter slots: what is added to the two streams after the attention and after the MLP.

Spec 1.3: every block has two positions. ``p1`` adapters read the streams *before* the attention and their
output is added after the attention residual; ``p2`` adapters read the streams *after* the attention (both
modalities already updated) and are added after the MLP residual. Each position holds one adapter per stream
(``audio``, ``visual``); a missing stream (``modalities="v"`` or ``"a"``) has no adapter and no parameters.

Tokens are channel-last ``(B', N, C)``; ``B' = B * T`` (time folded into batch, spec 2.4), and the cross-modal
attention pairs the audio and visual tokens of the same row, i.e. the same 1-second segment.

Every slot has ``deltas(pre)`` (what it adds to each stream, ``None`` for nothing) besides ``forward(pre, post)``
(= post + deltas): the backbone adds the deltas in place into the one tensor that holds both streams, which
saves a concatenation of the streams per residual (see :mod:`lavish.models.backbone`).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from lavish.models.adapters.fusion import PaperLatentSummary, PaperReadout


class Streams(NamedTuple):
    """Token tensors of the two streams, each (B', N, C) or ``None`` when the stream does not run."""

    audio: torch.Tensor | None
    visual: torch.Tensor | None


def add_deltas(post: Streams, deltas: Streams) -> Streams:
    """post + deltas per stream (a None delta adds nothing); new tensors, the inputs are not modified."""
    return Streams(*(p if d is None else p + d for p, d in zip(post, deltas)))


class StreamAdapter(nn.Module):
    """fusion then bottleneck: (x (B', N_x, C), other (B', N_o, C) | None) -> delta (B', N_x, C)."""

    def __init__(self, fusion: nn.Module, bottleneck: nn.Module) -> None:
        super().__init__()
        self.fusion = fusion
        self.bottleneck = bottleneck

    def forward(self, x: torch.Tensor, other: torch.Tensor | None) -> torch.Tensor:
        return self.bottleneck(self.fusion(x, other))


class PairSlot(nn.Module):
    """One position of one block: an adapter per stream, each reading its own and the other stream."""

    def __init__(self, audio: nn.Module | None, visual: nn.Module | None) -> None:
        super().__init__()
        self.audio = audio
        self.visual = visual

    def deltas(self, pre: Streams) -> Streams:
        """What this position adds to each stream (None: nothing), from the streams it reads."""
        return Streams(None if self.audio is None else self.audio(pre.audio, pre.visual),
                       None if self.visual is None else self.visual(pre.visual, pre.audio))

    def forward(self, pre: Streams, post: Streams) -> Streams:
        return add_deltas(post, self.deltas(pre))


class PaperPairSlot(nn.Module):
    """Paper Eqs. 6-8: both streams summarise themselves, then read the summaries (see ``fusion``).

    ``receive_audio`` / ``receive_visual`` say which streams take the other modality (fusion direction); a stream
    that does not receive still gets its bottleneck on its own tokens.
    """

    def __init__(
        self,
        dim: int,
        audio_bottleneck: nn.Module,
        visual_bottleneck: nn.Module,
        *,
        num_latents: int,
        latent_init: str,
        receive_audio: bool,
        receive_visual: bool,
    ) -> None:
        super().__init__()
        self.summary_audio = PaperLatentSummary(dim, num_latents, latent_init)
        self.summary_visual = PaperLatentSummary(dim, num_latents, latent_init)
        self.readout_audio = PaperReadout() if receive_audio else None
        self.readout_visual = PaperReadout() if receive_visual else None
        self.audio = audio_bottleneck
        self.visual = visual_bottleneck

    def deltas(self, pre: Streams) -> Streams:
        s_a, s_v = self.summary_audio(pre.audio), self.summary_visual(pre.visual)
        x_a = pre.audio if self.readout_audio is None else self.readout_audio(pre.audio, s_v, s_a)
        x_v = pre.visual if self.readout_visual is None else self.readout_visual(pre.visual, s_a, s_v)
        return Streams(self.audio(x_a), self.visual(x_v))

    def forward(self, pre: Streams, post: Streams) -> Streams:
        return add_deltas(post, self.deltas(pre))


class IdentitySlot(nn.Module):
    """No adapter at this position (LoRA, BitFit, LayerNorm tuning, frozen backbone)."""

    def deltas(self, pre: Streams) -> Streams:
        return Streams(None, None)

    def forward(self, pre: Streams, post: Streams) -> Streams:
        return post


class BlockSlots(nn.Module):
    """The two positions of one block."""

    def __init__(self, p1: nn.Module, p2: nn.Module) -> None:
        super().__init__()
        self.p1 = p1
        self.p2 = p2
