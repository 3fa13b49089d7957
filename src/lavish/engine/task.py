"""The one Task interface: what a task (AVE, AVS, AVQA, ...) says about itself, and the plumbing every task shares.

A task is a :class:`Task` subclass in one module (``lavish/tasks/<name>.py``), registered in
:data:`lavish.engine.registry.TASKS`. It brings, in one place:

* its data: the preparer of its official layout (``prepare``), the Lightning data module of a prepared cache
  (``data_module_cls``, a :class:`~lavish.engine.runner.SplitDataModule` with its collate);
* its model: ``model_config_cls`` / ``model_cls`` (``lavish.models``), what the cache fixes in the model config
  (:meth:`Task.fit_model_config`: classes, vocabularies, mask size) and what it records in the adapter file's meta;
* its training: the forward of a batch, the loss, the metrics (one of them monitored for model selection), the
  optimiser, the ``train_config_cls`` (defaults = the authors' recipe), the results.json keys;
* its evaluation (:meth:`Task.evaluation`: an accumulator fed batch by batch, then a result dict) and the lines
  ``lavish eval`` prints;
* its prediction on a user's own video (:meth:`Task.predict`: plain Python / numpy results, the same the CLI prints);
* its command-line options (:class:`Option`: data, not argparse calls, so this layer does not import the CLI);
* its demo on synthetic data in its official layout.

What is shared lives once in :mod:`lavish.engine`: :class:`~lavish.engine.module.TaskModule` (the LightningModule
of every task), :func:`~lavish.engine.train.train` (run folder, Trainer, export of the best adapter file, final test
evaluation, results.json), :func:`~lavish.engine.train.evaluate`, :func:`~lavish.engine.train.load`.
``lavish train|eval|predict|info|demo`` dispatch through the registry (:mod:`lavish.cli`); docs/tasks.md says how a
new task is added.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, ClassVar

import torch
from torch import nn

from lavish.engine.runner import SplitDataModule, TrainConfig
from lavish.errors import ConfigError

if TYPE_CHECKING:  # pragma: no cover
    from torchmetrics import Metric

    from lavish.engine.module import TaskModule


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



#: ``--min-duration S``, the predict option of the tasks that give events as time ranges (AVE, AVVP)
MIN_DURATION = Option(("--min-duration",), {"type": float, "metavar": "S",
                                            "help": "leave out events shorter than S seconds (default 0: all)"},
                      commands=("predict",))

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


class Evaluation(ABC):
    """Accumulates a split's model outputs batch by batch; :meth:`result` is the dict ``lavish eval`` prints."""

    @abstractmethod
    def update(self, output: Any, batch: dict) -> None:
        """Add one batch's model output."""

    @abstractmethod
    def result(self) -> dict:
        """The split's result (JSON types)."""


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


class Task(ABC):
    """Everything one task brings (see the module doc). Subclasses set the class attributes and override what
    their task does differently; the defaults fit a per-segment task on (audio, frames)."""

    name: ClassVar[str]
    title: ClassVar[str]
    """one line for ``--help``"""
    order: ClassVar[int] = 100
    """place in the CLI's lists of tasks (lavish's own: 0-4; then by name)"""
    audio_frontend: ClassVar[str | None] = None
    """the audio front-end (:data:`lavish.media.audio.AUDIO_FRONTENDS`) of the task's cache; None: the task's name"""
    family_frontends: ClassVar[dict[str, str]] = {}
    """backbone family -> front-end where the family uses another one (the authors' ViT AVE front-end)"""
    unit: ClassVar[str] = "videos"
    """what one batch element is"""
    model_config_cls: ClassVar[type]
    model_cls: ClassVar[type[nn.Module]]
    train_config_cls: ClassVar[type[TrainConfig]] = TrainConfig
    data_module_cls: ClassVar[type[SplitDataModule]]
    prepare: ClassVar[Callable[..., Any]]
    """``prepare(root, out, *, frame_size, frontend, workers, progress, **options) -> PrepareReport``"""
    monitor: ClassVar[str] = "acc"
    """name (in :meth:`metrics`) of the validation metric that selects the best epoch (higher is better); a task
    whose metric depends on the model (a multi-label set's mAP) overrides :meth:`monitored`"""
    summary: ClassVar[tuple[tuple[str, str], ...]] = (("accuracy", "accuracy"),)
    """(key of the evaluation result, title) printed after training; the first titles the monitored value"""
    options: ClassVar[tuple[Option, ...]] = ()
    data_options: ClassVar[tuple[str, ...]] = ()
    """dests of :attr:`options` that go to :meth:`data_module` (e.g. AVS ``subset``), not to a config"""
    adapter_preset: ClassVar[str | None] = None
    """the adapter preset (:data:`lavish.models.adapters.PRESETS`) the task's models start from; None: its name"""
    lr_help: ClassVar[str] = "learning rate of everything trainable"
    prediction_cls: ClassVar[type | None] = None
    """the task's :class:`lavish.engine.predict.Prediction` (a video's prediction built window by window); None:
    the task does not predict on a video (AVQA answers questions)"""
    predict_outputs: ClassVar[tuple[str, ...]] = ()
    """what :meth:`predict` can write besides its result: "plot" (a PNG per video), "out" (a folder of files)"""
    eval_loss: ClassVar[bool] = True
    """log the loss on validation / test batches too"""
    find_unused_parameters: ClassVar[bool] = False
    """DDP: tolerate trainable parameters without gradient (modules the authors count but never use)"""
    demo_backbone: ClassVar[str] = "lavish_vit_micro_patch8_64"
    demo_defaults: ClassVar[dict[str, int]] = {"videos": 48, "epochs": 6}
    """``lavish demo TASK`` settings where the command line gives none"""
    synthetic: ClassVar[Callable[..., Any] | None] = None
    """``synthetic(out, **options) -> folder``: a small synthetic dataset in the task's official layout
    (:func:`lavish.synthetic`, the demo's data)"""
    demo_prepare_options: ClassVar[dict] = {}
    """options of :attr:`prepare` the demo's prepare step passes (e.g. fewer segments for short synthetic clips)"""
    demo_clips: ClassVar[str | None] = None
    """folder (under the demo's ``--out``) of the clips the demo made, offered as examples by ``lavish serve``"""
    real_run: ClassVar[str] = ""
    """what the demo prints at the end: how to run the task on the real dataset"""

    @property
    def description(self) -> str:
        """The task module's docstring (the recipe and where we differ from the authors): ``--help`` text."""
        import sys

        return sys.modules[type(self).__module__].__doc__ or self.title

    @property
    def modalities(self) -> tuple[str, ...]:
        """Streams the task can run with (``--modalities``): its model config's ``MODALITIES``."""
        return self.model_config_cls.MODALITIES

    @property
    def preset(self) -> str:
        """Name of the adapter preset that ``--preset`` defaults to for this task."""
        return self.adapter_preset or self.name

    # ------------------------------------------------------------------------------------------------- data
    def input_spec(self, backbone: str):
        """Frame size and audio front-end of ``backbone`` (a timm name) on this task (:mod:`lavish.models.input_spec`)."""
        from lavish.models.input_spec import backbone_input_spec

        return backbone_input_spec(backbone, self.audio_frontend or self.name, self.family_frontends)

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

    @abstractmethod
    def forward(self, model: nn.Module, batch: dict) -> Any:
        """The model's output on a collated batch (frames arrive uint8 and are normalised here)."""

    def loss(self, output: Any, batch: dict) -> torch.Tensor:
        """Training loss (a scalar; NaN, never an exception, when the output is not finite). A task overrides this,
        or :meth:`model_loss` where the objective has settings in the model config (AVVP's label smoothing)."""
        raise NotImplementedError(f"task {self.name} defines neither loss() nor model_loss()")

    def model_loss(self, model: nn.Module, output: Any, batch: dict) -> torch.Tensor:
        """The loss :class:`TaskModule` uses: :meth:`loss`, unless the objective has settings in the model config."""
        return self.loss(output, batch)

    def monitored(self, model_config: Any) -> str:
        """Name (in :meth:`metrics`) of the validation metric that selects the best epoch of a model with
        ``model_config``. Default: :attr:`monitor`."""
        return self.monitor

    def batch_size(self, batch: dict) -> int:
        return int(batch["frames"].shape[0])

    def metrics(self, stage: str, model: nn.Module) -> dict[str, "Metric"]:
        """torchmetrics of a stage ("train", "val", "test") for ``model``, logged as ``<stage>/<name>``."""
        return {}

    @abstractmethod
    def update_metrics(self, metrics: dict[str, "Metric"], output: Any, batch: dict) -> None:
        """Feed one batch to the stage's :meth:`metrics`."""

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

        spec = self.input_spec(backbone)
        print(f"[{step}] prepare -> {cache}")
        if not (cache / "manifest.json").exists():
            report = self.prepare(data, cache, frame_size=spec.frame_size, frontend=get_frontend(spec.audio_frontend),
                                  workers=options.workers, progress=options.progress, **self.demo_prepare_options)
            print("      " + report.summary().replace("\n", "\n      "))

    # ------------------------------------------------------------------------------------------- evaluation
    @abstractmethod
    def evaluation(self, model: nn.Module, meta: dict, dm: SplitDataModule, split: str, **options) -> Evaluation:
        """The accumulator of a split's evaluation (``options``: the task's eval options)."""

    @abstractmethod
    def eval_lines(self, result: dict) -> list[str]:
        """What ``lavish eval`` prints (without ``--json``)."""

    # ------------------------------------------------------------------------------------------- prediction
    def predict(self, model: nn.Module, meta: dict, video: str | Path, **options) -> dict:
        """Run the model on a user's video of any length, window by window (:attr:`prediction_cls`,
        :func:`lavish.engine.predict.predict_video`): a JSON-able dict (numpy arrays only under keys documented
        so). ``batch_size``: windows per model call; the other options are the prediction class's."""
        if self.prediction_cls is None:
            raise ConfigError(f"{self.name.upper()} models do not predict on a video with `lavish predict`")
        from lavish.engine.predict import predict_video

        return predict_video(self, model, meta, video, **options)

    def predict_lines(self, result: dict) -> list[str]:
        """What ``lavish predict`` prints (tasks that :meth:`predict`)."""
        raise ConfigError(f"{self.name.upper()} models do not predict on a video with `lavish predict`")

    # ------------------------------------------------------------------------------------------------ demo
    def demo(self, options: DemoOptions) -> int:
        raise ConfigError(f"task {self.name} has no demo")


def check_modalities(task: Task, modalities: str) -> None:
    if modalities not in task.modalities:
        raise ConfigError(f"--modalities {modalities} is not valid for {task.name.upper()}: choose "
                          f"{' or '.join(task.modalities)}")
