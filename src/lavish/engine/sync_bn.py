"""BatchNorm synchronised over DDP processes on any device (CPU with gloo included).

Spec section 4 (AVE recipe, batch of 2 videos): the adapters' BatchNorm statistics are those of the whole
global batch. ``torch.nn.SyncBatchNorm`` (what Lightning's ``sync_batchnorm=True`` swaps in) refuses CPU
modules ("SyncBatchNorm layers only work with GPU modules"), so ``--devices 2`` on a CPU machine could not
start. :class:`AllReduceBatchNorm` computes the same global statistics with two autograd-aware all-reduces
(sum, then sum of squared deviations), which gloo supports; :class:`AllReduceSyncBatchNorm` is the Lightning
``LayerSync`` plugin that swaps it in (and back). On GPUs we keep Lightning's ``SyncBatchNorm``.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from lightning.pytorch.plugins import LayerSync
from torch import nn


class _AllReduceSum(torch.autograd.Function):
    """Sum over processes; its gradient is the sum of the processes' gradients (the loss is their sum)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        x = x.clone()
        dist.all_reduce(x)
        return x

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.clone()
        dist.all_reduce(grad)
        return grad


def all_reduce(x: torch.Tensor) -> torch.Tensor:
    """Differentiable sum of ``x`` over all processes (same shape)."""
    return _AllReduceSum.apply(x)


class AllReduceBatchNorm(nn.BatchNorm1d):
    """``nn.BatchNorm1d`` whose training statistics cover all processes: x (M, C) or (M, C, L) -> same shape.

    Same parameter and buffer names as ``nn.BatchNorm1d``, so state dicts are interchangeable.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
            return super().forward(x)
        dims = [0, *range(2, x.dim())]
        shape = [1, x.shape[1]] + [1] * (x.dim() - 2)
        count = torch.full((1,), x.numel() // x.shape[1], dtype=x.dtype, device=x.device)
        sums = all_reduce(torch.cat([x.sum(dims), count]))
        total = sums[-1]
        mean = sums[:-1] / total
        centered = x - mean.view(shape)
        var = all_reduce(centered.pow(2).sum(dims)) / total  # biased, as BatchNorm normalises with
        out = centered * torch.rsqrt(var + self.eps).view(shape)
        if self.affine:
            out = out * self.weight.view(shape) + self.bias.view(shape)
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked += 1
                m = (1.0 / float(self.num_batches_tracked)) if self.momentum is None else self.momentum
                n = float(total)
                self.running_mean.mul_(1 - m).add_(mean.detach(), alpha=m)
                self.running_var.mul_(1 - m).add_(var.detach() * (n / max(n - 1, 1)), alpha=m)
        return out


def _swap(module: nn.Module, src: type, dst: type) -> nn.Module:
    if type(module) is src:
        new = dst(module.num_features, module.eps, module.momentum, module.affine, module.track_running_stats)
        if module.affine:
            new.weight, new.bias = module.weight, module.bias
        if module.track_running_stats:
            new.running_mean, new.running_var = module.running_mean, module.running_var
            new.num_batches_tracked = module.num_batches_tracked
        new.train(module.training)
        return new
    for name, child in module.named_children():
        module.add_module(name, _swap(child, src, dst))
    return module


class AllReduceSyncBatchNorm(LayerSync):
    """Lightning plugin: every ``nn.BatchNorm1d`` becomes :class:`AllReduceBatchNorm` for fitting, then back."""

    def apply(self, model: nn.Module) -> nn.Module:
        return _swap(model, nn.BatchNorm1d, AllReduceBatchNorm)

    def revert(self, model: nn.Module) -> nn.Module:
        return _swap(model, AllReduceBatchNorm, nn.BatchNorm1d)

