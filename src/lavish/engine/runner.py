"""What every task's training shares: settings validation, sharded split loaders, the run folder, the Lightning
Trainer, results.

A run folder holds ``run.json`` (model, training settings, data, meta; written once), ``checkpoints/last.ckpt``
(every epoch, no pickle; what ``--resume`` reads), ``best.safetensors`` (the adapter file of the best validation
epoch), ``logs/metrics.csv`` (+ TensorBoard if installed) and ``results.json``; lavish writes every file of it
through :mod:`lavish.fileio` (whole and durable, or the previous version). Tasks bring their
LightningModule (mixing in :class:`TrainableCheckpoints`), DataModule (a :class:`SplitDataModule`) and meta; the
loop, devices, precision, DDP and checkpoints are Lightning's, configured here once.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, ClassVar

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler

from lavish.data.cache import check_manifest
from lavish.errors import ConfigError, DataError, LavishError
from lavish.fileio import remove_stale_temp_files, write_json
from lavish.engine.registry import input_spec
from lavish.engine.resume import ExportBest, SafeCheckpointIO, rng_state, set_rng_state, trainable_state
from lavish.engine.sync_bn import AllReduceSyncBatchNorm

PRECISIONS = ("32", "bf16-mixed", "16-mixed")
#: ``compile_step`` settings (``lavish train --compile-step``): "none" runs the training step eagerly; "inductor"
#: compiles the task model's training forward as one graph (``torch.compile(fullgraph=True, dynamic=False)``: a graph
#: break is an error, not a silent split) and with it, through AOTAutograd, its backward; "cuda-graphs" compiles the
#: same graph with ``mode="reduce-overhead"``, which replays the forward and the backward as CUDA graphs (a CUDA GPU
#: only). Validation, test and prediction stay eager. True = "inductor".
COMPILE_STEP = ("none", "inductor", "cuda-graphs")
RUN_CONFIG = "run.json"
ADAPTER_FILE = "best.safetensors"
FROZEN_PREFIX = "model.backbone.backbone."


class NonFiniteLoss(LavishError):
    """The training loss (or the model output) became NaN or infinite."""


@dataclass
class TrainConfig:
    """Settings every task has; subclasses set the task's defaults and may add learning rates."""

    LR_FIELDS: ClassVar[tuple[str, ...]] = ("lr",)

    # metadata "help" makes a field an option of ``lavish train`` (and a key of its --config files): flag
    # --<name with dashes>, type and default from the field (the task's subclass sets the default), "choices" and
    # "const" (a flag that may be given bare) as argparse takes them; see lavish.cli.options
    epochs: int = field(default=50, metadata={"help": "training epochs (at most: early stopping may end sooner)"})
    batch_size: int = field(default=2, metadata={"help": "{unit} per step, over all devices"})
    """videos (or questions) per optimiser step, over all devices"""
    lr: float = field(default=5e-5, metadata={"help": "{lr_help}"})
    patience: int = field(default=5, metadata={"help": "early stopping patience in epochs"})
    seed: int = field(default=0, metadata={"help": "seed of the initialisation and the data order"})
    precision: str = field(default="32", metadata={"help": "numeric precision of training", "choices": PRECISIONS})
    devices: int = field(default=1, metadata={"help": "processes (CPU) or GPUs for DDP"})
    num_workers: int = field(default=0, metadata={"help": "data loader workers"})
    compile_step: str = field(default="none", metadata={
        "help": "compile each training step's forward and backward whole, backbone included (one graph, no host "
                "sync; the first step compiles, minutes); cuda-graphs: also replay it as CUDA graphs (a GPU only); "
                "bare --compile-step = inductor",
        "choices": COMPILE_STEP[1:], "const": "inductor"})
    """the training step compiled whole: one of :data:`COMPILE_STEP` (True = "inductor")"""

    def __post_init__(self) -> None:
        self.compile_step = compile_step_mode(self.compile_step)
        for name in ("epochs", "batch_size", "patience", "devices"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"{name.replace('_', '-')}={value!r} is not valid: it must be a positive integer")
        for name in self.LR_FIELDS:
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and 0 < value <= 1):
                raise ConfigError(f"{name.replace('_', '-')}={value!r} is not valid: it must be in (0, 1]")
        if self.precision not in PRECISIONS:
            raise ConfigError(f"precision={self.precision!r} is not valid: choose one of {', '.join(PRECISIONS)}")
        machine, precisions, most = device_limits()
        if self.precision not in precisions:
            raise ConfigError(f"precision={self.precision!r} cannot run on {machine}: it runs {', '.join(precisions)}")
        if self.devices > most:
            raise ConfigError(f"devices={self.devices} is not valid: {machine} has {most}")
        if self.batch_size % self.devices:
            raise ConfigError(f"batch-size={self.batch_size} is not divisible by devices={self.devices}: the batch "
                              "is global and split evenly over the processes")
        if self.num_workers < 0:
            raise ConfigError(f"num-workers={self.num_workers} is not valid: it must be >= 0")


def compile_step_mode(value: bool | str) -> str:
    """``compile_step=`` value -> one of :data:`COMPILE_STEP` (see :func:`lavish.models.backbone.compile_mode`)."""
    from lavish.models.backbone import compile_mode

    return compile_mode("compile-step", value, COMPILE_STEP)


def compiled_for_training(model: torch.nn.Module, mode: str, backend: str = "inductor") -> torch.nn.Module:
    """``model`` (a module, or a function of one) compiled whole for training steps (``mode``: "inductor" or
    "cuda-graphs", see :data:`COMPILE_STEP`): the returned module shares ``model``'s parameters and buffers
    (nothing is copied, state dicts keep their keys); the first call of each input shape compiles.

    Random ops (dropout) draw from torch's generator as in eager mode (inductor's ``fallback_random``), so a compiled
    run takes the eager run's dropout masks and resumes exactly from its RNG state; RNN modules (the AVQA question
    encoder's LSTM) are traced into the graph (dynamo's ``allow_rnn``), which would otherwise break it. ``backend``:
    torch.compile's (tests trace with "aot_eager": the same graph capture, forward and backward, without inductor's
    code generation).

    The LAVISH backbones inside run their adapters' fusable form in training steps (``fused_adapters="inline"``: the
    latent attention as reductions the compiler fuses, both streams stacked; the same maths as the eager adapters),
    traced into the one graph."""
    from lavish.models.backbone import LavishBackbone

    for module in model.modules() if isinstance(model, torch.nn.Module) else ():
        if isinstance(module, LavishBackbone) and module.fused_adapters == "none":
            module.fused_adapters = "inline"
    torch._dynamo.config.allow_rnn = True
    if backend != "inductor":
        return torch.compile(model, fullgraph=True, dynamic=False, backend=backend)
    return torch.compile(model, fullgraph=True, dynamic=False,
                         mode="reduce-overhead" if mode == "cuda-graphs" else None,
                         options={"fallback_random": True})


def device_limits() -> tuple[str, tuple[str, ...], int]:
    """(what trains here, the precisions it runs, the most devices): CUDA GPUs run 16-mixed, and bf16-mixed where
    the GPU has bfloat16 (Ampere and newer); the CPU runs bf16-mixed autocast but not 16-mixed (Lightning would
    silently train in bf16-mixed instead), in any number of processes."""
    if torch.cuda.is_available():
        count = torch.cuda.device_count()
        bf16 = ("bf16-mixed",) if torch.cuda.is_bf16_supported() else ()
        return f"this machine's {count} GPU{'s' * (count > 1)}", ("32", "16-mixed", *bf16), count
    return "the CPU", ("32", "bf16-mixed"), 2 ** 31


class TrainableCheckpoints:
    """LightningModule mix-in: checkpoints without the frozen backbone, with the RNG states (exact resume)."""

    strict_loading = False  # checkpoints hold no frozen backbone weights

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["state_dict"] = trainable_state(self, checkpoint["state_dict"], FROZEN_PREFIX)
        checkpoint["rng"] = rng_state()

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        if "rng" in checkpoint:
            set_rng_state(checkpoint["rng"])

    def log_mean(self, name: str, value: torch.Tensor, batch_size: int, **kwargs) -> None:
        """Log the epoch mean of ``value`` (the mean over a batch of ``batch_size`` items) over every item, exact
        under N processes with unequal shards: a torchmetrics ``MeanMetric`` sums values and weights over the
        processes (``self.log(..., sync_dist=True)`` averages the processes' means instead)."""
        from torchmetrics import MeanMetric

        if not hasattr(self, "epoch_means"):
            self.epoch_means = torch.nn.ModuleDict()
        key = name.replace("/", "_").replace(".", "_")
        if key not in self.epoch_means:
            self.epoch_means[key] = MeanMetric().to(value.device)
        metric = self.epoch_means[key]
        metric.update(value.detach(), weight=batch_size)
        self.log(name, metric, batch_size=batch_size, metric_attribute=f"epoch_means.{key}", **kwargs)


class ShardSampler(Sampler[int]):
    """Process ``rank`` of ``num_replicas`` takes items ``rank, rank + num_replicas, ...`` in order, unpadded.

    For validation and test: each item is evaluated by exactly one process (a DistributedSampler repeats items to
    even out the shards, which counts them twice), and the metrics' states are summed over processes by
    torchmetrics, so N processes give the one-process metric exactly. Shards differ in length by at most one.
    """

    def __init__(self, dataset: Dataset, *, num_replicas: int = 1, rank: int = 0, shuffle: bool = False,
                 seed: int = 0) -> None:
        if shuffle:
            raise ValueError("ShardSampler keeps the split's order; train with a DistributedSampler")
        self.indices = range(rank, len(dataset), num_replicas)

    def __iter__(self):
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)


def split_loader(ds: Dataset, *, collate: Callable[[list[dict]], dict], batch_size: int, shuffle: bool, seed: int,
                 num_workers: int = 0, world: int = 1, rank: int = 0,
                 sampler: type[DistributedSampler] = DistributedSampler, pin_memory: bool = False) -> DataLoader:
    """The loader every task trains on: process ``rank`` of ``world`` takes its seeded ``sampler`` shard of ``ds``
    in batches of ``batch_size // world`` items (``batch_size`` is global), ``collate`` makes the batch dict, and
    ``num_workers`` > 0 worker processes persist across epochs. Also what :mod:`lavish.benchmarking.loader` times.
    """
    shard = sampler(ds, num_replicas=world, rank=rank, shuffle=shuffle, seed=seed)
    return DataLoader(ds, batch_size=batch_size // world, sampler=shard, num_workers=num_workers, collate_fn=collate,
                      persistent_workers=num_workers > 0, pin_memory=pin_memory)


class SplitDataModule(L.LightningDataModule):
    """Train / val / test loaders of a prepared cache, checked against the backbone's input spec.

    The training split goes through a seeded ``SAMPLER`` (a DistributedSampler, also with one process) and each of
    N processes takes ``batch_size / N`` items, so N processes see the same global batches as one; validation and
    test go through a :class:`ShardSampler`, so each item counts once under any N. Subclasses set
    ``TASK``, ``COLLATE`` (items -> batch dict), ``ITEMS`` (what the split holds, for the empty-split error) and
    build a split's dataset in :meth:`make_dataset`.
    """

    TASK: ClassVar[str]
    COLLATE: ClassVar[Callable[[list[dict]], dict]]
    ITEMS: ClassVar[str] = "prepared videos"
    SAMPLER: ClassVar[type[DistributedSampler]] = DistributedSampler

    def __init__(self, cache_dir: str | Path, *, backbone: str, batch_size: int, seed: int,
                 num_workers: int = 0) -> None:
        super().__init__()
        self.cache_dir = Path(cache_dir)
        spec = input_spec(backbone, self.TASK)
        self.manifest = check_manifest(self.cache_dir, task=self.TASK, frame_size=spec.frame_size,
                                       frontend_name=spec.audio_frontend)
        self.batch_size, self.seed, self.num_workers = batch_size, seed, num_workers
        self.datasets: dict[str, Dataset] = {}

    def make_dataset(self, split: str) -> Dataset:
        raise NotImplementedError(f"{type(self).__name__} does not say how to read a split")

    def dataset(self, split: str) -> Dataset:
        """The split's dataset (built once); a split with no item is a DataError."""
        if split not in self.datasets:
            ds = self.make_dataset(split)
            if len(ds) == 0:
                raise DataError(f"{self.cache_dir}: split {split!r} has no {self.ITEMS}")
            self.datasets[split] = ds
        return self.datasets[split]

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        trainer = self.trainer
        world, rank = (trainer.world_size, trainer.global_rank) if trainer is not None else (1, 0)
        ds = self.dataset(split)
        if not shuffle and len(ds) < world:  # a process without items would wait forever for the others
            raise DataError(f"{self.cache_dir}: split {split!r} has {len(ds)} {self.ITEMS}, fewer than the "
                            f"{world} processes (--devices) that evaluate it")
        return split_loader(ds, collate=type(self).COLLATE, sampler=self.SAMPLER if shuffle else ShardSampler,
                            batch_size=self.batch_size, shuffle=shuffle, seed=self.seed,
                            num_workers=self.num_workers, world=world, rank=rank)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", False)


def last_checkpoint(out: Path) -> Path:
    return Path(out) / "checkpoints" / "last.ckpt"


def check_run_dir(out: str | Path, resume: bool) -> Path:
    """The run folder, after refusing to overwrite a run, to resume nothing or a run without its run.json; clears
    the temp files of a killed write.

    A run killed before its first checkpoint (run.json, perhaps best.safetensors, no checkpoints/last.ckpt) holds
    nothing to resume: it starts again without --resume.
    """
    out = Path(out)
    last, recorded = last_checkpoint(out), (out / RUN_CONFIG).is_file()
    if resume and not last.exists():
        raise ConfigError(f"{out}: nothing to resume (no checkpoints/last.ckpt); start it with resume=False (lavish train: without --resume)")
    if resume and not recorded:
        raise ConfigError(f"{out}: cannot resume: {RUN_CONFIG} is missing, so the run's settings are unknown; "
                          f"start again in a new run folder (out=; lavish train: --out)")
    if not resume and (last.exists() or (out / "results.json").exists()
                       or ((out / ADAPTER_FILE).exists() and not recorded)):
        raise ConfigError(f"{out} already holds a run: continue it with resume=True (lavish train: --resume), or choose another run folder (out=; lavish train: --out)")
    remove_stale_temp_files(out, last.parent)
    return out


def record_run(out: Path, resume: bool, *, model: dict, train: TrainConfig, data: str | Path, meta: dict) -> None:
    """Write run.json for a new run; for --resume, refuse other model settings than the run's."""
    run_file = out / RUN_CONFIG
    if resume:
        try:
            recorded = json.loads(run_file.read_text())["model"]
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise ConfigError(f"{run_file}: unreadable ({type(err).__name__}: {err}); cannot check that resuming "
                              "continues with the run's settings") from None
        if recorded != model:
            raise ConfigError(f"{out}: resuming with other model settings than the run's ({run_file})")
        return
    write_json(run_file, {"model": model, "train": dataclasses.asdict(train),
                                 "data": str(Path(data).resolve()), "meta": meta})


def accelerator() -> str:
    return "gpu" if torch.cuda.is_available() else "cpu"


def make_trainer(out: Path, cfg: TrainConfig, export: ExportBest, *, progress: bool = True,
                 find_unused_parameters: bool = False) -> L.Trainer:
    """The Lightning Trainer of every task: DDP for devices > 1, synced BatchNorm, atomic checkpoints.

    ``find_unused_parameters``: DDP tolerates trainable parameters that get no gradient in a step (AVS has modules
    the authors count as trainable but never use); it costs a graph traversal per step, so only tasks that need it
    ask for it.
    """
    callbacks = [
        export,
        L.pytorch.callbacks.EarlyStopping(monitor=export.monitor, mode="max", patience=cfg.patience),
        # every epoch overwrites checkpoints/last.ckpt (no monitor, top 1, fixed name); Lightning >= 2.5 no longer
        # writes save_last=True files when save_top_k=0 saves nothing, which left --resume nothing until the end
        L.pytorch.callbacks.ModelCheckpoint(dirpath=out / "checkpoints", filename="last", save_top_k=1,
                                            enable_version_counter=False),
    ]
    loggers = [L.pytorch.loggers.CSVLogger(out, name="", version="logs")]
    try:
        loggers.append(L.pytorch.loggers.TensorBoardLogger(out, name="", version="logs"))
    except ModuleNotFoundError:
        pass
    device = accelerator()
    strategy = "auto" if cfg.devices == 1 else "ddp_find_unused_parameters_true" if find_unused_parameters else "ddp"
    plugins: list = [SafeCheckpointIO()]
    if cfg.devices > 1 and device == "cpu":
        plugins.append(AllReduceSyncBatchNorm())  # torch's SyncBatchNorm refuses CPU modules
    return L.Trainer(
        accelerator=device,
        devices=cfg.devices,
        strategy=strategy,
        sync_batchnorm=cfg.devices > 1 and device != "cpu",
        precision=cfg.precision,
        max_epochs=cfg.epochs,
        callbacks=callbacks,
        logger=loggers,
        plugins=plugins,
        use_distributed_sampler=False,  # the data modules shard with a seeded DistributedSampler themselves
        num_sanity_val_steps=0,
        log_every_n_steps=1,
        enable_progress_bar=progress,
        enable_model_summary=False,
    )


def write_results(out: Path, trainer: L.Trainer, results: dict) -> None:
    if trainer.is_global_zero:
        write_json(out / "results.json", results)
