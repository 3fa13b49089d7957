"""The public Python API (re-exported by ``lavish``): LAVISH adapters in anyone's model and training loop, the
task models, training and evaluation as the CLI runs them, and trained adapter files ready to use.

Two streams, one frozen backbone (docs/api.md has a worked example)::

    import lavish
    backbone = lavish.wrap("vit_base_patch16_224", "lavish", pretrained=True)   # or a timm model you built
    optimizer = torch.optim.AdamW(backbone.trainable_parameters(), lr=1e-4)
    out = backbone(spectrograms, frames)          # (B', F, M) and (B', 3, H, W) -> per-stream tokens
    audio, visual = backbone.pool(out.audio), backbone.pool(out.visual)        # (B', D) each
    lavish.save_adapter(backbone, "adapters.safetensors")                      # the adapters only

A trained model of a task (an adapter file written by ``lavish train``)::

    model = lavish.load("runs/ave/best.safetensors")
    model.predict("my_video.mp4")["seconds"]       # the entry `lavish predict --json` prints for this video
"""

from __future__ import annotations

import dataclasses
import json
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from lavish.errors import CheckpointError, ConfigError
from lavish.models.adapters import ADAPTERS, AdapterConfig, preset_settings
from lavish.models.adapters import adapter_config as _kind_config
from lavish.models.backbone import LavishBackbone, create_backbone, micro_backbone
from lavish.models.weights import file_config, load_adapter_into, read_adapter
from lavish.models.weights import save_adapter as _save_adapter_file
from lavish.engine.task import Task
from lavish.engine.train import evaluate_model
from lavish.engine.train import load as _load_task_model


def adapter_config(kind: str | AdapterConfig = "lavish", *, preset: str | None = None,
                   **settings: Any) -> AdapterConfig:
    """An adapter configuration: ``kind`` (one of :data:`lavish.ADAPTERS`: lavish, avish, adapter, lora,
    compacter, lora_attn (peft's LoRA inside the frozen attention projections), bitfit, norm, none) with the settings of ``preset`` (a paper task: ave, avs, avqa, avqa_paper; the
    fields the kind has), then ``settings`` (any field of the kind's config dataclass, e.g. ``num_latents=4``).

    An AdapterConfig passed as ``kind`` is returned with ``settings`` applied. Unknown kinds, presets or fields
    raise :class:`lavish.ConfigError`.
    """
    if isinstance(kind, AdapterConfig):
        return dataclasses.replace(kind, **settings) if settings else kind
    if kind not in ADAPTERS:
        raise ConfigError(f"unknown adapter {kind!r}: choose one of {', '.join(ADAPTERS)}")
    base = preset_settings(kind, preset) if preset is not None else {}
    return _kind_config(kind, **{**base, **settings})


def wrap(backbone: str | nn.Module, adapter: str | AdapterConfig = "lavish", *, modalities: str = "av",
         pretrained: bool | None = None, weights: str | Path | None = None, preset: str | None = "ave",
         checkpointing: bool | str = False, train_norms: bool = False, **settings: Any) -> LavishBackbone:
    """A frozen two-stream backbone with adapters in every block (peft's ``get_peft_model`` for LAVISH).

    backbone: a timm model name (built without classifier) or an already-built timm model of a supported family
    (ViT, Swin-V2, ...); its parameters are frozen in place. By name, the weights are: ``weights`` (a local timm
    checkpoint) if given, else timm's pretrained weights from the hub when ``pretrained`` is True or None (the
    default: a real timm name means its pretrained weights; a micro demo backbone, ``lavish_*_micro_*``, has none and
    is built random), else (``pretrained=False``, said explicitly) random weights, seeded with
    :data:`lavish.models.backbone.RANDOM_INIT_SEED` so that the same name gives the same backbone every time
    (``torch.manual_seed`` does not change them). A frozen random backbone learns nothing useful: a warning says so
    when ``pretrained=False`` is given with a real name. Without the hub, ``pretrained`` raises one
    :class:`lavish.ConfigError` naming ``weights=`` and ``pretrained=False``. adapter: a kind name (with ``preset``
    and ``settings`` as :func:`adapter_config`) or an AdapterConfig. modalities: "av", "v" (no audio stream) or "a".

    Only the adapter parameters are trainable (``trainable_parameters()`` lists them for an optimiser). Forward:
    ``backbone(spectrograms (B', F, M), frames (B', 3, H, W), return_stages=False)`` -> BackboneOutput(audio
    (B', N_a, D), visual (B', N_v, D), visual_stages: four (B', h, w, C_s) maps when asked); ``pool`` -> (B', D).
    With the default zero-initialised gates the visual stream equals the plain timm model's features.
    """
    config = adapter_config(adapter, preset=preset if isinstance(adapter, str) else None, **settings)
    by_name = isinstance(backbone, str)
    if by_name:
        micro = micro_backbone(backbone)
        if pretrained and micro:
            raise ConfigError(f"{backbone} is a micro demo backbone without pretrained weights: pass "
                              "pretrained=False (or leave it out)")
        if pretrained is False and weights is None and not micro:
            warnings.warn(f"wrap({backbone!r}, pretrained=False): the frozen backbone has random weights, so the "
                          f"adapters learn on features of noise; leave pretrained out (or pass weights=PATH) for "
                          f"timm's pretrained weights", UserWarning, stacklevel=2)
        if pretrained is None:
            pretrained = not micro
        backbone = create_backbone(backbone, pretrained=pretrained or weights is not None, weights=weights)
    elif pretrained or weights is not None:
        raise ConfigError("pretrained / weights apply to a backbone given by name: load the weights into your model "
                          "before wrapping it")
    if not isinstance(backbone, nn.Module):
        raise ConfigError(f"backbone must be a timm model name or an nn.Module, not {type(backbone).__name__}")
    model = LavishBackbone(backbone, config, modalities=modalities, checkpointing=checkpointing,
                           train_norms=train_norms)
    if by_name:
        model.pretrained = bool(pretrained or weights is not None)
    return model


def trainable_parameters(model: nn.Module) -> list[nn.Parameter]:
    """The parameters of ``model`` that training changes (adapters, heads; never the frozen backbone)."""
    return [p for p in model.parameters() if p.requires_grad]


_file_config = file_config


def save_adapter(model: nn.Module, path: str | Path, meta: dict | None = None) -> Path:
    """Write what training changed in ``model`` (every trainable tensor and every tensor outside the frozen timm
    model: adapters, BatchNorm statistics, heads) to a safetensors file, with the model's configuration and
    ``meta`` as JSON metadata (docs/api.md lists the keys). Never the frozen backbone weights."""
    return _save_adapter_file(model, path, _file_config(model), meta)


def load_adapter(model: nn.Module, path: str | Path) -> dict:
    """Load an adapter file written by :func:`save_adapter` (or ``lavish train``) into ``model``, which must be
    built with the same configuration; returns the file's meta. Refuses, in one line, a file of another
    configuration or whose tensors do not fit."""
    return load_adapter_into(model, path, _file_config(model))


def read_adapter_file(path: str | Path) -> tuple[dict, dict]:
    """(configuration, meta) recorded in an adapter file, without building anything."""
    config, meta, _ = read_adapter(path)
    return config, meta


@dataclass
class TrainedModel:
    """A trained task model ready to use (what :func:`load` returns).

    ``task`` the :class:`lavish.engine.task.Task`, ``model`` the ``nn.Module`` in eval mode, ``meta`` the adapter
    file's meta (classes, vocabularies, frame size, audio front-end...), ``path`` the file.
    """

    task: Task
    model: nn.Module
    meta: dict
    path: Path

    def predict(self, video: str | Path, *, arrays: bool = False, **options: Any) -> dict:
        """The task's prediction on any video: the dict ``lavish predict --json`` prints for it (the command prints
        a list, one such dict per video).

        AVE: {video, duration, has_audio, seconds: [{second, label, probability}]} (``plot=PNG`` draws the
        timeline); AVS: {video, duration, has_audio, coverage} (``out=DIR`` writes the mask PNGs and a contact
        sheet, adding their paths); AVVP: {video, duration, has_audio, seconds: [{second, heard, seen}], events,
        windows} (``plot=PNG``). ``arrays=True`` adds numpy arrays: AVE ``probabilities`` (T, K) and ``frames``;
        AVS ``mask_array`` (T, H, W) bool and ``frames``; AVVP ``audio_probabilities``, ``visual_probabilities``
        (T, C) and ``frames``. AVQA models answer :meth:`ask` instead.
        """
        return self.task.predict(self.model, self.meta, video, arrays=arrays, **options)

    def ask(self, video: str | Path, question: str, *, top_k: int = 5, plot: str | Path | None = None,
            arrays: bool = False) -> dict:
        """AVQA: answer ``question`` about ``video`` (the dict ``lavish ask --json`` prints)."""
        if not hasattr(self.task, "ask"):
            raise ConfigError(f"{self.path} is an {self.task.name.upper()} model: only AVQA models answer questions")
        return self.task.ask(self.model, self.meta, video, question, top_k=top_k, plot=plot, arrays=arrays)

    def evaluate(self, data: str | Path, *, split: str = "test", batch_size: int = 2, progress: bool = False,
                 **options: Any) -> dict:
        """The task's metrics on a split of a prepared cache (the dict ``lavish eval --json`` prints)."""
        return evaluate_model(self.task, self.model, self.meta, data, split=split, batch_size=batch_size,
                              progress=progress, source=self.path, **options)


def load(path: str | Path, *, backbone_weights: str | Path | None = None, backbone: nn.Module | None = None,
         task: str | None = None) -> TrainedModel:
    """A trained adapter file as a ready model: the frozen backbone from ``backbone`` (an already-built timm model
    of the file's architecture), else ``backbone_weights`` (a local timm checkpoint), else as the file records
    (timm's hub when it was trained on pretrained weights); the adapters and head from the file. ``task``: refuse
    a file of another task."""
    config, _ = read_adapter_file(path)
    if "lavish_backbones" in config:
        raise CheckpointError(f"{path} is an adapter file of your own model (lavish.save_adapter), not a task model's: "
                              f"build your model, then lavish.load_adapter(model, {str(path)!r})")
    found, model, meta = _load_task_model(path, task=task, backbone_weights=backbone_weights and str(backbone_weights),
                                          backbone=backbone)
    return TrainedModel(found, model, meta, Path(path))



def load_inputs(video: str | Path, backbone: str | LavishBackbone, *, task: str = "ave",
                num_segments: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """A video file -> (spectrograms (T, F, M), frames (T, 3, H, W)), float32, ready for ``backbone(spectrograms,
    frames)``: decoded at the backbone's frame size with its audio front-end on ``task``
    (:func:`lavish.input_spec`), frames normalised with the backbone's own pretraining statistics
    (``backbone.frame_stats``; for a name, those of timm's pretrained config). T: ``num_segments`` (None: one per
    second). Raises :class:`lavish.MediaError` for a file that cannot be decoded."""
    from lavish.media.decode import decode_clip
    from lavish.media.frames import normalize_frames
    from lavish.models.backbone import frame_stats
    from lavish.engine.registry import input_spec

    if isinstance(backbone, LavishBackbone):
        mean, std = backbone.frame_stats
        frame_size = backbone.img_size
        try:
            frontend = input_spec(backbone.backbone_name, task).audio_frontend
        except ConfigError:  # a model timm does not know by name: the micro front-end at 64 px, else AVE's
            frontend = "micro" if tuple(frame_size) == (64, 64) else "ave"
    elif isinstance(backbone, str):
        spec = input_spec(backbone, task)
        frame_size, frontend = spec.frame_size, spec.audio_frontend
        mean, std = frame_stats(backbone)
    else:
        raise ConfigError(f"backbone must be a timm name or a LavishBackbone, not {type(backbone).__name__}")
    clip = decode_clip(video, num_segments=num_segments, frame_size=tuple(frame_size), frontend=frontend)
    return torch.from_numpy(clip.spectrograms), normalize_frames(torch.from_numpy(clip.frames), mean, std)


# ------------------------------------------------------------------------------------ the CLI's commands as functions
def train(task: str | Task, data: str | Path, out: str | Path, model_config: Any, train_config: Any, *,
          pretrained: bool = False, backbone_weights: str | Path | None = None, resume: bool = False,
          progress: bool = True, test: bool = True, data_options: dict | None = None):
    """Train ``task``'s model on a prepared cache into the run folder ``out`` (``lavish train``) -> TrainResult
    (``run_dir``, ``adapter`` (the best adapter file), ``monitor``, ``best_epoch``, ``best_value``, ``test`` (the
    test metrics), ``epochs_run``, ``seconds``). ``resume=True`` continues the run in ``out``; ``progress=False``
    shows no progress bar; Lightning's notes (accelerators found, tips, "Trainer.fit stopped") are never shown.
    """
    from lavish.quiet import user_facing_output
    from lavish.engine.train import train as _train

    with user_facing_output(one_line_warnings=False):
        return _train(task, data, out, model_config, train_config, pretrained=pretrained,
                      backbone_weights=backbone_weights and str(backbone_weights), resume=resume, progress=progress,
                      test=test, data_options=data_options)


def evaluate(checkpoint: str | Path, data: str | Path, *, split: str = "test",
             backbone_weights: str | Path | None = None, batch_size: int = 2, progress: bool = True,
             task: str | Task | None = None, **options: Any) -> dict:
    """The metrics of an adapter file on a split of a prepared cache: the dict ``lavish eval --json`` prints."""
    from lavish.quiet import user_facing_output
    from lavish.engine.train import evaluate as _evaluate

    with user_facing_output(one_line_warnings=False):
        return _evaluate(checkpoint, data, split=split, backbone_weights=backbone_weights and str(backbone_weights),
                         batch_size=batch_size, progress=progress, task=task, **options)


def prepare(task: str, root: str | Path, out: str | Path, *, backbone: str | None = None, workers: int = 1,
            progress: bool = False, **options: Any) -> dict:
    """Decode a dataset in its official layout once into a prepared cache (``lavish prepare TASK``).

    ``backbone`` (default: the CLI's, :data:`lavish.models.task_config.DEFAULT_BACKBONE`) sets the frame size and the
    audio front-end; ``options``: the task's own prepare options (AVS ``subset``, AVE ``extra_audio_features``...).
    Resumable: call again after an interruption. Returns {task, out, backbone, frame_size, frontend, videos,
    prepared, skipped, failed: {video: reason}, without_audio, items, seconds, summary}.
    """
    from lavish.engine.registry import get_task
    from lavish.media.audio import get_frontend
    from lavish.models.task_config import DEFAULT_BACKBONE

    if backbone is None:
        backbone = DEFAULT_BACKBONE
    if not isinstance(workers, int) or workers < 1:
        raise ConfigError(f"workers={workers!r} is not valid: it must be at least 1 (lavish prepare: --workers)")
    found = get_task(task)
    allowed = {o.dest for o in found.options if "prepare" in o.commands}
    unknown = sorted(set(options) - allowed)
    if unknown:
        raise ConfigError(f"prepare {found.name} takes no option {unknown[0]!r}: it takes "
                          f"{', '.join(sorted(allowed)) or 'none'}")
    spec = found.input_spec(backbone)
    report = found.prepare(Path(root), Path(out), frame_size=spec.frame_size,
                           frontend=get_frontend(spec.audio_frontend), workers=workers, progress=progress,
                           **{k: v for k, v in options.items() if v is not None})
    data = {k: getattr(report, k) for k in ("videos", "prepared", "skipped", "without_audio", "items", "seconds")
            if hasattr(report, k)}
    return {"task": found.name, "out": str(report.out), "backbone": backbone, "frame_size": list(spec.frame_size),
            "frontend": spec.audio_frontend, **data, "failed": dict(report.failed), "usable": report.usable,
            "summary": report.summary()}


def info(task: str = "ave", model_config: Any = None, **settings: Any) -> dict:
    """Trainable / frozen / total parameters and GFLOPs per segment of a task model, without building its weights
    or downloading anything: the dict ``lavish info --json`` prints ({task, adapter, backbone, trainable_params,
    adapter_params, head_params, frozen_params, total_params, ..., backbone_gflops, adapter_gflops}).

    ``model_config``: the task's model config; else one built from ``settings`` (its fields; ``adapter`` may be a
    kind name, with the task's preset, or an AdapterConfig).
    """
    import torch

    from lavish.engine.registry import get_task
    from lavish.media.audio import get_frontend
    from lavish.models.accounting import account

    found = get_task(task)
    if model_config is None:
        if isinstance(settings.get("adapter"), str):
            settings["adapter"] = adapter_config(settings["adapter"], preset=found.preset)
        fields = {f.name for f in dataclasses.fields(found.model_config_cls)}
        unknown = sorted(set(settings) - fields)
        if unknown:
            raise ConfigError(f"{found.model_config_cls.__name__} has no field {unknown[0]!r}: it has "
                              f"{', '.join(sorted(fields))}")
        model_config = found.model_config_cls(**settings)
    elif settings:
        raise ConfigError("give either model_config or settings, not both")
    spec = found.input_spec(model_config.backbone)
    with torch.device("meta"):
        model = found.model_cls(model_config)
    inputs = found.info_inputs(model_config, get_frontend(spec.audio_frontend), spec.frame_size)
    acc = account(model, model_config.backbone, inputs)
    return {"task": found.name, "adapter": model.backbone.adapter_config.to_dict(), **acc.to_dict()}


def synthetic(task: str, out: str | Path, **options: Any) -> Path:
    """Write a small synthetic dataset of ``task`` in its official layout (real mp4 files with sound) into ``out``,
    ready for :func:`prepare`: what ``lavish demo`` trains on. ``options`` are those of the task's generator:
    AVE ``num_videos``, ``num_classes``, ``duration_s``, ``size``, ``seed``, ``workers``; AVS ``num_videos``,
    ``num_classes``, ``objects_per_clip``, ``size``, ``seed``, ``subset``; AVQA ``num_videos``,
    ``num_instruments``, ``duration_s``, ``size``, ``seed``, ``workers``; AVVP ``num_train``, ``num_val``,
    ``num_test``, ``num_classes``, ``size``, ``seed``, ``workers``. Returns the dataset folder."""
    import inspect

    from lavish.engine.registry import get_task

    found = get_task(task)
    make = found.synthetic
    if make is None:
        raise ConfigError(f"task {found.name} has no synthetic dataset generator")
    params = [p for p in inspect.signature(make).parameters.values() if p.kind is p.KEYWORD_ONLY]
    unknown = sorted(set(options) - {p.name for p in params})
    if unknown:
        raise ConfigError(f"synthetic({found.name!r}) takes no option {unknown[0]!r}: it takes "
                          f"{', '.join(p.name for p in params)}")
    return Path(make(Path(out), **options))


def demo(task: str = "ave", out: str | Path = "lavish-demo", *, videos: int | None = None, classes: int = 4,
         epochs: int | None = None, backbone: str | None = None, seed: int = 0, workers: int = 2,
         progress: bool = False) -> dict:
    """``lavish demo TASK``: a task end to end on a synthetic dataset (generate, prepare, train, evaluate, predict)
    into ``out``. ``videos`` / ``epochs`` default to the task's (AVE 48 / 6). Returns {task, out, exit_code, results}
    with ``results`` the demo's results file (the test metrics of each run it trained)."""
    from lavish.engine.registry import get_task
    from lavish.engine.task import DemoOptions
    from lavish.quiet import user_facing_output

    found = get_task(task)
    given = {"videos": videos, "epochs": epochs}
    values = {**found.demo_defaults, **{k: v for k, v in given.items() if v is not None}, "classes": classes,
              "workers": workers}
    for name, value in values.items():
        if not isinstance(value, int) or value < 1:
            raise ConfigError(f"{name}={value!r} is not valid: it must be at least 1 (lavish demo: --{name})")
    options = DemoOptions(out=Path(out), videos=values["videos"], classes=classes, epochs=values["epochs"],
                          backbone=backbone, seed=seed, workers=workers, progress=progress)
    with user_facing_output(one_line_warnings=False):
        code = found.demo(options)
    results = next((Path(out) / n for n in ("results.json", f"{found.name}-results.json")
                    if (Path(out) / n).is_file()), None)
    return {"task": found.name, "out": str(out), "exit_code": int(code or 0),
            "results": json.loads(results.read_text()) if results else None}


def bench(*, task: str = "ave", **options: Any) -> dict:
    """``lavish bench``: training-step time and memory of the adapter methods against the frozen-backbone floor
    (docs/performance.md). ``options`` are the command's options by their Python names (``backbone``, ``videos``,
    ``variants`` (comma-separated), ``repeats``, ``precision``, ``memory``, ``eval``, ``kernels_only``, ``device``,
    ``out``, ``plot``, ``data``...). Writes the JSON file and plot as the command does; returns its JSON object
    (``variants``: name -> measurements)."""
    import argparse
    import contextlib
    import io

    from lavish.benchmarking import step as benchmark

    parser = argparse.ArgumentParser()
    benchmark.add_arguments(parser)
    args = parser.parse_args([])
    unknown = sorted(k for k in options if not hasattr(args, k) or k == "json")
    if unknown:
        raise ConfigError(f"bench takes no option {unknown[0]!r}: it takes "
                          f"{', '.join(sorted(k for k in vars(args) if k != 'json'))}")
    for key, value in options.items():
        setattr(args, key, value)
    args.task, args.json = task, True
    with contextlib.redirect_stdout(io.StringIO()):
        return run_bench(args)


def run_bench(args: Any) -> dict:
    """:func:`bench` of parsed ``lavish bench`` options (what the command runs): checks them, measures, prints the
    table (or the JSON with ``args.json``) and returns the result."""
    from lavish.benchmarking import step as benchmark
    from lavish.engine.registry import input_spec

    if args.task != benchmark.TASK:
        raise ConfigError(f"bench measures the {benchmark.TASK.upper()} training step, not {args.task!r}: "
                          f"task={benchmark.TASK!r}")
    if args.videos < 1 or args.repeats < 1:
        raise ConfigError(f"videos={args.videos} / repeats={args.repeats} (--videos / --repeats): both must be at "
                          "least 1")
    try:
        benchmark.config_from_args(args)
    except ValueError as err:
        raise ConfigError(str(err)) from None
    input_spec(args.backbone, args.task)  # unknown backbone -> one-line ConfigError
    return benchmark.main_from_args(args)


__all__ = ["TrainedModel", "adapter_config", "bench", "demo", "evaluate", "info", "load", "load_adapter", "load_inputs",
           "prepare", "read_adapter_file", "save_adapter", "synthetic", "train", "trainable_parameters", "wrap"]

