"""The other parameter-efficient methods of the paper's Table 6, as the authors built them for AVE.

Table 6 compares LAVISH with Compacter, LoRA and a bottleneck adapter on the same pipeline (Swin-V2-L, AVE), each
with and without cross-modal attention (CMA, :class:`lavish.models.adapters.fusion.DirectFusion` in front of the
adapter). The authors' public code (``AVE/nets/net_trans_v2.py``) keeps these baselines as commented-out blocks at
the adapter positions of every Swin block, one adapter per stream and position, like LAVISH. docs/accounting.md
derives from their layer shapes which settings give the paper's trainable counts; the modules here are those:

* :class:`CompacterBottleneck`: their ``HyperComplexAdapter`` with ``compacter.json``: PHM layers with n = 4
  Kronecker summands, C -> C/8 -> C, GELU (tanh form), biases. Their config passes the ``shared_phm_rule`` flag
  (false) where the down map's ``factorized_phm`` belongs, so the down map keeps full PHM blocks and only the up
  map is rank-1 factorised (``factorised="up"``, the default; ``"both"`` is the Compacter paper's layer).
* :class:`LowRankBottleneck`: their plain ``bottleneck`` branch (``--is_multimodal 0``) run with
  ``--num_conv_group 1``: LN_before, a rank-C/8 linear map C -> C/8 -> C with no activation in between (the
  branch they marked "for lora"), BatchNorms, LN_post and the output gate of the AVE flags.

Where we differ: every adapter has its own zero-initialised output gate (their Compacter / LoRA blocks share one
scalar gate per list of 24 adapters: 92 parameters fewer on Swin-V2-L), so each adapter starts as an exact no-op;
the PHM layers keep lavish's initialisation (the output is zero at init through the gate either way).
"""

from __future__ import annotations

import torch
from torch import nn

from lavish.errors import ConfigError
from lavish.models.adapters.layers import Bottleneck, Gate, PHMLinear

#: which PHM maps of the Compacter use rank-``rank`` factors: the authors' run ("up"), the Compacter paper ("both")
FACTORISED = ("up", "both", "none")


class CompacterBottleneck(nn.Module):
    """Compacter adapter: gate * PHM_up(GELU(PHM_down(x))). x: (B', N, C) -> (B', N, C), zero at init."""

    def __init__(
        self, dim: int, *, reduction: int = 8, phm_dim: int = 4, rank: int = 1, factorised: str = "up"
    ) -> None:
        super().__init__()
        if factorised not in FACTORISED:
            raise ConfigError(f"factorised={factorised!r} is not valid: choose one of {', '.join(FACTORISED)}")
        hidden = max(phm_dim, (dim // reduction) // phm_dim * phm_dim)
        self.down = PHMLinear(dim, hidden, phm_dim, rank, factorised=factorised == "both")
        self.act = nn.GELU(approximate="tanh")  # transformers' "gelu_new", their compacter.json non_linearity
        self.up = PHMLinear(hidden, dim, phm_dim, rank, factorised=factorised != "none")
        self.gate = Gate()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.gate(self.up(self.act(self.down(x))))


class LowRankBottleneck(Bottleneck):
    """The authors' Table 6 LoRA: a rank-C/r update, gate * LN_post(BN(up(BN(down(LN_before(x)))))), no activation.

    x: (B', N, C) -> (B', N, C); ungrouped maps (``down``: C -> C/r, ``up``: C/r -> C, no bias), zero at init with the
    gate on. Same parameter names as :class:`Bottleneck`.
    """

    def __init__(
        self,
        dim: int,
        *,
        reduction: int = 8,
        use_bn: bool = True,
        ln_before: bool = True,
        ln_post: bool = True,
        gate: bool = True,
    ) -> None:
        super().__init__(dim, reduction=reduction, groups=1, use_bn=use_bn, ln_before=ln_before, ln_post=ln_post,
                         gate=gate, order="ave")
        self.act = nn.Identity()
