"""Classification data: the prepared cache (the generic :class:`~lavish.data.cache.CacheDataset`), the collate and the
data module.

The cache of a classification set holds, beside the frames and audio images of every clip, ``labels.npy``: (N,)
int64 class indices for a single-label set, (N, K) uint8 0/1 for a multi-label set (the array's rank says which),
and the class names in the manifest.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from lavish.data.cache import LABELS, CacheDataset
from lavish.engine.runner import SplitDataModule
from lavish.errors import DataError


def collate(items: list[dict]) -> dict:
    """frames (B, T, H, W, 3) uint8, audio (B, T, F, M), labels (B,) or (B, K) int64, video_id [B]."""
    out = {k: torch.stack([it[k] for it in items]) for k in ("frames", "audio", "labels")}
    out["video_id"] = [it["video_id"] for it in items]
    return out


class ClassifyDataModule(SplitDataModule):
    """Train / val / test splits of a prepared classification cache."""

    TASK, COLLATE, ITEMS = "classify", collate, "prepared clips"

    def __init__(self, cache_dir: str | Path, *, backbone: str, batch_size: int = 2, seed: int = 0,
                 num_workers: int = 0) -> None:
        super().__init__(cache_dir, backbone=backbone, batch_size=batch_size, seed=seed, num_workers=num_workers)
        try:
            self.labels = np.load(self.cache_dir / LABELS, mmap_mode="r")
        except (OSError, ValueError) as err:
            raise DataError(f"{self.cache_dir / LABELS}: unreadable ({err}); prepare the cache again") from None
        if self.labels.ndim not in (1, 2) or (self.labels.ndim == 2 and self.labels.shape[1] != len(self.classes)):
            raise DataError(f"{self.cache_dir / LABELS}: labels of shape {self.labels.shape} do not fit the cache's "
                            f"{len(self.classes)} classes; prepare the cache again")

    @property
    def classes(self) -> list[str]:
        return list(self.manifest["classes"])

    @property
    def multi_label(self) -> bool:
        return self.labels.ndim == 2

    def train_labels(self) -> np.ndarray:
        """(n,) or (n, K) labels of the training split (for the balanced class weights)."""
        return np.asarray(self.labels[self.manifest["splits"].get("train", [])])

    def make_dataset(self, split: str) -> Dataset:
        return CacheDataset(self.cache_dir, split)
