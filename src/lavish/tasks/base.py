"""The one Task interface: what a task (AVE, AVS, AVQA, ...) says about itself, and the plumbing every task shares.

A task is a :class:`Task` subclass in one module (``lavish/tasks/<name>.py``), registered in
:data:`lavish.tasks.registry.TASKS`. It brings, in one place:

* its data: the preparer of its official layout (``prepare``), the Lightning data module of a prepared cache
  (``data_module_cls``, a :class:`~lavish.tasks.runner.SplitDataModule` with its collate);
* its model: ``model_config_cls`` / ``model_cls`` (``lavish.models``), what the cache fixes in the model config
  (:meth:`Task.fit_model_config`: classes, vocabularies, mask size) and what it records in the adapter file's meta;
* its training: the forward of a batch, the loss, the metrics (one of them monitored for model selection), the
  optimiser, the ``train_config_cls`` (defaults = the authors' recipe), the results.json keys;
* its evaluation (:meth:`Task.evaluation`: an accumulator fed batch by batch, then a result dict) and the lines
  ``lavish eval`` prints;
* its prediction on a user's own video (:meth:`Task.predict`: plain Python / numpy results, the same the CLI prints);
* its command-line options (:class:`Option`: data, not argparse calls, so this layer does not import the CLI);
* its demo on synthetic data in its official layout.

What is shared lives here once: :class:`TaskModule` (the LightningModule of every task), :func:`train` (run folder,
Trainer, export of the best adapter file, final test evaluation, results.json), :func:`evaluate`, :func:`load`.
``lavish train|eval|predict|info|demo`` dispatch through the registry (:mod:`lavish.cli`); docs/tasks.md says how a
new task is added.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, ClassVar

import lightning as L
import torch
from torch import nn
from torch.utils.data import DataLoader

from lavish.errors import CheckpointError, ConfigError, LavishError
from lavish.models.adapters import MODALITIES
from lavish.tasks.checkpointing import ExportBest
from lavish.tasks.runner import (ADAPTER_FILE, NonFiniteLoss, SplitDataModule, TrainableCheckpoints, TrainConfig,
                                 check_run_dir, compiled_for_training, last_checkpoint, make_trainer, record_run,
                                 write_results)

if TYPE_CHECKING:  # pragma: no cover
    from torchmetrics import Metric


@dataclass(frozen=True)
class Option:
    """A task's own command-line option (also a key of ``--config`` YAML files).

    ``flags`` and ``kwargs`` are what ``argparse.add_argument`` takes (``default`` must stay None, so that the CLI
    can tell "not given" from a value: command line > YAML > defaults). ``commands`` says which commands take it.
    The value lands in the field of the train config or the model config whose name is the option's ``dest``, or
    the task turns it into model settings in :meth:`Task.model_settings`.
    """

    flags: tuple[str, ...]
    kwargs: dict = field(default_factory=dict)
    commands: tuple[str, ...] = ("train",)

    @property
    def dest(self) -> str:
        return self.kwargs.get("dest") or self.flags[0].lstrip("-").replace("-", "_")


@dataclass
class TrainResult:
    """What :func:`train` returns (the same numbers are in the run folder's results.json)."""

    task: str
    run_dir: Path
    adapter: Path
    monitor: str
    """the validation metric that selected the best epoch, e.g. ``val/acc``"""
    best_epoch: int | None
    best_value: float | None
    test: dict | None
    """:func:`evaluate` of the best adapter file on the test split (None when not asked or nothing was exported)"""
    epochs_run: int
    seconds: float


class Evaluation:
    """Accumulates a split's model outputs batch by batch; :meth:`result` is the dict ``lavish eval`` prints."""

    def update(self, output: Any, batch: dict) -> None:  # pragma: no cover - interface
        raise NotImplementedError

    def result(self) -> dict:  # pragma: no cover - interface
        raise NotImplementedError


@dataclass
class DemoOptions:
    """Settings of ``lavish demo TASK`` (the same for every task)."""

    out: Path
    videos: int = 48
    classes: int = 4
    epochs: int = 6
    backbone: str | None = None
    """None: the task's own demo backbone"""
    seed: int = 0
    workers: int = 2
    progress: bool = True


class Task:
    """Everything one task brings (see the module doc). Subclasses set the class attributes and override what
    their task does differently; the defaults fit a per-segment task on (audio, frames)."""

    name: ClassVar[str]
    title: ClassVar[str]
    """one line for ``--help``"""
    unit: ClassVar[str] = "videos"
    """what one batch element is"""
    model_config_cls: ClassVar[type]
    model_cls: ClassVar[type[nn.Module]]
    train_config_cls: ClassVar[type[TrainConfig]] = TrainConfig
    data_module_cls: ClassVar[type[SplitDataModule]]
    prepare: ClassVar[Callable[..., Any]]
    """``prepare(root, out, *, frame_size, frontend, workers, progress, **options) -> PrepareReport``"""
    monitor: ClassVar[str] = "acc"
    """name (in :meth:`metrics`) of the validation metric that selects the best epoch (higher is better)"""
    summary: ClassVar[tuple[tuple[str, str], ...]] = (("accuracy", "accuracy"),)
    """(key of the evaluation result, title) printed after training; the first titles the monitored value"""
    modalities: ClassVar[tuple[str, ...]] = MODALITIES
    """streams the task can run with (``--modalities``)"""
    options: ClassVar[tuple[Option, ...]] = ()
    data_options: ClassVar[tuple[str, ...]] = ()
    """dests of :attr:`options` that go to :meth:`data_module` (e.g. AVS ``subset``), not to a config"""
    adapter_preset: ClassVar[str | None] = None
    """the adapter preset (:data:`lavish.models.adapters.PRESETS`) the task's models start from; None: its name"""
    lr_help: ClassVar[str] = "learning rate of everything trainable"
    predict_outputs: ClassVar[tuple[str, ...]] = ()
    """what :meth:`predict` can write besides its result: "plot" (a PNG per video), "out" (a folder of files)"""
    eval_loss: ClassVar[bool] = True
    """log the loss on validation / test batches too"""
    find_unused_parameters: ClassVar[bool] = False
    """DDP: tolerate trainable parameters without gradient (modules the authors count but never use)"""
    demo_backbone: ClassVar[str] = "lavish_vit_micro_patch8_64"
    demo_defaults: ClassVar[dict[str, int]] = {"videos": 48, "epochs": 6}
    """``lavish demo TASK`` settings where the command line gives none"""
    real_run: ClassVar[str] = ""
    """what the demo prints at the end: how to run the task on the real dataset"""

    @property
    def description(self) -> str:
        """The task module's docstring (the recipe and where we differ from the authors): ``--help`` text."""
        import sys

        return sys.modules[type(self).__module__].__doc__ or self.title

    @property
    def preset(self) -> str:
        """Name of the adapter preset that ``--preset`` defaults to for this task."""
        return self.adapter_preset or self.name

    # ------------------------------------------------------------------------------------------------- data
    def data_module(self, data: str | Path, *, backbone: str, batch_size: int, seed: int = 0, num_workers: int = 0,
                    model_config: Any = None, meta: dict | None = None) -> SplitDataModule:
        """The data module of a prepared cache. ``model_config`` / ``meta`` (an adapter file's) are given when a
        trained model is evaluated, so that the task can read what the model needs (e.g. extra features)."""
        return self.data_module_cls(data, backbone=backbone, batch_size=batch_size, seed=seed,
                                    num_workers=num_workers)

    def collate(self, items: list[dict]) -> dict:
        return type(self).data_module_cls.COLLATE(items)

    def fit_model_config(self, model_config: Any, dm: SplitDataModule) -> tuple[Any, dict]:
        """(model config completed from the cache, task part of the adapter file's meta). Default: as given."""
        return model_config, {}

    def check_model_data(self, model: nn.Module, meta: dict, dm: SplitDataModule, checkpoint: Path) -> None:
        """Refuse a cache that does not fit a trained model (other classes, mask size...). Default: nothing."""

    # ------------------------------------------------------------------------------------------------ model
    def model_settings(self, values: dict) -> dict:
        """Task options (dest -> value, only those given) -> model config fields. Default: same names."""
        return values

    def build_model(self, model_config: Any, *, pretrained: bool = False, backbone_weights: str | None = None,
                    backbone: nn.Module | None = None) -> nn.Module:
        return self.model_cls(model_config, pretrained=pretrained, backbone_weights=backbone_weights,
                              timm_model=backbone)

    def info_inputs(self, model_config: Any, frontend, frame_size: tuple[int, int]) -> tuple[torch.Tensor, ...]:
        """Model inputs of one 1-second segment on the meta device (``lavish info`` counts FLOPs on them)."""
        return (torch.zeros(1, 1, frontend.target_frames, frontend.num_mel_bins, device="meta"),
                torch.zeros(1, 1, 3, *frame_size, device="meta"))

    def forward(self, model: nn.Module, batch: dict) -> Any:
        """The model's output on a collated batch (frames arrive uint8 and are normalised here)."""
        raise NotImplementedError

    def loss(self, output: Any, batch: dict) -> torch.Tensor:
        """Training loss (a scalar; NaN, never an exception, when the output is not finite)."""
        raise NotImplementedError

    def model_loss(self, model: nn.Module, output: Any, batch: dict) -> torch.Tensor:
        """The loss :class:`TaskModule` uses: :meth:`loss`, unless the objective has settings in the model config."""
        return self.loss(output, batch)

    def batch_size(self, batch: dict) -> int:
        return int(batch["frames"].shape[0])

    def metrics(self, stage: str, model: nn.Module) -> dict[str, "Metric"]:
        """torchmetrics of a stage ("train", "val", "test") for ``model``, logged as ``<stage>/<name>``."""
        return {}

    def update_metrics(self, metrics: dict[str, "Metric"], output: Any, batch: dict) -> None:
        raise NotImplementedError

    def configure_optimizers(self, module: "TaskModule"):
        """Default: Adam at ``lr`` over every trainable parameter, no scheduler (the authors' AVS recipe)."""
        return torch.optim.Adam([p for p in module.model.parameters() if p.requires_grad],
                                lr=module.train_config.lr)

    def results(self, result: TrainResult) -> dict:
        """results.json of a run (keys are a contract for scripts)."""
        return {"best_epoch": result.best_epoch, f"best_{result.monitor.replace('/', '_')}": result.best_value,
                "test": result.test, "epochs_run": result.epochs_run, "seconds": round(result.seconds, 1)}

    def train_lines(self, result: TrainResult) -> list[str]:
        """What ``lavish train`` prints at the end: the best validation value and the test :attr:`summary`."""
        best = "none" if result.best_value is None else f"{result.best_value:.4f}"
        test = result.test or {}
        tests = ", ".join(f"{title} {test[key]:.4f}" if key in test else f"{title} none" for key, title in self.summary)
        return [f"best validation {self.summary[0][1]} {best} at epoch {result.best_epoch}; test {tests}; adapter file "
                f"{result.adapter} ({result.seconds:.0f} s)"]

    def demo_cache(self, data: Path, cache: Path, backbone: str, options: "DemoOptions", step: str) -> None:
        """The demo's prepare step: ``data`` (the synthetic dataset) into ``cache`` for ``backbone``, unless done."""
        from lavish.media.audio import get_frontend
        from lavish.models.input_spec import input_spec

        spec = input_spec(backbone, self.name)
        print(f"[{step}] prepare -> {cache}")
        if not (cache / "manifest.json").exists():
            report = self.prepare(data, cache, frame_size=spec.frame_size, frontend=get_frontend(spec.audio_frontend),
                                  workers=options.workers, progress=options.progress)
            print("      " + report.summary().replace("\n", "\n      "))

    # ------------------------------------------------------------------------------------------- evaluation
    def evaluation(self, model: nn.Module, meta: dict, dm: SplitDataModule, split: str, **options) -> Evaluation:
        raise NotImplementedError

    def eval_lines(self, result: dict) -> list[str]:
        """What ``lavish eval`` prints (without ``--json``)."""
        raise NotImplementedError

    # ------------------------------------------------------------------------------------------- prediction
    def predict(self, model: nn.Module, meta: dict, video: str | Path, **options) -> dict:
        """Run the model on a user's video: a JSON-able dict (numpy arrays only under keys documented so)."""
        raise ConfigError(f"{self.name.upper()} models do not predict on a video with `lavish predict`")

    def predict_lines(self, result: dict) -> list[str]:
        raise NotImplementedError

    # ------------------------------------------------------------------------------------------------ demo
    def demo(self, options: DemoOptions) -> int:
        raise ConfigError(f"task {self.name} has no demo")


# ------------------------------------------------------------------------------------------- LightningModule
class TaskModule(TrainableCheckpoints, L.LightningModule):
    """The LightningModule of every task: the task's model, loss, metrics and optimiser, and nothing else."""

    def __init__(self, task: str, model_config: dict, train_config: dict, pretrained: bool = False,
                 backbone_weights: str | None = None) -> None:
        super().__init__()
        from lavish.tasks.registry import get_task

        self.save_hyperparameters()
        self.task = get_task(task)
        config = self.task.model_config_cls.from_dict(model_config)
        self.model = self.task.build_model(config, pretrained=pretrained, backbone_weights=backbone_weights)
        self.train_config = self.task.train_config_cls(**train_config)
        # one ModuleDict per stage ("train" cannot be a ModuleDict key: it is a method of every Module)
        self.train_metrics = nn.ModuleDict(self.task.metrics("train", self.model))
        self.val_metrics = nn.ModuleDict(self.task.metrics("val", self.model))
        self.test_metrics = nn.ModuleDict(self.task.metrics("test", self.model))

    def forward(self, batch: dict) -> Any:
        return self.task.forward(self._step_model() if self.training else self.model, batch)

    def _step_model(self) -> nn.Module:
        """The model a training step runs: ``self.model``, or under ``compile_step`` the same model compiled whole
        (built on first use, kept outside the module tree so that checkpoints and devices see one model)."""
        mode = self.train_config.compile_step
        if mode == "none":
            return self.model
        compiled = self.__dict__.get("_compiled_model")
        if compiled is None:
            compiled = self.__dict__["_compiled_model"] = compiled_for_training(self.model, mode)
        if mode == "cuda-graphs":
            torch.compiler.cudagraph_mark_step_begin()  # the previous step's graph outputs may be overwritten
        return compiled

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        out = self(batch)
        loss = self.task.model_loss(self.model, out, batch)
        if not torch.isfinite(loss):
            raise NonFiniteLoss(
                f"training loss is not finite at step {self.global_step} (epoch {self.current_epoch}): {loss.item()}; "
                "stopped, the last good checkpoint is kept in the run's checkpoints/ folder"
            )
        bs = self.task.batch_size(batch)
        self.log("train/loss", loss, prog_bar=True, batch_size=bs)
        self._log_metrics("train", out, batch, bs)
        return loss

    def _log_metrics(self, stage: str, out: Any, batch: dict, bs: int) -> None:
        metrics = getattr(self, f"{stage}_metrics")
        if not len(metrics):
            return
        self.task.update_metrics(metrics, out, batch)
        for name, metric in metrics.items():
            self.log(f"{stage}/{name}", metric, prog_bar=name == self.task.monitor, batch_size=bs,
                     on_step=False, on_epoch=True)

    def _eval_step(self, batch: dict, stage: str) -> None:
        out = self(batch)
        bs = self.task.batch_size(batch)
        if self.task.eval_loss:
            self.log_mean(f"{stage}/loss", self.task.model_loss(self.model, out, batch), batch_size=bs)
        self._log_metrics(stage, out, batch, bs)

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self._eval_step(batch, "val")

    def test_step(self, batch: dict, batch_idx: int) -> None:
        self._eval_step(batch, "test")

    def configure_optimizers(self):
        return self.task.configure_optimizers(self)


# ------------------------------------------------------------------------------------------------ functions
def head_and_adapter_groups(model: nn.Module, lr_head: float, lr: float) -> list[dict]:
    """Optimiser parameter groups: ``model.head``'s trainable parameters at ``lr_head``, every other trainable
    parameter (adapters, trainable norms) at ``lr`` (the group is left out when there is none)."""
    head = [p for p in model.head.parameters() if p.requires_grad]
    head_ids = {id(p) for p in head}
    rest = [p for p in model.parameters() if p.requires_grad and id(p) not in head_ids]
    groups = [{"params": head, "lr": lr_head, "name": "head"}]
    if rest:
        groups.append({"params": rest, "lr": lr, "name": "adapters"})
    return groups


def resolve_task(task: "str | Task") -> Task:
    from lavish.tasks.registry import get_task

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
                        backbone_weights)
    module.model.backbone.checkpointing = model_config.checkpointing
    module.model.backbone.fused_adapters = model_config.fused_adapters
    monitor = f"val/{task.monitor}"
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
    from lavish.tasks.registry import TASKS, get_task

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


def check_modalities(task: Task, modalities: str) -> None:
    if modalities not in task.modalities:
        raise ConfigError(f"--modalities {modalities} is not valid for {task.name.upper()}: choose "
                          f"{' or '.join(task.modalities)}")
