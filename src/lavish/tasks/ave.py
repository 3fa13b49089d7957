"""AVE: audio-visual event localisation (spec 3.1, 4), trained with Lightning.

Recipe (the authors' README command, ``AVE/main_trans.py``): Adam without weight decay, lr 5e-5 for the adapters
and 4e-6 for the head (``mlp_class*``), no scheduler, batch of 2 videos (20 one-second segments), loss = BCE
between the softmax over 29 classes and the one-hot label, up to 50 epochs with early stopping after 5 epochs
without improvement. Accuracy = fraction of segments whose argmax is right, background included.

Where we differ from the authors' script, on purpose:
* model selection and early stopping use the **validation** split; the authors selected on test (quirk 13),
  which inflates the reported number;
* one optimiser step per batch (the script steps twice every 8th batch, quirk 10);
* ``--batch-size`` is the global batch; under DDP each of N processes takes batch/N videos, the sampler is a
  seeded ``DistributedSampler`` in every case, and adapter BatchNorms are synchronised, so N processes see the
  same global batches as one process.
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import h5py
import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset
from torchmetrics.classification import MulticlassAccuracy, MulticlassConfusionMatrix

from lavish.data.cache import AveCacheDataset
from lavish.errors import ConfigError, DataError
from lavish.media.frames import normalize_frames
from lavish.models.ave import AveModel, AveModelConfig
from lavish.tasks.checkpointing import ExportBest, load_task_model
from lavish.tasks.runner import (ADAPTER_FILE, NonFiniteLoss, SplitDataModule, TrainableCheckpoints, TrainConfig,
                                 check_run_dir, last_checkpoint, make_trainer, record_run, write_results)

MONITOR = "val/acc"


@dataclass
class AveTrainConfig(TrainConfig):
    """Training settings; defaults are the authors' AVE recipe."""

    LR_FIELDS: ClassVar[tuple[str, ...]] = ("lr", "lr_head")

    lr: float = 5e-5
    """learning rate of the adapters (and any other trainable part but the head)"""
    lr_head: float = 4e-6


class WithExtraFeatures(Dataset):
    """Adds ``extra`` (T, E) float32 per item from an h5 file indexed by annotation row (Table 8)."""

    def __init__(self, base: AveCacheDataset, features: np.ndarray) -> None:
        self.base, self.features = base, features

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, i: int) -> dict:
        item = self.base[i]
        row = self.base.items[item["index"]]["row"]
        item["extra"] = torch.from_numpy(np.asarray(self.features[row], dtype=np.float32))
        return item


def read_extra_features(path: str | Path, num_rows: int, num_segments: int) -> np.ndarray:
    """(rows, T, E) array from an AVE-style h5 file (dataset ``avadataset``), checked against the annotations."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"extra audio features file {path} does not exist")
    try:
        with h5py.File(path, "r") as f:
            if "avadataset" not in f:
                raise DataError(f"{path}: no dataset 'avadataset' (has {', '.join(f.keys()) or 'nothing'})")
            data = np.asarray(f["avadataset"], dtype=np.float32)
    except OSError as err:
        raise DataError(f"{path}: not a readable HDF5 file ({err})") from None
    if data.ndim != 3 or data.shape[0] < num_rows or data.shape[1] != num_segments:
        raise DataError(f"{path}: avadataset has shape {data.shape}, expected ({num_rows}, {num_segments}, E)")
    return data


def collate(items: list[dict]) -> dict:
    out = {k: torch.stack([it[k] for it in items]) for k in ("frames", "audio", "labels")}
    if "extra" in items[0]:
        out["extra"] = torch.stack([it["extra"] for it in items])
    out["video_id"] = [it["video_id"] for it in items]
    return out


class AveDataModule(SplitDataModule):
    """Train / val / test splits of a prepared AVE cache."""

    TASK, COLLATE = "ave", collate

    def __init__(self, cache_dir: str | Path, *, backbone: str, batch_size: int = 2, seed: int = 0,
                 num_workers: int = 0, extra_features: str | Path | None = None) -> None:
        super().__init__(cache_dir, backbone=backbone, batch_size=batch_size, seed=seed, num_workers=num_workers)
        self.extra = None
        if extra_features is not None:
            rows = max(item["row"] for item in json.loads((self.cache_dir / "videos.json").read_text())) + 1
            self.extra = read_extra_features(extra_features, rows, self.manifest["num_segments"])

    @property
    def classes(self) -> list[str]:
        return list(self.manifest["classes"])

    @property
    def extra_dim(self) -> int:
        return 0 if self.extra is None else int(self.extra.shape[-1])

    def make_dataset(self, split: str) -> Dataset:
        ds = AveCacheDataset(self.cache_dir, split)
        return ds if self.extra is None else WithExtraFeatures(ds, self.extra)


def ave_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """BCE(softmax(logits), one-hot(labels)), mean over all entries (the authors' loss), in float32.

    logits: (B, T, K), labels: (B, T) int64.
    """
    with torch.autocast(device_type=logits.device.type, enabled=False):
        probs = logits.float().softmax(-1)
        target = F.one_hot(labels, logits.shape[-1]).float()
        return F.binary_cross_entropy(probs, target)


class AveTask(TrainableCheckpoints, L.LightningModule):
    """LightningModule: the AVE model, its loss, metrics and optimiser."""

    def __init__(self, model_config: dict, train_config: dict, classes: list[str], pretrained: bool = False,
                 backbone_weights: str | None = None) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.model = AveModel(AveModelConfig.from_dict(model_config), pretrained=pretrained,
                              backbone_weights=backbone_weights)
        self.train_config = AveTrainConfig(**train_config)
        k = self.model.config.num_classes
        self.train_acc = MulticlassAccuracy(k, average="micro")
        self.val_acc = MulticlassAccuracy(k, average="micro")
        self.test_acc = MulticlassAccuracy(k, average="micro")

    def forward(self, batch: dict) -> torch.Tensor:
        """Logits (B, T, K) of a collated batch."""
        frames = normalize_frames(batch["frames"])
        return self.model(batch["audio"], frames, batch.get("extra"))

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        logits = self(batch)
        # checked before the loss: binary_cross_entropy raises its own RuntimeError on NaN probabilities
        finite = bool(torch.isfinite(logits).all())
        loss = ave_loss(logits, batch["labels"]) if finite else None
        if loss is None or not torch.isfinite(loss):
            what = "the model output is not finite" if loss is None else f"training loss is {loss.item()}"
            raise NonFiniteLoss(
                f"{what} at step {self.global_step} (epoch {self.current_epoch}); stopped, "
                f"the last good checkpoint is kept in the run's checkpoints/ folder"
            )
        self.train_acc(logits.argmax(-1).flatten(), batch["labels"].flatten())
        bs = batch["labels"].shape[0]
        self.log("train/loss", loss, prog_bar=True, batch_size=bs)
        self.log("train/acc", self.train_acc, prog_bar=True, on_step=False, on_epoch=True, batch_size=bs)
        return loss

    def _eval_step(self, batch: dict, metric, stage: str) -> None:
        logits = self(batch)
        loss = ave_loss(logits, batch["labels"])
        metric(logits.argmax(-1).flatten(), batch["labels"].flatten())
        bs = batch["labels"].shape[0]
        self.log_mean(f"{stage}/loss", loss, batch_size=bs)
        self.log(f"{stage}/acc", metric, prog_bar=True, batch_size=bs)

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self._eval_step(batch, self.val_acc, "val")

    def test_step(self, batch: dict, batch_idx: int) -> None:
        self._eval_step(batch, self.test_acc, "test")

    def configure_optimizers(self):
        head = [p for p in self.model.head.parameters() if p.requires_grad]
        head_ids = {id(p) for p in head}
        rest = [p for p in self.model.parameters() if p.requires_grad and id(p) not in head_ids]
        groups = [{"params": head, "lr": self.train_config.lr_head, "name": "head"}]
        if rest:
            groups.append({"params": rest, "lr": self.train_config.lr, "name": "adapters"})
        return torch.optim.Adam(groups)


@dataclass
class TrainResult:
    run_dir: Path
    adapter: Path
    best_epoch: int | None
    best_val_acc: float | None
    test_acc: float | None
    epochs_run: int
    seconds: float


def train_ave(data: str | Path, out: str | Path, model_config: AveModelConfig, train_config: AveTrainConfig, *,
              pretrained: bool = False, backbone_weights: str | None = None, resume: bool = False,
              extra_features: str | None = None, progress: bool = True, test: bool = True) -> TrainResult:
    """Train an AVE model on a prepared cache into the run folder ``out`` (see module doc)."""
    start = time.monotonic()
    out = check_run_dir(out, resume)
    L.seed_everything(train_config.seed, workers=True, verbose=False)
    dm = AveDataModule(data, backbone=model_config.backbone, batch_size=train_config.batch_size,
                       seed=train_config.seed, num_workers=train_config.num_workers, extra_features=extra_features)
    classes = dm.classes
    model_config = dataclasses.replace(model_config, extra_audio_dim=dm.extra_dim, num_classes=len(classes) + 1)
    meta = {"task": "ave", "classes": classes + ["background"], "pretrained": pretrained,
            "backbone_weights": backbone_weights, "frontend": dm.manifest["frontend"]["name"],
            "frame_size": dm.manifest["frame_size"]}
    record_run(out, resume, model=model_config.to_dict(), train=train_config, data=data, meta=meta)
    task = AveTask(model_config.to_dict(), dataclasses.asdict(train_config), classes, pretrained, backbone_weights)
    task.model.backbone.checkpointing = model_config.checkpointing
    export = ExportBest(out / ADAPTER_FILE, MONITOR, meta)
    trainer = make_trainer(out, train_config, export, progress=progress)
    trainer.fit(task, datamodule=dm, ckpt_path=str(last_checkpoint(out)) if resume else None)
    test_acc = None
    if test and trainer.is_global_zero and (out / ADAPTER_FILE).exists():
        test_acc = evaluate_ave(out / ADAPTER_FILE, data, split="test", backbone_weights=backbone_weights,
                                progress=False)["accuracy"]
    result = TrainResult(out, out / ADAPTER_FILE, export.best_epoch, export.best, test_acc,
                         trainer.current_epoch, time.monotonic() - start)
    write_results(out, trainer, {
        "best_epoch": result.best_epoch, "best_val_acc": result.best_val_acc, "test_acc": result.test_acc,
        "epochs_run": result.epochs_run, "seconds": round(result.seconds, 1),
    })
    return result


def load_ave_model(checkpoint: str | Path, *, backbone_weights: str | None = None) -> tuple[AveModel, dict]:
    """An AveModel rebuilt from an adapter file (config + meta inside), in eval mode; returns (model, meta)."""
    return load_task_model(checkpoint, task="ave", config_cls=AveModelConfig, model_cls=AveModel,
                           backbone_weights=backbone_weights)


@torch.no_grad()
def evaluate_ave(checkpoint: str | Path, data: str | Path, *, split: str = "test",
                 backbone_weights: str | None = None, batch_size: int = 2, progress: bool = True,
                 confusion_png: str | Path | None = None) -> dict:
    """Segment accuracy (background included), per-class accuracy and confusion matrix on a cache split."""
    model, meta = load_ave_model(checkpoint, backbone_weights=backbone_weights)
    extra = None
    if model.config.extra_audio_dim:
        raise ConfigError("evaluating a model with extra audio features needs them: use `lavish train` results")
    dm = AveDataModule(data, backbone=model.config.backbone, batch_size=batch_size, extra_features=extra)
    cache_classes = dm.classes + ["background"]
    classes = meta.get("classes") or cache_classes
    if classes != cache_classes or len(classes) != model.config.num_classes:
        raise DataError(f"{data}: the cache's {len(cache_classes)} classes ({', '.join(cache_classes[:3])}, ...) are "
                        f"not the {model.config.num_classes} classes checkpoint {checkpoint} was trained on")
    k = model.config.num_classes
    confusion = MulticlassConfusionMatrix(k, sync_on_compute=False)  # rank 0 alone evaluates after DDP
    loader = DataLoader(dm.dataset(split), batch_size=batch_size, collate_fn=collate)
    from tqdm import tqdm

    for batch in tqdm(loader, desc=f"eval {split}", disable=not progress, leave=False):
        logits = model(batch["audio"], normalize_frames(batch["frames"]), batch.get("extra"))
        confusion.update(logits.argmax(-1).flatten(), batch["labels"].flatten())
    cm = confusion.compute().numpy()
    total = cm.sum()
    per_class = {classes[i]: (float(cm[i, i] / cm[i].sum()) if cm[i].sum() else None) for i in range(k)}
    result = {
        "split": split,
        "segments": int(total),
        "accuracy": float(np.trace(cm) / total) if total else 0.0,
        "per_class": per_class,
        "confusion": cm.tolist(),
        "classes": classes,
    }
    if confusion_png is not None:
        from lavish.tasks.plots import plot_confusion

        plot_confusion(cm, classes, confusion_png)
    return result
