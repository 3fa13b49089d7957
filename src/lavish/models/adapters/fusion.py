"""How an adapter brings the other modality into its own stream (spec 1.1 steps A-B, 1.2, Table 4/5).

Each strategy maps own tokens X (B', N_x, C) and the other modality's tokens O (B', N_o, C) of the same segment to
X' (B', N_x, C), the input of the bottleneck:

* :class:`LatentFusion` (``lavish``, the authors' code):
  S = L + softmax(L O^T) O;  X' = X + g_av * softmax(X S^T) S.  m latent tokens L, no 1/sqrt(d) scaling,
  no projections, g_av zero at init.
* :class:`PaperLatentFusion` (``lavish`` with ``formulation="paper"``, Eqs. 6-8 of the paper):
  CMA(Q, K, V) = Q + g * softmax(Q K^T) V with a gate on every CMA; each stream's own latent tokens compress
  its own tokens, S_x = CMA(L_x, X, X), and the stream reads the fused summaries X' = CMA(X, S_o, S_x)
  (keys from the other modality's summaries, values from its own). It needs both streams' summaries, so this
  strategy is shared by the two adapters of a slot (see :mod:`lavish.models.adapters.slots`).
* :class:`DirectFusion` (``avish``): no latent tokens, X' = X + g_av * softmax(X O^T) O: quadratic in tokens.
* :class:`NoFusion`: X' = X (fusion direction off for this stream, or a uni-modal baseline).

Attention uses ``scaled_dot_product_attention(..., scale=1.0)`` (the official softmax has no scaling). Where a gate
multiplies a latent-token attention, it scales the m values instead of the N outputs (same maths, one pass over
(B', N, C) less in forward and backward).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from lavish.models.adapters.layers import Gate


def attend(q: torch.Tensor, kv: torch.Tensor, v: torch.Tensor | None = None) -> torch.Tensor:
    """softmax(q k^T) v without scaling. q: (B, Nq, C), kv: (B, Nk, C) -> (B, Nq, C)."""
    return F.scaled_dot_product_attention(q, kv, kv if v is None else v, scale=1.0)


def _gated(gate: Gate, values: torch.Tensor) -> torch.Tensor:
    """gate * values in the values' dtype (under autocast the fp32 gate would promote bf16 values)."""
    return gate.gate.to(values.dtype) * values


class NoFusion(nn.Module):
    """X' = X."""

    def forward(self, x: torch.Tensor, other: torch.Tensor | None) -> torch.Tensor:
        return x


class LatentFusion(nn.Module):
    """The authors' latent-token cross-modal attention. x: (B', N_x, C), other: (B', N_o, C) -> (B', N_x, C)."""

    def __init__(self, dim: int, num_latents: int = 2, latent_init: str = "uniform") -> None:
        super().__init__()
        init = {"uniform": torch.rand, "zeros": torch.zeros}
        if latent_init not in init:
            raise ValueError(f"latent_init must be one of {sorted(init)}, got {latent_init!r}")
        self.latents = nn.Parameter(init[latent_init](num_latents, dim))
        self.gate_av = Gate()

    def summaries(self, other: torch.Tensor) -> torch.Tensor:
        """S = L + softmax(L O^T) O: (B', m, C)."""
        latents = self.latents.to(other.dtype).expand(other.shape[0], -1, -1)
        return latents + attend(latents, other)

    def forward(self, x: torch.Tensor, other: torch.Tensor) -> torch.Tensor:
        s = self.summaries(other)
        # g * softmax(x s^T) s == softmax(x s^T) (g s): the gate scales the (B', m, C) values, not the output
        return x + attend(x, s, _gated(self.gate_av, s))


class DirectFusion(nn.Module):
    """AVISH: X' = X + g_av * softmax(X O^T) O. x: (B', N_x, C), other: (B', N_o, C) -> (B', N_x, C)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.gate_av = Gate()

    def forward(self, x: torch.Tensor, other: torch.Tensor) -> torch.Tensor:
        return x + self.gate_av(attend(x, other))


class PaperLatentSummary(nn.Module):
    """Own-modality compression of Eq. 7: S = L + g * softmax(L X^T) X. x: (B', N, C) -> (B', m, C)."""

    def __init__(self, dim: int, num_latents: int = 2, latent_init: str = "uniform") -> None:
        super().__init__()
        init = {"uniform": torch.rand, "zeros": torch.zeros}
        self.latents = nn.Parameter(init[latent_init](num_latents, dim))
        self.gate = Gate()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        latents = self.latents.to(x.dtype).expand(x.shape[0], -1, -1)
        return latents + self.gate(attend(latents, x))


class PaperReadout(nn.Module):
    """Eq. 8: X' = X + g * softmax(X S_o^T) S_x. x: (B', N, C), s_other, s_own: (B', m, C) -> (B', N, C)."""

    def __init__(self) -> None:
        super().__init__()
        self.gate_av = Gate()

    def forward(self, x: torch.Tensor, s_other: torch.Tensor, s_own: torch.Tensor) -> torch.Tensor:
        return x + attend(x, s_other, _gated(self.gate_av, s_own))
