"""What a backbone wants as input: frame size and audio front-end, for the front-end a task declares.

The prepared cache stores frames at the backbone's resolution and spectrograms from one front-end
(:data:`lavish.media.audio.AUDIO_FRONTENDS`); this module is where a backbone name turns into those settings,
so ``lavish prepare`` and ``lavish train`` agree without either knowing model internals.

A name is resolved by what the model *is*: timm builds it on PyTorch's ``meta`` device (no weights allocated,
nothing downloaded, ~0.1 s, cached per name) and its class picks the family (:mod:`lavish.models.families`).

Rules (spec section 2, docs/backbones.md): the frame size is the model's own input size (``patch_embed.img_size``:
192x192 for the paper's Swin-V2, 224x224 for its ViTs). Families that resize the audio image to the frame grid
(Swin-V2, Swin, EVA) use the task's 192-mel front-end; ViT keeps the audio image at its own size and, for AVE, uses
the authors' ViT front-end (128 mel bins, 10 ms shift, 102 frames). The tiny demo backbones of
:mod:`lavish.models.micro` use the ``micro`` front-end (64 mel bins) so that the demo trains in minutes on a CPU.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import timm
import torch

from lavish.errors import ConfigError
from lavish.models import micro
from lavish.models.families import family_name


@dataclass(frozen=True)
class InputSpec:
    """Input settings of one backbone for one task."""

    frame_size: tuple[int, int]
    """(height, width) of the frames fed to the backbone, pixels."""
    audio_frontend: str
    """Name of the audio front-end in ``lavish.media.audio.AUDIO_FRONTENDS``."""


@dataclass(frozen=True)
class BackboneInfo:
    """What a timm model name is, read from the model built on the meta device."""

    family: str
    """key of :data:`lavish.models.families.FAMILIES`"""
    timm_class: str
    """timm class name (``VisionTransformer``, ``Eva``, ...)"""
    img_size: tuple[int, int]
    """input size the model is built for (its patch embedding's ``img_size``)"""
    micro: bool
    """one of the demo backbones of :mod:`lavish.models.micro`"""


def describe(name: str) -> BackboneInfo:
    """Family, class and input size of the timm model ``name`` (``arch`` or ``arch.tag``); ConfigError if unusable."""
    return _describe(name.split(".")[0], name)


@lru_cache(maxsize=None)
def _describe(base: str, label: str) -> BackboneInfo:
    if not timm.is_model(base):
        raise ConfigError(f"unknown backbone {label!r}: timm has no model of that name")
    try:
        with torch.device("meta"):
            model = timm.create_model(base, pretrained=False, num_classes=0)
    except Exception as err:  # noqa: BLE001  (a constructor may fail in many ways)
        raise ConfigError(f"cannot build backbone {label} to inspect it: {str(err).splitlines()[0]}") from None
    family = family_name(model, label)
    return BackboneInfo(
        family=family,
        timm_class=type(model).__name__,
        img_size=tuple(model.patch_embed.img_size),
        micro=timm.models.model_entrypoint(base).__module__ == micro.__name__,
    )


def backbone_family(name: str) -> str:
    """The family (a key of :data:`~lavish.models.families.FAMILIES`) of timm model ``name``, by its class."""
    return describe(name).family


def backbone_input_spec(backbone: str, frontend: str, family_frontends: dict[str, str] | None = None) -> InputSpec:
    """Frame size and audio front-end for ``backbone`` (a timm name) on a task whose cache uses ``frontend``, or
    ``family_frontends[family]`` for a backbone of that family (each task declares both: :class:`lavish.engine.task.Task`).
    :func:`lavish.engine.registry.input_spec` takes a task's name instead."""
    info = describe(backbone)
    if info.micro:
        return InputSpec(frame_size=info.img_size, audio_frontend="micro")
    return InputSpec(frame_size=info.img_size, audio_frontend=(family_frontends or {}).get(info.family, frontend))
