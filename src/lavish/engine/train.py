"""Training, loading and evaluation of any task: :func:`train`, :func:`load`, :func:`evaluate`."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

import lightning as L
import torch
from torch import nn
from torch.utils.data import DataLoader

from lavish.engine.module import TaskModule
from lavish.engine.registry import TASKS, get_task
from lavish.engine.resume import ExportBest
from lavish.engine.runner import (ADAPTER_FILE, TrainConfig, check_run_dir, last_checkpoint, make_trainer, record_run,
                                  write_results)
from lavish.engine.task import Task, TrainResult
from lavish.errors import CheckpointError, ConfigError, LavishError


def resolve_task(task: "str | Task") -> Task:
    return task if isinstance(task, Task) else get_task(task)


def train(task: "str | Task", data: str | Path, out: str | Path, model_config: Any, train_config: TrainConfig, *,
          pretrained: bool = False, backbone_weights: str | None = None, resume: bool = False,
          progress: bool = True, test: bool = True, data_options: dict | None = None) -> TrainResult:
    """Train ``task``'s model on a prepared cache into the run folder ``out``.

    The model config is completed from the cache (classes, vocabularies, mask size: :meth:`Task.fit_model_config`);
    ``run.json`` records the settings; the best validation epoch's adapter file is ``out/best.safetensors``;
    ``resume`` continues from ``out/checkpoints/last.ckpt`` to the result an uninterrupted run gives; ``test``
    evaluates the best adapter file on the test split at the end; ``data_options`` go to the task's data module
    (:attr:`Task.data_options`). Returns a :class:`TrainResult`.
    """
    task = resolve_task(task)
    start = time.monotonic()
    if train_config.compile_step != "none" and model_config.fused_adapters not in (False, "none"):
        raise ConfigError("--compile-step compiles the whole training step, the adapters included: give it without "
                          "--fused-adapters")
    if train_config.compile_step != "none" and model_config.checkpointing not in (False, None, "none"):
        raise ConfigError("--compile-step does not compile activation checkpointing (its recomputation keeps the "
                          "adapters' BatchNorm statistics in a way torch.compile cannot trace): give one of "
                          "--compile-step, --checkpointing")
    out = check_run_dir(out, resume)
    L.seed_everything(train_config.seed, workers=True, verbose=False)
    dm = task.data_module(data, backbone=model_config.backbone, batch_size=train_config.batch_size,
                          seed=train_config.seed, num_workers=train_config.num_workers, model_config=model_config,
                          **(data_options or {}))
    model_config, task_meta = task.fit_model_config(model_config, dm)
    meta = {"task": task.name, **task_meta, "pretrained": pretrained, "backbone_weights": backbone_weights,
            "frontend": dm.manifest["frontend"]["name"], "frame_size": dm.manifest["frame_size"],
            "num_segments": dm.manifest["num_segments"]}
    record_run(out, resume, model=model_config.to_dict(), train=train_config, data=data, meta=meta)
    module = TaskModule(task.name, model_config.to_dict(), dataclasses.asdict(train_config), pretrained,
                        backbone_weights, runtime=model_config.runtime())
    monitor = f"val/{task.monitored(model_config)}"
    export = ExportBest(out / ADAPTER_FILE, monitor, meta)
    trainer = make_trainer(out, train_config, export, progress=progress,
                           find_unused_parameters=task.find_unused_parameters)
    trainer.fit(module, datamodule=dm, ckpt_path=str(last_checkpoint(out)) if resume else None)
    test_result = None
    if test and trainer.is_global_zero and (out / ADAPTER_FILE).exists():
        test_result = evaluate(out / ADAPTER_FILE, data, split="test", backbone_weights=backbone_weights,
                               progress=False, task=task)
    result = TrainResult(task.name, out, out / ADAPTER_FILE, monitor, export.best_epoch, export.best, test_result,
                         trainer.current_epoch, time.monotonic() - start)
    write_results(out, trainer, task.results(result))
    return result


def load(checkpoint: str | Path, *, task: "str | Task | None" = None, backbone_weights: str | None = None,
         backbone: nn.Module | None = None) -> tuple[Task, nn.Module, dict]:
    """(task, model in eval mode, meta) rebuilt from an adapter file (its config and meta are inside it).

    The frozen backbone comes from ``backbone`` (an already-built timm model of the file's backbone), else from
    ``backbone_weights`` (a local timm checkpoint), else as the file records (timm's hub when the run was
    pretrained, the seeded random init when not). ``task``: refuse a file of another task. A file without a task
    in its meta is an AVE one (the first files we wrote).
    """
    from lavish.models.weights import load_adapter_into, read_adapter

    config, meta, _ = read_adapter(checkpoint)
    found = meta.get("task", "ave")
    if found not in TASKS:
        raise CheckpointError(f"checkpoint {checkpoint} is for task {found!r}, which this lavish does not know "
                              f"(it knows {', '.join(TASKS)})")
    file_task = get_task(found)
    if task is not None and resolve_task(task).name != found:
        raise CheckpointError(f"checkpoint {checkpoint} is a {found!r} model, not an {resolve_task(task).name.upper()} one")
    try:
        model_config = file_task.model_config_cls.from_dict(config)
    except (TypeError, KeyError, ValueError, AttributeError, LavishError) as err:
        raise CheckpointError(f"checkpoint {checkpoint} holds an unusable model configuration ({err})") from None
    weights = backbone_weights or meta.get("backbone_weights")
    model = file_task.build_model(model_config, pretrained=bool(meta.get("pretrained")), backbone_weights=weights,
                                  backbone=backbone)
    load_adapter_into(model, checkpoint)  # built from the file's own config: only the tensors are checked
    return file_task, model.eval(), meta


def evaluate(checkpoint: str | Path, data: str | Path, *, split: str = "test", backbone_weights: str | None = None,
             batch_size: int = 2, progress: bool = True, task: "str | Task | None" = None, **options) -> dict:
    """Evaluate an adapter file on a split of a prepared cache: the task's result dict (``lavish eval --json``).

    ``options`` go to the task's :meth:`Task.evaluation` (e.g. AVE's ``confusion_png``).
    """
    task, model, meta = load(checkpoint, task=task, backbone_weights=backbone_weights)
    return evaluate_model(task, model, meta, data, split=split, batch_size=batch_size, progress=progress,
                          source=checkpoint, **options)


@torch.no_grad()
def evaluate_model(task: Task, model: nn.Module, meta: dict, data: str | Path, *, split: str = "test",
                   batch_size: int = 2, progress: bool = True, source: str | Path = "the model", **options) -> dict:
    """:func:`evaluate` of a loaded model (its adapter file's ``meta``); ``source`` names it in errors."""
    from tqdm import tqdm

    if not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigError(f"batch_size={batch_size!r} is not valid: it must be a positive integer")
    dm = task.data_module(data, backbone=model.config.backbone, batch_size=batch_size, model_config=model.config,
                          meta=meta)
    task.check_model_data(model, meta, dm, Path(source))
    ds = dm.dataset(split)
    ev = task.evaluation(model, meta, dm, split, **options)
    loader = DataLoader(ds, batch_size=batch_size, collate_fn=task.collate)
    for batch in tqdm(loader, desc=f"eval {split}", disable=not progress, leave=False):
        ev.update(task.forward(model, batch), batch)
    return ev.result()
