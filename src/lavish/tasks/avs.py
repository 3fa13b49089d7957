"""AVS: audio-visual segmentation on AVSBench S4 / MS3 (spec 3.2, 4), trained with Lightning.

Recipe (the authors' README command, ``AVS/avs_scripts/avs_s4/train.py``): Adam lr 1e-4 on everything trainable,
no weight decay, no scheduler, batch of 4 clips (20 frames), loss = BCE between sigmoid(logits) and the mask of
each annotated frame (S4 train: the first frame only, as the benchmark; MS3 and S4 val/test: all five), up to
30 epochs, early stopping after 5 without improvement of mIoU. Metrics: :mod:`lavish.tasks.avs_metrics`.

Where we differ from the authors, on purpose:
* model selection and early stopping on the **validation** split (they used test, quirk 13 / spec 3.2);
* the loss is ``binary_cross_entropy_with_logits`` (the same value as BCE on sigmoid, without its log(0) clamp);
* the whole clip (5 frames) always goes through the model, so TPAVI sees all frames as theirs does; frames
  without a mask only add nothing to the loss.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from lavish.data.cache import AveCacheDataset, read_json
from lavish.data.prepare import AVS_INFO
from lavish.errors import DataError
from lavish.media.frames import normalize_frames
from lavish.models.avs import AvsModel, AvsModelConfig
from lavish.tasks.avs_metrics import AvsFScore, AvsMIoU
from lavish.tasks.checkpointing import ExportBest, load_task_model
from lavish.tasks.runner import (ADAPTER_FILE, NonFiniteLoss, SplitDataModule, TrainableCheckpoints, TrainConfig,
                                 check_run_dir, last_checkpoint, make_trainer, record_run, write_results)

MONITOR = "val/miou"


@dataclass
class AvsTrainConfig(TrainConfig):
    """Training settings; defaults are the authors' AVS-S4 recipe."""

    epochs: int = 30
    batch_size: int = 4
    lr: float = 1e-4
    seed: int = 123


class AvsCacheDataset(AveCacheDataset):
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
                 num_workers: int = 0) -> None:
        super().__init__(cache_dir, backbone=backbone, batch_size=batch_size, seed=seed, num_workers=num_workers)
        info = read_json(self.cache_dir / AVS_INFO)
        self.subset, self.mask_size = str(info["subset"]), tuple(int(v) for v in info["mask_size"])

    def make_dataset(self, split: str) -> AvsCacheDataset:
        return AvsCacheDataset(self.cache_dir, split)


def avs_loss(logits: torch.Tensor, masks: torch.Tensor, annotated: torch.Tensor) -> torch.Tensor:
    """Mean BCE over the pixels of the annotated frames, in float32.

    logits: (B, T, H, W); masks: (B, T, H, W) 0/1; annotated: (B, T) bool.
    """
    with torch.autocast(device_type=logits.device.type, enabled=False):
        return F.binary_cross_entropy_with_logits(logits[annotated].float(), masks[annotated].float())


class AvsTask(TrainableCheckpoints, L.LightningModule):
    """LightningModule: the AVS model, its loss, the benchmark metrics and the optimiser."""

    def __init__(self, model_config: dict, train_config: dict, pretrained: bool = False,
                 backbone_weights: str | None = None) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.model = AvsModel(AvsModelConfig.from_dict(model_config), pretrained=pretrained,
                              backbone_weights=backbone_weights)
        self.train_config = AvsTrainConfig(**train_config)
        self.val_miou, self.val_fscore = AvsMIoU(), AvsFScore()
        self.test_miou, self.test_fscore = AvsMIoU(), AvsFScore()

    def forward(self, batch: dict) -> torch.Tensor:
        """Mask logits (B, T, H_m, W_m) of a collated batch."""
        return self.model(batch["audio"], normalize_frames(batch["frames"]))

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        logits = self(batch)
        loss = avs_loss(logits, batch["masks"], batch["annotated"])
        if not torch.isfinite(loss):
            raise NonFiniteLoss(
                f"training loss is {loss.item()} at step {self.global_step} (epoch {self.current_epoch}); stopped, "
                f"the last good checkpoint is kept in the run's checkpoints/ folder"
            )
        self.log("train/loss", loss, prog_bar=True, batch_size=logits.shape[0])
        return loss

    def _eval_step(self, batch: dict, miou, fscore, stage: str) -> None:
        logits = self(batch)
        bs = logits.shape[0]
        self.log_mean(f"{stage}/loss", avs_loss(logits, batch["masks"], batch["annotated"]), batch_size=bs)
        miou.update(logits, batch["masks"], batch["annotated"])
        fscore.update(logits, batch["masks"], batch["annotated"])
        self.log(f"{stage}/miou", miou, prog_bar=True, batch_size=bs)
        self.log(f"{stage}/fscore", fscore, batch_size=bs)

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self._eval_step(batch, self.val_miou, self.val_fscore, "val")

    def test_step(self, batch: dict, batch_idx: int) -> None:
        self._eval_step(batch, self.test_miou, self.test_fscore, "test")

    def configure_optimizers(self):
        return torch.optim.Adam([p for p in self.model.parameters() if p.requires_grad], lr=self.train_config.lr)


@dataclass
class AvsTrainResult:
    run_dir: Path
    adapter: Path
    best_epoch: int | None
    best_val_miou: float | None
    test: dict | None
    epochs_run: int
    seconds: float


def train_avs(data: str | Path, out: str | Path, model_config: AvsModelConfig, train_config: AvsTrainConfig, *,
              pretrained: bool = False, backbone_weights: str | None = None, resume: bool = False,
              progress: bool = True, test: bool = True) -> AvsTrainResult:
    """Train an AVS model on a prepared cache into the run folder ``out`` (see module doc).

    The mask size of the model is the cache's (``avs.json``)."""
    start = time.monotonic()
    out = check_run_dir(out, resume)
    L.seed_everything(train_config.seed, workers=True, verbose=False)
    dm = AvsDataModule(data, backbone=model_config.backbone, batch_size=train_config.batch_size,
                       seed=train_config.seed, num_workers=train_config.num_workers)
    model_config = dataclasses.replace(model_config, mask_size=dm.mask_size)
    meta = {"task": "avs", "subset": dm.subset, "pretrained": pretrained, "backbone_weights": backbone_weights,
            "frontend": dm.manifest["frontend"]["name"], "frame_size": dm.manifest["frame_size"]}
    record_run(out, resume, model=model_config.to_dict(), train=train_config, data=data, meta=meta)
    task = AvsTask(model_config.to_dict(), dataclasses.asdict(train_config), pretrained, backbone_weights)
    task.model.backbone.checkpointing = model_config.checkpointing
    export = ExportBest(out / ADAPTER_FILE, MONITOR, meta)
    # ln_before of the AVS adapters, path4.rcu1 and (without TPAVI) audio_linear get no gradient (authors')
    trainer = make_trainer(out, train_config, export, progress=progress, find_unused_parameters=True)
    trainer.fit(task, datamodule=dm, ckpt_path=str(last_checkpoint(out)) if resume else None)
    test_result = None
    if test and trainer.is_global_zero and (out / ADAPTER_FILE).exists():
        test_result = evaluate_avs(out / ADAPTER_FILE, data, split="test", backbone_weights=backbone_weights,
                                   progress=False)
    result = AvsTrainResult(out, out / ADAPTER_FILE, export.best_epoch, export.best, test_result,
                            trainer.current_epoch, time.monotonic() - start)
    write_results(out, trainer, {
        "best_epoch": result.best_epoch, "best_val_miou": result.best_val_miou,
        "test_miou": test_result and test_result["miou"], "test_fscore": test_result and test_result["fscore"],
        "epochs_run": result.epochs_run, "seconds": round(result.seconds, 1),
    })
    return result


def load_avs_model(checkpoint: str | Path, *, backbone_weights: str | None = None) -> tuple[AvsModel, dict]:
    """An AvsModel rebuilt from an adapter file (config + meta inside), in eval mode; returns (model, meta)."""
    return load_task_model(checkpoint, task="avs", config_cls=AvsModelConfig, model_cls=AvsModel,
                           backbone_weights=backbone_weights)


def baseline_scores(data: str | Path, *, backbone: str, split: str = "test") -> dict:
    """mIoU / F-score of the trivial predictions on a split: every pixel background, every pixel object."""
    dm = AvsDataModule(data, backbone=backbone, batch_size=1)
    out = {}
    for name, value in (("all background", -20.0), ("all object", 20.0)):
        miou, fscore = AvsMIoU(), AvsFScore()
        for batch in DataLoader(dm.dataset(split), batch_size=4, collate_fn=collate):
            logits = torch.full(batch["masks"].shape, value)
            miou.update(logits, batch["masks"], batch["annotated"])
            fscore.update(logits, batch["masks"], batch["annotated"])
        out[name] = {"miou": float(miou.compute()), "fscore": float(fscore.compute())}
    return out


@torch.no_grad()
def evaluate_avs(checkpoint: str | Path, data: str | Path, *, split: str = "test",
                 backbone_weights: str | None = None, batch_size: int = 2, progress: bool = True) -> dict:
    """Benchmark mIoU and F-score of an adapter file on a cache split (per-video means, see avs_metrics)."""
    model, meta = load_avs_model(checkpoint, backbone_weights=backbone_weights)
    dm = AvsDataModule(data, backbone=model.config.backbone, batch_size=batch_size)
    if dm.mask_size != model.config.mask_size:
        raise DataError(f"{data}: cache masks are {dm.mask_size}, checkpoint {checkpoint} predicts "
                        f"{model.config.mask_size}")
    miou, fscore = AvsMIoU(sync_on_compute=False), AvsFScore(sync_on_compute=False)
    ds = dm.dataset(split)
    frames = 0
    from tqdm import tqdm

    for batch in tqdm(DataLoader(ds, batch_size=batch_size, collate_fn=collate), desc=f"eval {split}",
                      disable=not progress, leave=False):
        logits = model(batch["audio"], normalize_frames(batch["frames"]))
        miou.update(logits, batch["masks"], batch["annotated"])
        fscore.update(logits, batch["masks"], batch["annotated"])
        frames += int(batch["annotated"].sum())
    return {"split": split, "subset": dm.subset, "videos": len(ds), "frames": frames,
            "miou": float(miou.compute()), "fscore": float(fscore.compute())}


@torch.no_grad()
def predict_avs_video(model: AvsModel, meta: dict, path: str | Path, out: str | Path, *,
                      clip_seconds: int = 5) -> dict:
    """Masks of the sounding objects of any video, one per second, written under ``out``.

    Writes ``out/<stem>_<second>.png`` (0/255 masks at the model's mask size) and ``out/<stem>_sheet.png`` (the
    frames with the masks overlaid in red, one tile per second). The video is cut into clips of
    ``clip_seconds`` one-second segments (the benchmark's 5; a shorter last clip runs as it is). Returns
    {video, duration, has_audio, masks: [paths], sheet, coverage: [fraction of each frame masked]}.
    """
    from PIL import Image

    from lavish.fileio import write_bytes
    from lavish.media.decode import decode_clip

    path, out = Path(path), Path(out)
    clip = decode_clip(path, num_segments=None, frame_size=tuple(meta["frame_size"]), frontend=meta["frontend"])
    frames, audio = torch.from_numpy(clip.frames), torch.from_numpy(clip.spectrograms)
    probs = []
    for s in range(0, len(frames), clip_seconds):
        logits = model(audio[s:s + clip_seconds][None], normalize_frames(frames[s:s + clip_seconds])[None])[0]
        probs.append(torch.sigmoid(logits))
    masks = (torch.cat(probs) > 0.5).numpy()
    h, w = masks.shape[-2:]
    written, tiles = [], []
    for k, (mask, frame) in enumerate(zip(masks, clip.frames)):
        target = out / f"{path.stem}_{k + 1}.png"
        write_bytes(target, _png((mask * 255).astype(np.uint8)))
        written.append(str(target))
        tile = np.asarray(Image.fromarray(frame).resize((w, h), Image.BILINEAR), dtype=np.float32)
        tile[mask] = 0.45 * tile[mask] + 0.55 * np.array([255.0, 0.0, 0.0])
        tiles.append(tile.astype(np.uint8))
    sheet = out / f"{path.stem}_sheet.png"
    write_bytes(sheet, _png(np.concatenate(tiles, axis=1)))
    return {"video": str(path), "duration": clip.duration, "has_audio": clip.has_audio, "masks": written,
            "sheet": str(sheet), "coverage": [round(float(m.mean()), 4) for m in masks]}


def _png(array: np.ndarray) -> bytes:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()
