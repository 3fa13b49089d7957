"""lavish: frozen image-pretrained vision transformers taught to see and hear (LAVISH, Lin et al., CVPR 2023).

A frozen timm backbone (ViT, Swin-V2, ...) is shared by two streams, video frames and the audio of each second as a
log-mel spectrogram image; small trainable adapters in every block exchange information between the streams through
a few latent tokens. Task heads: AVE (event localisation), AVS (segmentation), AVQA (question answering), AVVP
(video parsing).

The public API (docs/api.md lists every name with an example; the command line ``lavish`` calls the same functions):

Adapters in your own model and training loop
    ``wrap(backbone, adapter="lavish", *, modalities="av", pretrained=None, weights=None, preset="ave", **settings)``
    -> LavishBackbone: a timm model name (its pretrained weights by default; micro demo backbones are random; a
    real name with ``pretrained=False`` warns) or a built timm model, frozen, with adapters.
    ``LavishBackbone``: ``.trainable_parameters()``, ``.print_trainable_parameters()``, ``.save_pretrained(dir)`` /
    ``LavishBackbone.from_pretrained(dir)``, ``.unwrap()``, ``.merge_and_unload()`` (lora_attn), ``.frame_stats``;
    forward(spectrograms (B', F, M), frames (B', 3, H, W)) -> ``BackboneOutput(audio, visual, visual_stages)``,
    inputs checked (``ShapeError``). ``create_backbone(name, pretrained=..., weights=...)``.
    ``adapter_config(kind, *, preset=None, **settings)``: an adapter configuration (``ADAPTERS``, ``PRESETS``,
    ``FUSIONS``, ``MODALITIES``; ``AdapterConfig``, ``LavishConfig``, ``AvishConfig``, ``BottleneckAdapterConfig``,
    ``LoraConfig``, ``CompacterConfig``, ``BitfitConfig``, ``NormConfig``, ``NoAdapterConfig``).
    ``save_adapter(model, path, meta=None)`` / ``load_adapter(model, path)`` / ``read_adapter_file(path)``: the
    adapters apart from the frozen weights (safetensors). ``trainable_parameters(model)``.

Task models and the command line as functions (each returns plain data)
    ``AveModel`` / ``AvsModel`` / ``AvqaModel`` / ``AvvpModel`` built from ``AveModelConfig`` / ``AvsModelConfig`` /
    ``AvqaModelConfig`` / ``AvvpModelConfig``; ``TrainConfig``, ``AveTrainConfig``, ``AvsTrainConfig``,
    ``AvqaTrainConfig``, ``AvvpTrainConfig``. ``synthetic(task, out, ...)`` -> a dataset folder;
    ``prepare(task, root, out, backbone=...)`` -> report dict; ``train(task, data, out, model_config,
    train_config, ...)`` -> ``TrainResult``; ``evaluate(checkpoint, data, split="test")`` -> metrics;
    ``info(task, **model settings)`` -> parameter / FLOP counts; ``demo(task, out)`` -> results; ``bench(**options)``
    -> measurements. ``TASKS`` / ``get_task(name)`` / ``Task``.

Trained adapter files
    ``load(path, *, backbone_weights=None, backbone=None, task=None)`` -> ``TrainedModel`` with
    ``.predict(video)``, ``.ask(video, question)``, ``.evaluate(data)``: what the CLI prints with ``--json``.

Media: ``decode_clip(path)`` (uint8 frames, spectrograms), ``load_inputs(path, backbone)`` (the backbone's
normalised inputs), ``normalize_frames(frames, mean=IMAGENET_MEAN, std=IMAGENET_STD)``, ``input_spec(backbone,
task)``, ``get_frontend(name)``.

Errors: bad input raises one ``LavishError`` with a one-line message: ``ConfigError`` (``ShapeError``, also a
ValueError), ``DataError``, ``MediaError``, ``CheckpointError``, ``WriteError``.

Layers, each importing only the ones before it: ``media`` -> ``data`` -> ``models`` -> ``engine`` -> ``tasks``
(one folder per task, found through entry points) -> ``api`` / ``bench`` -> ``cli``. Names are imported on first use, so ``import lavish`` is cheap.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

#: public name -> the module that defines it
_EXPORTS = {
    **dict.fromkeys(("wrap", "adapter_config", "load", "save_adapter", "load_adapter", "read_adapter_file",
                     "trainable_parameters", "TrainedModel", "train", "evaluate", "prepare", "info", "demo", "bench",
                     "synthetic", "load_inputs"), "lavish.api"),
    **dict.fromkeys(("ADAPTERS", "PRESETS", "FUSIONS", "MODALITIES", "AdapterConfig", "LavishConfig", "AvishConfig",
                     "BottleneckAdapterConfig", "LoraConfig", "CompacterConfig", "BitfitConfig", "NormConfig",
                     "NoAdapterConfig"), "lavish.models.adapters"),
    **dict.fromkeys(("LavishBackbone", "BackboneOutput", "create_backbone"), "lavish.models.backbone"),
    **dict.fromkeys(("AveModel", "AveModelConfig"), "lavish.tasks.ave.model"),
    **dict.fromkeys(("AvsModel", "AvsModelConfig"), "lavish.tasks.avs.model"),
    **dict.fromkeys(("AvqaModel", "AvqaModelConfig"), "lavish.tasks.avqa.model"),
    **dict.fromkeys(("AvvpModel", "AvvpModelConfig"), "lavish.tasks.avvp.model"),
    **dict.fromkeys(("Task", "TrainResult"), "lavish.engine.task"),
    **dict.fromkeys(("TASKS", "get_task"), "lavish.engine.registry"),
    "TrainConfig": "lavish.engine.runner",
    "AveTrainConfig": "lavish.tasks.ave.task",
    "AvsTrainConfig": "lavish.tasks.avs.task",
    "AvqaTrainConfig": "lavish.tasks.avqa.task",
    "AvvpTrainConfig": "lavish.tasks.avvp.task",
    "decode_clip": "lavish.media.decode",
    **dict.fromkeys(("normalize_frames", "IMAGENET_MEAN", "IMAGENET_STD"), "lavish.media.frames"),
    "get_frontend": "lavish.media.audio",
    "input_spec": "lavish.engine.registry",
    **dict.fromkeys(("LavishError", "ConfigError", "DataError", "MediaError", "CheckpointError", "WriteError",
                     "ShapeError"), "lavish.errors"),
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'lavish' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
