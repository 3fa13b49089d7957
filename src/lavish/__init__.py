"""lavish: frozen image-pretrained vision transformers taught to see and hear (LAVISH, Lin et al., CVPR 2023).

A frozen timm backbone (ViT, Swin-V2, ...) is shared by two streams, video frames and the audio of each second as a
log-mel spectrogram image; small trainable adapters in every block exchange information between the streams through
a few latent tokens. Task heads: AVE (event localisation), AVS (segmentation), AVQA (question answering).

The public API (docs/api.md has a worked example; the command line ``lavish`` runs the same code):

Adapters in your own model and training loop
    ``wrap(backbone, adapter="lavish", *, modalities="av", pretrained=False, weights=None, preset="ave", **settings)``
    -> LavishBackbone: a timm model name or a built timm model, frozen, with adapters; ``.trainable_parameters()``
    for the optimiser; forward(spectrograms, frames) -> BackboneOutput(audio, visual, visual_stages).
    ``adapter_config(kind, *, preset=None, **settings)``: an adapter configuration (ADAPTERS, PRESETS).
    ``save_adapter(model, path, meta=None)`` / ``load_adapter(model, path)``: the adapters apart from the frozen
    weights (safetensors; keys and metadata in docs/api.md). ``trainable_parameters(model)``.

Task models and training as the CLI runs them
    ``AveModel`` / ``AvsModel`` / ``AvqaModel`` built from ``AveModelConfig`` / ``AvsModelConfig`` /
    ``AvqaModelConfig``; ``train(task, data, out, model_config, train_config, ...)`` -> TrainResult;
    ``evaluate(checkpoint, data, split="test")`` -> the task's metrics; ``TASKS`` / ``get_task(name)``.

Trained adapter files
    ``load(path, *, backbone_weights=None, backbone=None)`` -> TrainedModel with ``.predict(video)``,
    ``.ask(video, question)``, ``.evaluate(data)``: plain Python / numpy results, as the CLI prints them.

Media: ``decode_clip(path, ...)``, ``input_spec(backbone, task)``, ``get_frontend(name)``. Errors: ``LavishError``
(``ConfigError``, ``DataError``, ``MediaError``, ``CheckpointError``): bad input, one line.

Layers, each importing only the ones before it: ``media`` -> ``data`` -> ``models`` -> ``tasks`` -> ``api`` ->
``cli``. Names are imported on first use, so ``import lavish`` is cheap.
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
    **dict.fromkeys(("AveModel", "AveModelConfig"), "lavish.models.ave"),
    **dict.fromkeys(("AvsModel", "AvsModelConfig"), "lavish.models.avs"),
    **dict.fromkeys(("AvqaModel", "AvqaModelConfig"), "lavish.models.avqa"),
    **dict.fromkeys(("AvvpModel", "AvvpModelConfig"), "lavish.models.avvp"),
    **dict.fromkeys(("Task", "TrainResult"), "lavish.tasks.base"),
    **dict.fromkeys(("TASKS", "get_task"), "lavish.tasks.registry"),
    "TrainConfig": "lavish.tasks.runner",
    "AveTrainConfig": "lavish.tasks.ave",
    "AvsTrainConfig": "lavish.tasks.avs",
    "AvqaTrainConfig": "lavish.tasks.avqa",
    "AvvpTrainConfig": "lavish.tasks.avvp",
    "decode_clip": "lavish.media.decode",
    **dict.fromkeys(("normalize_frames", "IMAGENET_MEAN", "IMAGENET_STD"), "lavish.media.frames"),
    "get_frontend": "lavish.media.audio",
    "input_spec": "lavish.models.input_spec",
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
