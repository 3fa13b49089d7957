"""AVS data: the prepared cache with its masks, the collate and the data module."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from lavish.data.cache import CacheDataset, read_json
from lavish.tasks.avs.prepare import AVS_INFO
from lavish.errors import ConfigError, DataError
from lavish.engine.runner import SplitDataModule


class AvsCacheDataset(CacheDataset):
    """One split of a prepared AVS cache: the AVE item plus ``masks`` uint8 (T, H_m, W_m) and ``annotated``
    bool (T,) (the cache's labels are the annotation flags)."""

    def __getitem__(self, i: int) -> dict:
        item = super().__getitem__(i)
        path = self.cache_dir / "masks" / f"{item['video_id']}.npy"
        try:
            item["masks"] = torch.from_numpy(np.array(np.load(path, mmap_mode="r"), dtype=np.uint8))
        except (OSError, ValueError) as err:
            raise DataError(f"{path}: unreadable mask array ({err}); rerun `lavish prepare avs`") from None
        item["annotated"] = item.pop("labels").bool()
        return item


def collate(items: list[dict]) -> dict:
    out = {k: torch.stack([it[k] for it in items]) for k in ("frames", "audio", "masks", "annotated")}
    out["video_id"] = [it["video_id"] for it in items]
    return out


class AvsDataModule(SplitDataModule):
    """Train / val / test splits of a prepared AVS cache."""

    TASK, COLLATE, ITEMS = "avs", collate, "prepared clips"

    def __init__(self, cache_dir: str | Path, *, backbone: str, batch_size: int = 4, seed: int = 0,
                 num_workers: int = 0, subset: str | None = None) -> None:
        info_path = Path(cache_dir) / AVS_INFO
        if subset is not None and info_path.exists() and read_json(info_path).get("subset") != subset:
            raise ConfigError(f"{cache_dir}: cache holds AVSBench {read_json(info_path).get('subset')}, not "
                              f"--subset {subset}")
        super().__init__(cache_dir, backbone=backbone, batch_size=batch_size, seed=seed, num_workers=num_workers)
        info = read_json(info_path)
        self.subset, self.mask_size = str(info["subset"]), tuple(int(v) for v in info["mask_size"])

    def make_dataset(self, split: str) -> AvsCacheDataset:
        return AvsCacheDataset(self.cache_dir, split)
