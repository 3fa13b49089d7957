"""One LAVISH adapter position written for a compiler: both streams, stacked, added to the residual (issue 16).

The eager adapters (:mod:`lavish.models.adapters.slots`) run each stream's fusion and bottleneck apart, with the
latent attentions as ``scaled_dot_product_attention`` calls (a library kernel each, forward and backward, which a
compiler cannot fuse) and the residual add outside. :func:`position_added` is the same maths for a position of the
authors' LAVISH adapter (:func:`fusable`: latent fusion and the ``ave`` bottleneck with BatchNorms, both LayerNorms
and gates, in both streams), written so that inductor (``torch.compile``) fuses it into few kernels:

* both streams' work stacked on a leading stream axis S = 2 where their shapes match (the joint (2B', N, C) tensor
  of the Swin families): one kernel per step serves both streams, weights stacked (audio first); where they differ
  (ViT: audio and visual token counts differ) the elementwise code runs once per stream with S = 1, in the same
  region;
* the latent attentions (m latent tokens, m = 2 in the paper) as broadcast multiply-reduce and softmax, which
  inductor fuses with the neighbouring LayerNorm / residual passes (no attention library call, forward or backward);
* the grouped 1x1 maps as one batched matmul over (stream, group); where the streams' token counts differ, the
  shorter stream's tokens are zero-padded to the longer's for the matmul (ViT-B: audio 49 vs visual 197 tokens:
  1.6x the adapters' matmul FLOPs, ~2 % of the step's, for half their launches);
* the token BatchNorms as mean / variance reductions (biased for normalising, unbiased for the running variance,
  exactly as ``nn.BatchNorm1d`` in train mode), the running statistics and ``num_batches_tracked`` updated in place;
* the output gate folded into LN_post's affine, and the residual add into the last kernel: the region returns
  ``post + delta``.

Shapes: x (S, B', N, C) own tokens, o (S, B', N_o, C) the other stream's tokens; the stream axis is the audio and
visual order of :class:`~lavish.models.adapters.slots.Streams`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from lavish.models.adapters.fusion import LatentFusion
from lavish.models.adapters.layers import Bottleneck, Gate, TokenBatchNorm
from lavish.models.adapters.slots import PairSlot, StreamAdapter, Streams


def fusable(position: nn.Module) -> bool:
    """Whether ``position`` is a LAVISH position that :func:`position_added` computes: a PairSlot whose two stream
    adapters are latent fusion + ``ave`` bottleneck with both LayerNorms and both BatchNorms (momentum set)."""
    if not isinstance(position, PairSlot):
        return False
    for adapter in (position.audio, position.visual):
        if not (isinstance(adapter, StreamAdapter) and isinstance(adapter.fusion, LatentFusion)
                and isinstance(adapter.bottleneck, Bottleneck)):
            return False
        b = adapter.bottleneck
        if b.order != "ave" or not all(isinstance(n, nn.LayerNorm) for n in (b.ln_before, b.ln_post)):
            return False
        if not all(isinstance(n, TokenBatchNorm) and n.bn.momentum is not None and n.bn.track_running_stats
                   and n.bn.affine for n in (b.bn1, b.bn2)):
            return False
        if not isinstance(b.gate, (Gate, nn.Identity)):
            return False
    return position.audio.bottleneck.down.groups == position.visual.bottleneck.down.groups


def _stack(tensors: list[torch.Tensor]) -> torch.Tensor:
    return tensors[0].unsqueeze(0) if len(tensors) == 1 else torch.stack(tensors)


def _gate(b: Bottleneck, like: torch.Tensor) -> torch.Tensor:
    return b.gate.gate if isinstance(b.gate, Gate) else torch.ones(1, dtype=like.dtype, device=like.device)


def _softmax_last(scores: torch.Tensor) -> torch.Tensor:
    return torch.softmax(scores, dim=-1)


def _latent_fusion(x: torch.Tensor, o: torch.Tensor, latents: torch.Tensor, gate_av: torch.Tensor) -> torch.Tensor:
    """X' = X + softmax(X S^T) (g S), S = L + softmax(L O^T) O (LatentFusion, no scaling).

    x (S, B, N, C), o (S, B, N_o, C), latents (S, m, C), gate_av (S, 1) -> (S, B, N, C)."""
    lat = latents.to(o.dtype)[:, None]  # (S, 1, m, C)
    p = _softmax_last((lat[:, :, :, None, :] * o[:, :, None, :, :]).sum(-1))  # (S, B, m, N_o)
    s = lat + (p[..., None] * o[:, :, None, :, :]).sum(-2)  # (S, B, m, C)
    q = _softmax_last((x[:, :, :, None, :] * s[:, :, None, :, :]).sum(-1))  # (S, B, N, m)
    gs = gate_av.to(s.dtype)[:, :, None, None] * s  # (S, B, m, C)
    return x + (q[..., None] * gs[:, :, None, :, :]).sum(-2)


def _layer_norm(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, eps: float) -> torch.Tensor:
    """LayerNorm over C with a per-stream affine: x (S, B, N, C), weight / bias (S, C)."""
    return F.layer_norm(x, x.shape[-1:], None, None, eps) * weight[:, None, None] + bias[:, None, None]


def _grouped(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Per-stream grouped linear: x (S, B, N, C_in), weight (S, G, C_in/G, C_out/G) -> (S, B, N, C_out)."""
    s, g = weight.shape[:2]
    lead = x.shape[1:-1]
    xg = x.reshape(s, -1, g, weight.shape[2]).transpose(1, 2).reshape(s * g, -1, weight.shape[2])  # (S G, M, Cg)
    y = torch.bmm(xg, weight.reshape(s * g, *weight.shape[2:]))  # (S G, M, Hg)
    return y.reshape(s, g, -1, weight.shape[3]).transpose(1, 2).reshape(s, *lead, g * weight.shape[3])


def _batch_norm(x: torch.Tensor, bns: list[nn.BatchNorm1d]) -> torch.Tensor:
    """Train-mode BatchNorm over all tokens of each stream, per channel: x (S, B, N, C) -> same; updates each
    stream's running statistics (unbiased variance) and ``num_batches_tracked`` as ``nn.BatchNorm1d`` does."""
    count = x.shape[1] * x.shape[2]
    mean = x.mean(dim=(1, 2))  # (S, C)
    var = x.var(dim=(1, 2), correction=0)
    weight = _stack([bn.weight for bn in bns])
    bias = _stack([bn.bias for bn in bns])
    eps = bns[0].eps
    scale = torch.rsqrt(var + eps) * weight
    y = (x - mean[:, None, None]) * scale[:, None, None] + bias[:, None, None]
    with torch.no_grad():
        unbiased = var * (count / (count - 1))
        for i, bn in enumerate(bns):
            momentum = bn.momentum
            bn.running_mean.mul_(1 - momentum).add_(mean[i].to(bn.running_mean.dtype), alpha=momentum)
            bn.running_var.mul_(1 - momentum).add_(unbiased[i].to(bn.running_var.dtype), alpha=momentum)
            bn.num_batches_tracked.add_(1)
    return y


def _fusion_ln(adapters: list[StreamAdapter], x: torch.Tensor, o: torch.Tensor) -> torch.Tensor:
    """LN_before(fusion(x, o)) for S stacked streams: x (S, B, N, C), o (S, B, N_o, C) -> (S, B, N, C)."""
    fus = [a.fusion for a in adapters]
    bot: list[Bottleneck] = [a.bottleneck for a in adapters]
    x = _latent_fusion(x, o, _stack([f.latents for f in fus]), _stack([f.gate_av.gate for f in fus]))
    return _layer_norm(x, _stack([b.ln_before.weight for b in bot]), _stack([b.ln_before.bias for b in bot]),
                       bot[0].ln_before.eps)


def _post_added(adapters: list[StreamAdapter], y: torch.Tensor, post: torch.Tensor) -> torch.Tensor:
    """post + gate * LN_post(BN2(y)) for S stacked streams: y, post (S, B, N, C)."""
    bot: list[Bottleneck] = [a.bottleneck for a in adapters]
    y = _batch_norm(y, [b.bn2.bn for b in bot])
    gate = _stack([_gate(b, y) for b in bot])  # (S, 1): g * LN(y; w, b) == LN(y; g w, g b)
    delta = _layer_norm(y, gate * _stack([b.ln_post.weight for b in bot]), gate * _stack([b.ln_post.bias for b in bot]),
                        bot[0].ln_post.eps)
    return post + delta.to(post.dtype)


def _stream_added(adapters: list[StreamAdapter], x: torch.Tensor, o: torch.Tensor, post: torch.Tensor) -> torch.Tensor:
    """post + bottleneck(fusion(x, o)) for S stacked streams: x, post (S, B, N, C), o (S, B, N_o, C)."""
    bot: list[Bottleneck] = [a.bottleneck for a in adapters]
    x = _fusion_ln(adapters, x, o)
    h = _batch_norm(_grouped(x, _stack([b.down.weight for b in bot])), [b.bn1.bn for b in bot])
    return _post_added(adapters, _grouped(torch.relu(h), _stack([b.up.weight for b in bot])), post)


def _grouped_padded(xs: list[torch.Tensor], weight: torch.Tensor) -> list[torch.Tensor]:
    """Per-stream grouped linear of streams with different token counts, as one batched matmul: each stream's
    (1, B, N_s, C_in) tokens are flattened and zero-padded to the longest stream's row count (zero rows give zero
    outputs, which are dropped); weight (S, G, C_in/G, C_out/G) -> list of (1, B, N_s, C_out)."""
    rows = [x[0].flatten(0, 1) for x in xs]
    m = max(r.shape[0] for r in rows)
    stacked = torch.stack([F.pad(r, (0, 0, 0, m - r.shape[0])) for r in rows])[:, None]  # (S, 1, M, C_in)
    out = _grouped(stacked, weight)
    return [out[i, 0, :r.shape[0]].reshape(*x.shape[:-1], out.shape[-1]) for i, (r, x) in enumerate(zip(rows, xs))]


def _ragged_added(a: StreamAdapter, v: StreamAdapter, pre: Streams, post: Streams) -> Streams:
    """position_added for streams of different token counts (ViT): the elementwise work per stream, the four
    grouped maps as two batched matmuls over both streams (the shorter stream zero-padded)."""
    xs = [_fusion_ln([a], pre.audio[None], pre.visual[None]), _fusion_ln([v], pre.visual[None], pre.audio[None])]
    hs = _grouped_padded(xs, torch.stack([a.bottleneck.down.weight, v.bottleneck.down.weight]))
    hs = [torch.relu(_batch_norm(h, [ad.bottleneck.bn1.bn])) for h, ad in zip(hs, (a, v))]
    ys = _grouped_padded(hs, torch.stack([a.bottleneck.up.weight, v.bottleneck.up.weight]))
    return Streams(_post_added([a], ys[0], post.audio[None])[0], _post_added([v], ys[1], post.visual[None])[0])


def position_added(position: PairSlot, pre: Streams, post: Streams) -> Streams:
    """post + what ``position`` adds to each stream (== ``add_deltas(post, position.deltas(pre))``, train mode).

    pre / post: (B', N_a, C) audio and (B', N_v, C) visual tokens. Streams of the same shape run stacked; streams
    of different token counts run their elementwise work apart and their grouped maps stacked (zero-padded)."""
    a, v = position.audio, position.visual
    if pre.audio.shape == pre.visual.shape:
        x = torch.stack([pre.audio, pre.visual])
        out = _stream_added([a, v], x, x.flip(0), torch.stack([post.audio, post.visual]))
        return Streams(out[0], out[1])
    return _ragged_added(a, v, pre, post)


def joint_added(position: PairSlot, pre: torch.Tensor, post: torch.Tensor) -> torch.Tensor:
    """The same on the joint tensor of both streams: pre, post (2B', N, C), audio rows first -> post + deltas."""
    x = pre.unflatten(0, (2, -1))
    out = _stream_added([position.audio, position.visual], x, x.flip(0), post.unflatten(0, (2, -1)))
    return out.flatten(0, 1)
