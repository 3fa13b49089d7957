"""AVE data: the prepared cache (the generic CacheDataset) with the optional extra audio features (Table 8), the collate and the data module."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from lavish.data.cache import EXTRA_AUDIO, CacheDataset
from lavish.errors import DataError
from lavish.engine.runner import SplitDataModule


class WithExtraFeatures(Dataset):
    """Adds ``extra`` (T, E) float32 per item from the cache's ``extra_audio.npy`` (items, T, E) (Table 8)."""

    def __init__(self, base: CacheDataset, features: np.ndarray) -> None:
        self.base, self.features = base, features

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, i: int) -> dict:
        item = self.base[i]
        item["extra"] = torch.from_numpy(np.array(self.features[item["index"]], dtype=np.float32))
        return item


def collate(items: list[dict]) -> dict:
    out = {k: torch.stack([it[k] for it in items]) for k in ("frames", "audio", "labels")}
    if "extra" in items[0]:
        out["extra"] = torch.stack([it["extra"] for it in items])
    out["video_id"] = [it["video_id"] for it in items]
    return out


def read_cache_extra(cache_dir: Path) -> np.ndarray | None:
    """The cache's extra per-second audio features (items, T, E), memory-mapped; None if it has none."""
    path = Path(cache_dir) / EXTRA_AUDIO
    if not path.exists():
        return None
    try:
        return np.load(path, mmap_mode="r")
    except (OSError, ValueError) as err:
        raise DataError(f"{path}: unreadable ({err}); prepare the cache again") from None


class AveDataModule(SplitDataModule):
    """Train / val / test splits of a prepared AVE cache; ``extra=True`` adds the cache's extra features."""

    TASK, COLLATE = "ave", collate

    def __init__(self, cache_dir: str | Path, *, backbone: str, batch_size: int = 2, seed: int = 0,
                 num_workers: int = 0, extra: bool = False) -> None:
        super().__init__(cache_dir, backbone=backbone, batch_size=batch_size, seed=seed, num_workers=num_workers)
        self.extra = read_cache_extra(self.cache_dir) if extra else None
        if extra and self.extra is None:
            raise DataError(f"{self.cache_dir}: the cache holds no extra audio features; prepare it with "
                            "`lavish prepare ave --extra-audio-features FILE.h5` (Table 8)")

    @property
    def classes(self) -> list[str]:
        return list(self.manifest["classes"])

    @property
    def extra_dim(self) -> int:
        return 0 if self.extra is None else int(self.extra.shape[-1])

    def make_dataset(self, split: str) -> Dataset:
        ds = CacheDataset(self.cache_dir, split)
        return ds if self.extra is None else WithExtraFeatures(ds, self.extra)
