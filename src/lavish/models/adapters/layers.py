"""Building blocks of the adapters: grouped token-wise linear maps, the bottleneck, PHM layers.

Spec section 1.1: the authors' bottleneck is a pair of grouped 1x1 ``Conv2d`` on a ``(B', C, N, 1)`` tensor.
A grouped 1x1 convolution is a block-diagonal linear map applied to every token, so we keep the tokens
channel-last ``(B', N, C)`` (the layout of the transformer stream: no transposes) and apply the blocks with one
batched matmul. Parameter count and initialisation are the convolution's: weight ``(G, C_in/G, C_out/G)``,
kaiming-uniform with ``a=sqrt(5)`` over ``fan_in = C_in/G`` (PyTorch's default for ``Conv2d``), no bias.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from lavish.errors import ConfigError


class GroupedLinear(nn.Module):
    """Block-diagonal linear map over the channel axis (== grouped 1x1 conv, no bias).

    x: (..., C_in) -> (..., C_out), each of ``groups`` channel groups mapped independently.
    """

    def __init__(self, in_features: int, out_features: int, groups: int = 1) -> None:
        super().__init__()
        if in_features % groups or out_features % groups:
            raise ConfigError(f"channels {in_features}->{out_features} are not divisible by groups={groups}")
        self.in_features, self.out_features, self.groups = in_features, out_features, groups
        self.weight = nn.Parameter(torch.empty(groups, in_features // groups, out_features // groups))
        bound = 1.0 / math.sqrt(in_features // groups)  # kaiming_uniform(a=sqrt(5)) of nn.Conv2d
        nn.init.uniform_(self.weight, -bound, bound)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.groups == 1:
            return x @ self.weight[0]
        lead = x.shape[:-1]
        x = x.reshape(-1, self.groups, self.in_features // self.groups).transpose(0, 1)  # (G, M, Cin/G)
        y = torch.bmm(x, self.weight)  # (G, M, Cout/G)
        return y.transpose(0, 1).reshape(*lead, self.out_features)

    def extra_repr(self) -> str:
        return f"{self.in_features}, {self.out_features}, groups={self.groups}"


class TokenBatchNorm(nn.Module):
    """BatchNorm over all tokens of all samples, per channel: x (B', N, C) -> (B', N, C).

    Same statistics as the authors' ``BatchNorm2d`` on ``(B', C, N, 1)``. The inner ``nn.BatchNorm1d`` sees a
    (B' * N, C) matrix, so Lightning's ``sync_batchnorm`` can swap it for ``SyncBatchNorm`` under DDP.
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.bn = nn.BatchNorm1d(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        return self.bn(x.reshape(-1, shape[-1])).reshape(shape)


class Gate(nn.Module):
    """A learnable scalar multiplier, zero at init: x -> g * x."""

    def __init__(self, init: float = 0.0) -> None:
        super().__init__()
        self.gate = nn.Parameter(torch.full((1,), float(init)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.gate * x


def _norm(enabled: bool, dim: int) -> nn.Module:
    return nn.LayerNorm(dim) if enabled else nn.Identity()


class Bottleneck(nn.Module):
    """The adapter bottleneck of spec 1.1 step C, returning only the delta (the caller adds it).

    ``order="ave"`` (AVE, AVQA): out = gate * LN_post(BN(up(ReLU(BN(down(LN_before(x)))))))
    ``order="avs"`` (the authors' AVS copy): LN_before is built but not applied, and
    out = LN_post(gate * BN(up(ReLU(BN(down(x)))))).
    x: (B', N, C) -> (B', N, C). With ``gate`` on, the output is exactly zero at init.
    """

    def __init__(
        self,
        dim: int,
        *,
        reduction: int = 8,
        groups: int = 2,
        use_bn: bool = True,
        ln_before: bool = True,
        ln_post: bool = True,
        gate: bool = True,
        order: str = "ave",
    ) -> None:
        super().__init__()
        hidden = dim // reduction
        if hidden < groups or hidden % groups:
            raise ConfigError(f"dim {dim} / reduction {reduction} = {hidden} is not divisible by groups={groups}")
        self.ln_before = _norm(ln_before, dim)
        self.down = GroupedLinear(dim, hidden, groups)
        self.bn1 = TokenBatchNorm(hidden) if use_bn else nn.Identity()
        self.act = nn.ReLU()
        self.up = GroupedLinear(hidden, dim, groups)
        self.bn2 = TokenBatchNorm(dim) if use_bn else nn.Identity()
        self.ln_post = _norm(ln_post, dim)
        self.gate = Gate() if gate else nn.Identity()
        if order not in ("ave", "avs"):
            raise ValueError(f"order must be 'ave' or 'avs', got {order!r}")
        self.order = order

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.order == "ave":
            x = self.ln_before(x)
        y = self.bn2(self.up(self.act(self.bn1(self.down(x)))))
        if self.order == "ave" and isinstance(self.ln_post, nn.LayerNorm) and isinstance(self.gate, Gate):
            # g * LN(y; w, b) == LN(y; g w, g b): no separate pass, LN's output is not kept for the gate's grad
            ln, g = self.ln_post, self.gate.gate
            return F.layer_norm(y, ln.normalized_shape, ln.weight * g, ln.bias * g, ln.eps)
        if self.order == "ave":
            return self.gate(self.ln_post(y))
        return self.ln_post(self.gate(y))


class PHMLinear(nn.Module):
    """Parameterised hypercomplex multiplication layer (Compacter, Mahabadi et al. 2021).

    W = sum_i A_i kron (s_i t_i^T): ``n`` small (n x n) rule matrices ``A`` and rank-``rank`` factors, so the layer
    has ``n^3 + n * rank * (in + out) / n`` parameters instead of ``in * out``. x: (..., in) -> (..., out).
    ``factorised=False`` keeps full blocks W_i (``w``: (n, in/n, out/n), ``in * out / n`` parameters) instead of
    s_i t_i^T: the plain PHM layer, which the authors' Table 6 Compacter used for its down map.
    """

    def __init__(
        self, in_features: int, out_features: int, n: int = 4, rank: int = 1, factorised: bool = True
    ) -> None:
        super().__init__()
        if in_features % n or out_features % n:
            raise ConfigError(f"PHM needs channels divisible by n={n}, got {in_features}->{out_features}")
        self.n, self.in_features, self.out_features, self.factorised = n, in_features, out_features, factorised
        self.rules = nn.Parameter(torch.randn(n, n, n) * (1.0 / n))
        if factorised:
            self.s = nn.Parameter(torch.empty(n, in_features // n, rank))
            self.t = nn.Parameter(torch.empty(n, rank, out_features // n))
            nn.init.xavier_uniform_(self.s)
            nn.init.xavier_uniform_(self.t)
        else:
            self.w = nn.Parameter(torch.empty(n, in_features // n, out_features // n))
            nn.init.xavier_uniform_(self.w)
        self.bias = nn.Parameter(torch.zeros(out_features))

    def weight(self) -> torch.Tensor:
        """The full (in, out) matrix."""
        blocks = torch.bmm(self.s, self.t) if self.factorised else self.w  # (n, in/n, out/n)
        return torch.einsum("kab,kio->aibo", self.rules, blocks).reshape(self.in_features, self.out_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x @ self.weight() + self.bias
