"""AVVP data: the LLP cache dataset (weak video labels + per-second audio / visual labels) and its collate."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from lavish.data.cache import LABELS, VIDEO_LABELS, CacheDataset
from lavish.engine.runner import SplitDataModule
from lavish.errors import DataError


class AvvpCacheDataset(CacheDataset):
    """One split of a prepared AVVP (LLP) cache (:func:`lavish.tasks.avvp.prepare.prepare_avvp`).

    ``ds[i]`` -> dict(frames=uint8 (T,H,W,3), audio=float32 (T,F,M), labels=float32 (C,) video-level multi-hot,
    audio_labels=int64 (T,C), visual_labels=int64 (T,C) per-second labels (-1 everywhere for train clips),
    index, video_id, has_audio) with T = 10, C = 25.
    """

    def __init__(self, cache_dir: Path | str, split: str) -> None:
        super().__init__(cache_dir, split)
        if self.manifest.get("task") != "avvp":
            raise DataError(f"{self.cache_dir}: cache was prepared for task {self.manifest.get('task')!r}, not 'avvp'")
        path = self.cache_dir / VIDEO_LABELS
        try:
            self.video_labels = np.load(path, mmap_mode="r")
        except (OSError, ValueError) as err:
            raise DataError(f"{path}: unreadable ({err}); prepare the cache again") from None
        classes = len(self.manifest["classes"])
        steps = self.manifest["num_segments"]
        if self.labels.shape[1:] != (2, steps, classes) or self.video_labels.shape != (len(self.items), classes):
            raise DataError(
                f"{self.cache_dir}: {LABELS} has shape {self.labels.shape} and {VIDEO_LABELS} "
                f"{self.video_labels.shape}, expected (items, 2, {steps}, {classes}) and ({len(self.items)}, "
                f"{classes}); prepare the cache again"
            )

    def __getitem__(self, i: int) -> dict:
        item = super().__getitem__(i)
        per_second = item["labels"]
        item["labels"] = torch.from_numpy(np.array(self.video_labels[item["index"]], dtype=np.float32))
        item["audio_labels"], item["visual_labels"] = per_second[0], per_second[1]
        return item


def collate(items: list[dict]) -> dict:
    out = {k: torch.stack([it[k] for it in items])
           for k in ("frames", "audio", "labels", "audio_labels", "visual_labels")}
    out["video_id"] = [it["video_id"] for it in items]
    return out


class AvvpDataModule(SplitDataModule):
    """Train / val / test splits of a prepared LLP cache (``lavish prepare avvp``)."""

    TASK, COLLATE = "avvp", collate

    @property
    def classes(self) -> list[str]:
        return list(self.manifest["classes"])

    def make_dataset(self, split: str) -> AvvpCacheDataset:
        return AvvpCacheDataset(self.cache_dir, split)
