"""Parameter and FLOP accounting (paper Tables 1-3, 5 and Fig. 4).

Counts are taken on a model built on PyTorch's ``meta`` device: no weights are allocated or downloaded, so the
paper backbones are counted in seconds on any machine. FLOPs come from ``torch.utils.flop_counter`` for one
1-second segment (one audio image + one frame) in eval mode, split into the adapters (every module under
``backbone.slots``) and the rest (frozen backbone + head). The counter's convention is 2 FLOPs per
multiply-accumulate; ``*_gmacs`` halves it (fvcore-style GMACs, the unit most vision papers call "GFLOPs").
See docs/accounting.md for how each paper number relates to these.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass

import timm
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from lavish.models.backbone import full_name

_SLOT = re.compile(r"\.slots\.\d+\.")


@dataclass
class Accounting:
    """Numbers printed by ``lavish info``."""

    backbone: str
    trainable_params: int
    frozen_params: int
    total_params: int
    adapter_params: int
    head_params: int
    pretrained_head_params: int
    total_params_with_pretrained_head: int
    backbone_gflops: float
    adapter_gflops: float
    backbone_gmacs: float
    adapter_gmacs: float

    def to_dict(self) -> dict:
        return asdict(self)


def pretrained_head_params(backbone: str, num_features: int) -> int:
    """Parameters of the classifier of ``backbone``'s default pretrained checkpoint (unused by LAVISH)."""
    cfg = timm.get_pretrained_cfg(full_name(backbone))
    classes = getattr(cfg, "num_classes", 0) or 0 if cfg is not None else 0
    return num_features * classes + classes


def count_flops(model: nn.Module, *inputs: torch.Tensor) -> tuple[float, float]:
    """(total, adapters) FLOPs of ``model(*inputs)`` in eval mode, no grad."""
    counter = FlopCounterMode(display=False)
    was_training = model.training
    model.eval()
    with counter, torch.no_grad():
        model(*inputs)
    model.train(was_training)
    counts = counter.get_flop_counts()
    total = sum(counts["Global"].values())
    # the outermost modules tracked under ``backbone.slots`` (nested ones are included in their parents' counts)
    slot_keys = [k for k in counts if _SLOT.search(k)]
    top = [k for k in slot_keys if not any(k.startswith(o + ".") for o in slot_keys)]
    adapters = sum(sum(counts[k].values()) for k in top)
    return float(total), float(adapters)


def account(model: nn.Module, backbone: str, inputs: tuple[torch.Tensor, ...]) -> Accounting:
    """Parameters and FLOPs of a task model (``model.backbone`` a LavishBackbone, ``model.head`` the head)."""
    params = list(model.named_parameters())
    trainable = sum(p.numel() for _, p in params if p.requires_grad)
    total = sum(p.numel() for _, p in params)
    adapter = sum(p.numel() for n, p in params if ".slots." in n or "lora_" in n)
    head = sum(p.numel() for n, p in params if not n.startswith("backbone."))
    extra_head = pretrained_head_params(backbone, model.backbone.num_features)
    flops, adapter_flops = count_flops(model, *inputs)
    return Accounting(
        backbone=backbone,
        trainable_params=trainable,
        frozen_params=total - trainable,
        total_params=total,
        adapter_params=adapter,
        head_params=head,
        pretrained_head_params=extra_head,
        total_params_with_pretrained_head=total + extra_head,
        backbone_gflops=(flops - adapter_flops) / 1e9,
        adapter_gflops=adapter_flops / 1e9,
        backbone_gmacs=(flops - adapter_flops) / 2e9,
        adapter_gmacs=adapter_flops / 2e9,
    )
