"""AVS: audio-visual segmentation on AVSBench S4 / MS3 (spec 3.2, 4) on the Task interface.

Recipe (the authors' README command, ``AVS/avs_scripts/avs_s4/train.py``): Adam lr 1e-4 on everything trainable,
no weight decay, no scheduler, batch of 4 clips (20 frames), loss = BCE between sigmoid(logits) and the mask of
each annotated frame (S4 train: the first frame only, as the benchmark; MS3 and S4 val/test: all five), up to
30 epochs, early stopping after 5 without improvement of mIoU. Metrics: :mod:`lavish.tasks.avs_metrics`.
Defaults of the model: Swin-V2-L, AVS adapter preset, no TPAVI (``--tpavi all`` = their train.sh). ``--subset``
says which AVSBench subset the cache must hold (the cache knows which frames are annotated).

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

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from lavish.data.cache import AveCacheDataset, read_json
from lavish.data.prepare import AVS_INFO, prepare_avs
from lavish.errors import ConfigError, DataError
from lavish.media.frames import normalize_frames
from lavish.models.avs import TPAVI_PRESETS, AvsModel, AvsModelConfig
from lavish.tasks.avs_metrics import AvsFScore, AvsMIoU
from lavish.tasks.base import DemoOptions, Evaluation, Option, Task, TrainResult
from lavish.tasks.runner import SplitDataModule, TrainConfig


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


def avs_loss(logits: torch.Tensor, masks: torch.Tensor, annotated: torch.Tensor) -> torch.Tensor:
    """Mean BCE over the pixels of the annotated frames, in float32.

    logits: (B, T, H, W); masks: (B, T, H, W) 0/1; annotated: (B, T) bool.
    """
    with torch.autocast(device_type=logits.device.type, enabled=False):
        return F.binary_cross_entropy_with_logits(logits[annotated].float(), masks[annotated].float())


class AvsEvaluation(Evaluation):
    """The benchmark's mIoU and F-score (per-video means, see :mod:`lavish.tasks.avs_metrics`)."""

    def __init__(self, split: str, subset: str, videos: int) -> None:
        self.split, self.subset, self.videos, self.frames = split, subset, videos, 0
        # rank 0 alone evaluates after DDP: no synchronisation
        self.miou, self.fscore = AvsMIoU(sync_on_compute=False), AvsFScore(sync_on_compute=False)

    def update(self, logits: torch.Tensor, batch: dict) -> None:
        self.miou.update(logits, batch["masks"], batch["annotated"])
        self.fscore.update(logits, batch["masks"], batch["annotated"])
        self.frames += int(batch["annotated"].sum())

    def result(self) -> dict:
        return {"split": self.split, "subset": self.subset, "videos": self.videos, "frames": self.frames,
                "miou": float(self.miou.compute()), "fscore": float(self.fscore.compute())}


def baseline_scores(data: str | Path, *, backbone: str, split: str = "test") -> dict:
    """mIoU / F-score of the trivial predictions on a split: every pixel background, every pixel object."""
    dm = AvsDataModule(data, backbone=backbone, batch_size=1)
    out = {}
    for name, value in (("all background", -20.0), ("all object", 20.0)):
        ev = AvsEvaluation(split, dm.subset, len(dm.dataset(split)))
        for batch in DataLoader(dm.dataset(split), batch_size=4, collate_fn=collate):
            ev.update(torch.full(batch["masks"].shape, value), batch)
        out[name] = {k: ev.result()[k] for k in ("miou", "fscore")}
    return out


class AvsTask(Task):
    """Audio-visual segmentation: the mask of the sounding object(s) in every frame of a 5-s clip."""

    name = "avs"
    title = "audio-visual segmentation (AVSBench S4 / MS3)"
    unit = "clips"
    model_config_cls = AvsModelConfig
    model_cls = AvsModel
    train_config_cls = AvsTrainConfig
    data_module_cls = AvsDataModule
    prepare = staticmethod(prepare_avs)
    summary = (("miou", "mIoU"), ("fscore", "F-score"))
    monitor = "miou"
    modalities = ("av", "v")  # segmentation needs frames: no audio-only model
    lr_help = "learning rate of everything trainable (default 1e-4)"
    # ln_before of the AVS adapters, path4.rcu1 and (without TPAVI) audio_linear get no gradient (authors')
    find_unused_parameters = True
    predict_outputs = ("out",)
    demo_backbone = "lavish_swinv2_micro_window4_64"
    data_options = ("subset",)
    options = (
        Option(("--subset",), {"choices": ("s4", "ms3"),
                               "help": "AVSBench subset the cache must hold (default: the cache's)"}),
        Option(("--tpavi",), {"choices": tuple(TPAVI_PRESETS),
                              "help": "TPAVI stages: none (README run, default) or all four (train.sh)"}),
        Option(("--decoder-channels",), {"type": int, "help": "decoder width (default 256, the authors')"}),
    )
    real_run = ("A real run: lavish prepare avs --root AVSBench/Single-source --out s4-cache; "
                "lavish train avs --subset s4 --data s4-cache --out runs/s4 (see docs/avs.md)")

    def data_module(self, data, *, backbone, batch_size, seed=0, num_workers=0, model_config=None, meta=None,
                    subset=None):
        return AvsDataModule(data, backbone=backbone, batch_size=batch_size, seed=seed, num_workers=num_workers,
                             subset=subset)

    def model_settings(self, values: dict) -> dict:
        values = dict(values)
        if "tpavi" in values:
            values["tpavi_stages"] = TPAVI_PRESETS[values.pop("tpavi")]
        return values

    def fit_model_config(self, model_config: AvsModelConfig, dm: AvsDataModule):
        return dataclasses.replace(model_config, mask_size=dm.mask_size), {"subset": dm.subset}

    def check_model_data(self, model, meta, dm: AvsDataModule, checkpoint: Path) -> None:
        if dm.mask_size != model.config.mask_size:
            raise DataError(f"{dm.cache_dir}: cache masks are {dm.mask_size}, checkpoint {checkpoint} predicts "
                            f"{model.config.mask_size}")

    def forward(self, model: AvsModel, batch: dict) -> torch.Tensor:
        """Mask logits (B, T, H_m, W_m)."""
        return model(batch["audio"], normalize_frames(batch["frames"], *model.backbone.frame_stats))

    def loss(self, logits: torch.Tensor, batch: dict) -> torch.Tensor:
        return avs_loss(logits, batch["masks"], batch["annotated"])

    def metrics(self, stage: str, model: AvsModel) -> dict:
        return {} if stage == "train" else {"miou": AvsMIoU(), "fscore": AvsFScore()}

    def update_metrics(self, metrics, logits, batch) -> None:
        for metric in metrics.values():
            metric.update(logits, batch["masks"], batch["annotated"])

    def results(self, result: TrainResult) -> dict:
        test = result.test or {}
        return {"best_epoch": result.best_epoch, "best_val_miou": result.best_value,
                "test_miou": test.get("miou"), "test_fscore": test.get("fscore"),
                "epochs_run": result.epochs_run, "seconds": round(result.seconds, 1)}

    def evaluation(self, model, meta, dm: AvsDataModule, split: str) -> AvsEvaluation:
        return AvsEvaluation(split, dm.subset, len(dm.dataset(split)))

    def eval_lines(self, result: dict) -> list[str]:
        return [f"{result['subset']} {result['split']}: mIoU {result['miou']:.4f}, F-score {result['fscore']:.4f} "
                f"over {result['videos']} clips ({result['frames']} annotated frames)"]

    @torch.no_grad()
    def predict(self, model: AvsModel, meta: dict, video, *, out=None, clip_seconds: int = 5,
                arrays: bool = False) -> dict:
        """Masks of the sounding objects of any video, one per second.

        Returns {video, duration, has_audio, coverage: [fraction of each frame masked]}; with ``out`` it writes
        ``out/<stem>_<second>.png`` (0/255 masks at the model's mask size) and ``out/<stem>_sheet.png`` (the
        frames with the masks overlaid in red) and adds ``masks`` (their paths) and ``sheet``; with ``arrays`` it
        adds ``mask_array`` (T, H_m, W_m) bool and ``frames`` (T, H, W, 3) uint8. The video is cut into clips of
        ``clip_seconds`` one-second segments (the benchmark's 5; a shorter last clip runs as it is).
        """
        from lavish.media.decode import decode_clip

        video = Path(video)
        clip = decode_clip(video, num_segments=None, frame_size=tuple(meta["frame_size"]), frontend=meta["frontend"])
        frames, audio = torch.from_numpy(clip.frames), torch.from_numpy(clip.spectrograms)
        probs = []
        for s in range(0, len(frames), clip_seconds):
            logits = model(audio[s:s + clip_seconds][None], normalize_frames(frames[s:s + clip_seconds], *model.backbone.frame_stats)[None])[0]
            probs.append(torch.sigmoid(logits))
        masks = (torch.cat(probs) > 0.5).numpy()
        result = {"video": str(video), "duration": clip.duration, "has_audio": clip.has_audio,
                  "coverage": [round(float(m.mean()), 4) for m in masks]}
        if out is not None:
            result.update(write_masks(masks, clip.frames, Path(out), video.stem))
        if arrays:
            result.update(mask_array=masks, frames=clip.frames)
        return result

    def predict_lines(self, res: dict) -> list[str]:
        lines = [f"{res['video']} ({res['duration']:.1f} s{'' if res['has_audio'] else ', no audio'}): "
                 f"{len(res['coverage'])} masks, coverage " + " ".join(f"{c:.2f}" for c in res["coverage"])]
        if res.get("sheet"):
            lines.append(f"  contact sheet: {res['sheet']}")
        return lines

    def demo(self, options: DemoOptions) -> int:
        """Synthetic S4-layout data -> prepare -> train (LAVISH + TPAVI, micro Swin-V2) -> test mIoU / F-score next
        to the all-background and all-object baselines -> predict one clip."""
        from PIL import Image

        from lavish.data.avs import read_avs
        from lavish.fileio import write_json
        from lavish.data.synthetic_avs import make_synthetic_avs
        from lavish.media.decode import read_audio
        from lavish.media.writer import write_video
        from lavish.tasks.base import evaluate, load, train

        if options.videos < 12:
            raise ConfigError(f"videos={options.videos} is not valid: the AVS demo needs at least 12")
        start = time.monotonic()
        backbone = options.backbone or self.demo_backbone
        out = Path(options.out)
        data, cache = out / "data", out / "cache"
        print(f"[1/5] synthetic AVSBench-S4 dataset: {options.videos} clips -> {data}")
        if not (data / "s4_meta_data.csv").exists():
            make_synthetic_avs(data, num_videos=options.videos, num_classes=options.classes, seed=options.seed)
        self.demo_cache(data, cache, backbone, options, "2/5")
        run_dir = out / "runs" / "avs"
        print(f"[3/5] train LAVISH + TPAVI ({backbone}) -> {run_dir}")
        if not (run_dir / "results.json").exists():
            model = AvsModelConfig(backbone=backbone, tpavi_stages=(0, 1, 2, 3), decoder_channels=64)
            cfg = AvsTrainConfig(epochs=options.epochs, batch_size=4, lr=1e-3, patience=options.epochs,
                                 seed=options.seed)
            train(self, cache, run_dir, model, cfg, pretrained=False, progress=options.progress, test=False)
        result = evaluate(run_dir / "best.safetensors", cache, split="test", progress=False)
        rows = {"LAVISH (audio-visual)": {"miou": result["miou"], "fscore": result["fscore"]},
                **baseline_scores(cache, backbone=backbone, split="test")}
        print(f"[4/5] test split ({result['videos']} clips, {result['frames']} annotated frames)")
        print(f"      {'model':<24} {'mIoU':>7} {'F-score':>8}")
        for name, r in rows.items():
            print(f"      {name:<24} {r['miou']:>7.3f} {r['fscore']:>8.3f}")
        write_json(out / "results.json", rows)
        rec = next(r for r in read_avs(data, "s4") if r.split == "test")
        frames = np.stack([np.asarray(Image.open(p).convert("RGB")) for p in rec.frames])
        video = write_video(out / f"{rec.name}.mp4", np.repeat(frames, 4, axis=0), 4, read_audio(rec.audio))
        _, model, meta = load(run_dir / "best.safetensors")
        pred = self.predict(model, meta, video, out=out / "predict")
        print(f"[5/5] predict {video}: contact sheet {pred['sheet']}")
        print(f"table: {out / 'results.json'}; {time.monotonic() - start:.0f} s in all")
        print(self.real_run)
        return 0


def write_masks(masks: np.ndarray, frames: np.ndarray, out: Path, stem: str) -> dict:
    """Mask PNGs (0/255) and a contact sheet (frames with the masks in red) under ``out``: {masks, sheet}.

    masks: (T, H_m, W_m) bool; frames: (T, H, W, 3) uint8."""
    from PIL import Image

    from lavish.fileio import write_bytes

    h, w = masks.shape[-2:]
    written, tiles = [], []
    for k, (mask, frame) in enumerate(zip(masks, frames)):
        target = out / f"{stem}_{k + 1}.png"
        write_bytes(target, _png((mask * 255).astype(np.uint8)))
        written.append(str(target))
        tile = np.asarray(Image.fromarray(frame).resize((w, h), Image.BILINEAR), dtype=np.float32)
        tile[mask] = 0.45 * tile[mask] + 0.55 * np.array([255.0, 0.0, 0.0])
        tiles.append(tile.astype(np.uint8))
    sheet = out / f"{stem}_sheet.png"
    write_bytes(sheet, _png(np.concatenate(tiles, axis=1)))
    return {"masks": written, "sheet": str(sheet)}


def _png(array: np.ndarray) -> bytes:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()
