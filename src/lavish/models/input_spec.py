"""What a backbone wants as input: frame size and audio front-end, per task.

The prepared cache stores frames at the backbone's resolution and spectrograms from one front-end
(:data:`lavish.media.audio.AUDIO_FRONTENDS`); this module is where a backbone name turns into those settings,
so ``lavish prepare`` and ``lavish train`` agree without either knowing model internals.

Rules (spec section 2): Swin-V2 uses 192x192 frames and the task's 192-mel front-end (audio resized to the
frame grid by the model); ViT uses 224x224 frames and, for AVE, the authors' ViT front-end (128 mel bins,
10 ms shift, 102 frames). The tiny ``lavish_*_micro`` demo backbones use 64x64 frames and the ``micro``
front-end (64 mel bins) so that the demo trains in minutes on a CPU.
"""

from __future__ import annotations

from dataclasses import dataclass

import timm

from lavish.errors import ConfigError


@dataclass(frozen=True)
class InputSpec:
    """Input settings of one backbone for one task."""

    frame_size: tuple[int, int]
    """(height, width) of the frames fed to the backbone, pixels."""
    audio_frontend: str
    """Name of the audio front-end in ``lavish.media.audio.AUDIO_FRONTENDS``."""


TASKS = ("ave", "avs", "avqa")


def backbone_family(name: str) -> str:
    """``"vit"`` or ``"swinv2"`` from a timm model name; anything else is refused."""
    base = name.split(".")[0]
    for family in ("swinv2", "vit"):
        if base.startswith(family) or base.startswith(f"lavish_{family}"):
            return family
    raise ConfigError(f"backbone {name!r} is not supported: use a timm 'vit_*' or 'swinv2_*' model")


def input_spec(backbone: str, task: str = "ave") -> InputSpec:
    """Frame size and audio front-end for ``backbone`` (a timm name) on ``task``."""
    if task not in TASKS:
        raise ConfigError(f"unknown task {task!r}: choose one of {', '.join(TASKS)}")
    family = backbone_family(backbone)
    import lavish.models.micro  # noqa: F401  (registers the demo backbones with timm)

    base = backbone.split(".")[0]
    if not timm.is_model(base):
        raise ConfigError(f"unknown backbone {backbone!r}: timm has no model of that name")
    cfg = timm.get_pretrained_cfg(base)
    size = tuple(cfg.input_size[1:]) if cfg is not None else (224, 224)
    if base.startswith("lavish_"):
        return InputSpec(frame_size=size, audio_frontend="micro")
    if family == "vit" and task == "ave":
        return InputSpec(frame_size=size, audio_frontend="ave_vit")
    return InputSpec(frame_size=size, audio_frontend=task)
