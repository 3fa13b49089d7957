"""Toy task: is each second of a clip loud or quiet? A task defined outside lavish, found through the ``lavish.tasks``
entry point of this folder's dist-info (tests/engine/test_toy_task.py puts the folder on PYTHONPATH).

Layout: ``root/<video_id>.mp4`` and ``root/labels.tsv`` (``video_id<TAB>split<TAB>10 labels, 0 quiet / 1 loud``).
It uses only lavish's engine, data and models layers: the generic cache, the prepare machinery, the task base class.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torchmetrics.classification import MulticlassAccuracy

from lavish.data import cache
from lavish.data.cache import CacheDataset
from lavish.data.prepare import PrepareReport, open_cache, prepare_videos, write_failed
from lavish.engine.runner import SplitDataModule
from lavish.engine.task import Evaluation, Task
from lavish.errors import DataError
from lavish.media.frames import normalize_frames
from lavish.models.adapters import AdapterConfig
from lavish.models.task_config import TaskModelConfig, preset_adapter, task_backbone

SEGMENTS = 10


def prepare_toy(root, out, *, frame_size, frontend, workers: int = 1, progress: bool = True) -> PrepareReport:
    start = time.monotonic()
    root, out = Path(root), Path(out)
    if not (root / "labels.tsv").is_file():
        raise DataError(f"{root}: no labels.tsv")
    rows = [line.split("\t") for line in (root / "labels.tsv").read_text().splitlines() if line.strip()]
    settings = cache.CacheSettings(task="toy", frame_size=tuple(frame_size), frontend=asdict(frontend),
                                   num_segments=SEGMENTS, source_root=str(root.resolve()))
    open_cache(out, settings)
    videos = {vid: root / f"{vid}.mp4" for vid, _, _ in rows}
    report = PrepareReport(out=out, videos=len(videos))
    has_audio = prepare_videos(videos, out, frame_size=settings.frame_size, frontend=frontend,
                               num_segments=SEGMENTS, workers=workers, progress=progress, report=report)
    kept = [row for row in rows if row[0] in has_audio]
    items = [{"video_id": vid, "has_audio": has_audio[vid]} for vid, _, _ in kept]
    labels = np.array([[int(c) for c in lab] for _, _, lab in kept], np.int64).reshape(-1, SEGMENTS)
    splits = {s: [i for i, row in enumerate(kept) if row[1] == s] for s in ("train", "val", "test")}
    write_failed(out, videos, report.failed)
    cache.write_manifest(out, settings, classes=["quiet", "loud"], items=items, labels=labels, splits=splits,
                         failed=report.failed)
    report.items, report.seconds = len(items), time.monotonic() - start
    return report


def collate(items: list[dict]) -> dict:
    return {"frames": torch.stack([i["frames"] for i in items]), "audio": torch.stack([i["audio"] for i in items]),
            "labels": torch.stack([i["labels"] for i in items])}


class ToyDataModule(SplitDataModule):
    TASK, COLLATE = "toy", collate

    def make_dataset(self, split: str):
        return CacheDataset(self.cache_dir, split)


@dataclass
class ToyModelConfig(TaskModelConfig):
    backbone: str = "lavish_vit_micro_patch8_64"
    adapter: AdapterConfig = preset_adapter("ave")
    modalities: str = "av"
    train_norms: bool = False
    checkpointing: bool | str = False
    fused_adapters: bool | str = False


class ToyModel(nn.Module):
    """audio (B, T, F, M), frames (B, T, 3, H, W) -> logits (B, T, 2)."""

    def __init__(self, config: ToyModelConfig, *, pretrained=False, backbone_weights=None, timm_model=None):
        super().__init__()
        self.config = config
        self.backbone = task_backbone(config, pretrained=pretrained, backbone_weights=backbone_weights,
                                      timm_model=timm_model)
        self.head = nn.Linear(self.backbone.num_features * len(config.modalities), 2)

    def forward(self, audio, frames):
        b, t = frames.shape[:2]
        out = self.backbone(audio.flatten(0, 1), frames.flatten(0, 1))
        feats = torch.cat([self.backbone.pool(x) for x in (out.visual, out.audio) if x is not None], -1)
        return self.head(feats.view(b, t, -1))


class ToyEvaluation(Evaluation):
    def __init__(self) -> None:
        self.right = self.total = 0

    def update(self, output, batch) -> None:
        self.right += int((output.argmax(-1) == batch["labels"]).sum())
        self.total += batch["labels"].numel()

    def result(self) -> dict:
        return {"accuracy": self.right / max(self.total, 1), "seconds": self.total}


class ToyTask(Task):
    """Loud or quiet, per second (a toy task from outside lavish)."""

    name = "toy"
    title = "toy: loud or quiet, per second"
    audio_frontend = "ave"
    adapter_preset = "ave"
    model_config_cls = ToyModelConfig
    model_cls = ToyModel
    data_module_cls = ToyDataModule
    prepare = staticmethod(prepare_toy)

    def forward(self, model, batch):
        return model(batch["audio"], normalize_frames(batch["frames"]))

    def loss(self, output, batch):
        return nn.functional.cross_entropy(output.flatten(0, 1).float(), batch["labels"].flatten())

    def metrics(self, stage, model):
        return {"acc": MulticlassAccuracy(2, average="micro")}

    def update_metrics(self, metrics, output, batch):
        metrics["acc"].update(output.flatten(0, 1), batch["labels"].flatten())

    def evaluation(self, model, meta, dm, split, **options):
        return ToyEvaluation()

    def eval_lines(self, result):
        return [f"toy accuracy {result['accuracy']:.4f} over {result['seconds']} seconds"]
