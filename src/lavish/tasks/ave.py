"""AVE: audio-visual event localisation (spec 3.1, 4) on the Task interface.

Recipe (the authors' README command, ``AVE/main_trans.py``): Adam without weight decay, lr 5e-5 for the adapters
and 4e-6 for the head (``mlp_class*``), no scheduler, batch of 2 videos (20 one-second segments), loss = BCE
between the softmax over 29 classes and the one-hot label, up to 50 epochs with early stopping after 5 epochs
without improvement. Accuracy = fraction of segments whose argmax is right, background included.

Table 8 (+VGGish): ``lavish prepare ave --extra-audio-features AVE/audio_feature.h5`` stores the release's
per-second features (rows, 10, 128) in the cache beside the frames (``extra_audio.npy``, one row per cache item),
and ``lavish train ave --extra-audio-features`` builds the head on [visual, audio, extra]; the final test
evaluation and ``lavish eval`` read them from the cache. They cannot be computed for a new video here (no VGGish
model offline): ``lavish predict`` on such a model needs ``--extra-features FILE.npy`` ((seconds, 128) float).

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

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset
from torchmetrics.classification import MulticlassAccuracy, MulticlassConfusionMatrix

from lavish.data.cache import EXTRA_AUDIO, AveCacheDataset
from lavish.data.prepare import prepare_ave
from lavish.errors import ConfigError, DataError
from lavish.media.frames import normalize_frames
from lavish.models.ave import EXTRA_FROM_CACHE, AveModel, AveModelConfig
from lavish.tasks.base import (DemoOptions, Evaluation, Option, Task, TaskModule, TrainResult,
                               head_and_adapter_groups)
from lavish.tasks.runner import SplitDataModule, TrainConfig


@dataclass
class AveTrainConfig(TrainConfig):
    """Training settings; defaults are the authors' AVE recipe."""

    LR_FIELDS: ClassVar[tuple[str, ...]] = ("lr", "lr_head")

    lr: float = 5e-5
    """learning rate of the adapters (and any other trainable part but the head)"""
    lr_head: float = 4e-6


class WithExtraFeatures(Dataset):
    """Adds ``extra`` (T, E) float32 per item from the cache's ``extra_audio.npy`` (items, T, E) (Table 8)."""

    def __init__(self, base: AveCacheDataset, features: np.ndarray) -> None:
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
        ds = AveCacheDataset(self.cache_dir, split)
        return ds if self.extra is None else WithExtraFeatures(ds, self.extra)


def ave_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """BCE(softmax(logits), one-hot(labels)), mean over all entries (the authors' loss), in float32.

    logits: (B, T, K), labels: (B, T) int64. A non-finite logit makes the loss NaN (``binary_cross_entropy``
    would raise on a NaN probability instead): the training step reports it with its step number.
    """
    with torch.autocast(device_type=logits.device.type, enabled=False):
        logits = logits.float()
        probs = logits.softmax(-1)
        # one-hot by comparison, not F.one_hot: that reads the labels' min and max on the host (two syncs a step,
        # which keep a step from being captured whole); labels come from a validated cache
        target = (labels.unsqueeze(-1) == torch.arange(logits.shape[-1], device=labels.device)).float()
        # exactly 0 for finite logits, NaN otherwise; NaN probabilities are replaced so that BCE does not raise
        poison = logits.sum() * 0.0
        return F.binary_cross_entropy(torch.nan_to_num(probs, nan=0.5), target) + poison


class AveEvaluation(Evaluation):
    """Segment accuracy (background included), per-class accuracy and the confusion matrix."""

    def __init__(self, classes: list[str], split: str, confusion_png: str | Path | None) -> None:
        self.classes, self.split, self.png = classes, split, confusion_png
        # rank 0 alone evaluates after DDP: no synchronisation
        self.confusion = MulticlassConfusionMatrix(len(classes), sync_on_compute=False)

    def update(self, logits: torch.Tensor, batch: dict) -> None:
        self.confusion.update(logits.argmax(-1).flatten(), batch["labels"].flatten())

    def result(self) -> dict:
        cm = self.confusion.compute().numpy()
        total = cm.sum()
        k = len(self.classes)
        per_class = {self.classes[i]: (float(cm[i, i] / cm[i].sum()) if cm[i].sum() else None) for i in range(k)}
        result = {"split": self.split, "segments": int(total),
                  "accuracy": float(np.trace(cm) / total) if total else 0.0,
                  "per_class": per_class, "confusion": cm.tolist(), "classes": self.classes}
        if self.png is not None:
            from lavish.tasks.plots import plot_confusion

            result["confusion_png"] = str(plot_confusion(cm, self.classes, self.png))
        return result


class AveTask(Task):
    """Audio-visual event localisation: a label (28 events + background) for every second of a 10-s video."""

    name = "ave"
    title = "audio-visual event localisation (AVE)"
    model_config_cls = AveModelConfig
    model_cls = AveModel
    train_config_cls = AveTrainConfig
    data_module_cls = AveDataModule
    prepare = staticmethod(prepare_ave)
    monitor = "acc"
    lr_help = "adapter learning rate (default 5e-5)"
    predict_outputs = ("plot",)
    options = (
        Option(("--lr-head",), {"type": float, "help": "head learning rate (default 4e-6)"}),
        Option(("--extra-audio-features",), {
            "action": "store_true", "default": None,
            "help": "train on the extra per-second audio features the cache holds (Table 8, VGGish: prepare "
                    "with --extra-audio-features FILE.h5)"}),
        Option(("--extra-audio-features",), {
            "metavar": "FILE.h5", "dest": "extra_audio_features",
            "help": "h5 file of per-second audio features indexed by annotation row (dataset 'avadataset', "
                    "(rows, 10, E); the AVE release's audio_feature.h5 for Table 8), stored in the cache"},
               commands=("prepare",)),
        Option(("--extra-features",), {
            "metavar": "FILE.npy", "help": "(seconds, E) float array of the video's extra audio features, for a "
                                           "model trained with them (Table 8)"}, commands=("predict",)),
        Option(("--confusion",), {"metavar": "PNG", "dest": "confusion_png",
                                                  "help": "also draw the confusion matrix into this PNG"},
               commands=("eval",)),
    )
    real_run = (
        "A real run uses pretrained weights and the AVE dataset: download AVE (4,143 videos, Tian et al. ECCV 2018), "
        "then\n  lavish prepare ave --root AVE_ROOT --out ave-cache --workers 8\n"
        "  lavish train ave --data ave-cache --out runs/ave-swinv2-l      # Swin-V2-L, the paper's recipe\n"
        "(offline machines: add --backbone-weights swinv2_large_window12_192.safetensors). See docs/reproduce.md."
    )

    # ----------------------------------------------------------------------------------------------- data
    def data_module(self, data, *, backbone, batch_size, seed=0, num_workers=0, model_config=None, meta=None):
        extra = bool(model_config is not None and model_config.extra_audio_dim)
        return AveDataModule(data, backbone=backbone, batch_size=batch_size, seed=seed, num_workers=num_workers,
                             extra=extra)

    def model_settings(self, values: dict) -> dict:
        values = dict(values)
        if values.pop("extra_audio_features", None):
            values["extra_audio_dim"] = EXTRA_FROM_CACHE
        return values

    def fit_model_config(self, model_config: AveModelConfig, dm: AveDataModule):
        classes = dm.classes
        extra = model_config.extra_audio_dim
        if extra not in (0, EXTRA_FROM_CACHE) and extra != dm.extra_dim:
            raise DataError(f"{dm.cache_dir}: the cache's extra audio features are {dm.extra_dim} wide, the model "
                            f"config asks for {extra}")
        config = dataclasses.replace(model_config, extra_audio_dim=dm.extra_dim, num_classes=len(classes) + 1)
        return config, {"classes": classes + ["background"]}

    def check_model_data(self, model, meta, dm: AveDataModule, checkpoint: Path) -> None:
        cache_classes = dm.classes + ["background"]
        classes = meta.get("classes") or cache_classes
        if classes != cache_classes or len(classes) != model.config.num_classes:
            raise DataError(f"{dm.cache_dir}: the cache's {len(cache_classes)} classes ({', '.join(cache_classes[:3])},"
                            f" ...) are not the {model.config.num_classes} classes checkpoint {checkpoint} was "
                            "trained on")
        if model.config.extra_audio_dim != dm.extra_dim:
            raise DataError(f"{dm.cache_dir}: checkpoint {checkpoint} needs {model.config.extra_audio_dim}-wide extra "
                            f"audio features, the cache holds {dm.extra_dim or 'none'}")

    # ---------------------------------------------------------------------------------------------- model
    def forward(self, model: AveModel, batch: dict) -> torch.Tensor:
        """Logits (B, T, K)."""
        return model(batch["audio"], normalize_frames(batch["frames"], *model.backbone.frame_stats), batch.get("extra"))

    def loss(self, logits: torch.Tensor, batch: dict) -> torch.Tensor:
        return ave_loss(logits, batch["labels"])

    def metrics(self, stage: str, model: AveModel) -> dict:
        return {"acc": MulticlassAccuracy(model.config.num_classes, average="micro")}

    def update_metrics(self, metrics, logits, batch) -> None:
        metrics["acc"].update(logits.argmax(-1).flatten(), batch["labels"].flatten())

    def configure_optimizers(self, module: TaskModule):
        cfg = module.train_config
        groups = head_and_adapter_groups(module.model, cfg.lr_head, cfg.lr)
        return torch.optim.Adam(groups)

    def results(self, result: TrainResult) -> dict:
        return {"best_epoch": result.best_epoch, "best_val_acc": result.best_value,
                "test_acc": None if result.test is None else result.test["accuracy"],
                "epochs_run": result.epochs_run, "seconds": round(result.seconds, 1)}

    # ----------------------------------------------------------------------------------------- evaluation
    def evaluation(self, model, meta, dm, split, *, confusion_png=None) -> AveEvaluation:
        return AveEvaluation(meta.get("classes") or dm.classes + ["background"], split, confusion_png)

    def eval_lines(self, result: dict) -> list[str]:
        lines = [f"{result['split']}: accuracy {result['accuracy']:.4f} over {result['segments']} segments"]
        lines += [f"  {name:<40} {'-' if acc is None else f'{acc:.3f}'}" for name, acc in result["per_class"].items()]
        if result.get("confusion_png"):
            lines.append(f"confusion matrix: {result['confusion_png']}")
        return lines

    # ----------------------------------------------------------------------------------------- prediction
    @torch.no_grad()
    def predict(self, model: AveModel, meta: dict, video, *, plot=None, extra_features=None,
                batch_seconds: int = 20, arrays: bool = False) -> dict:
        """Per-second labels of any video: {video, duration, has_audio, seconds: [{second, label, probability}]};
        ``plot``: also draw the timeline into this PNG (``plot`` key); ``extra_features``: a (seconds, E) .npy file
        for a model trained with extra audio features; ``arrays``: add ``probabilities`` (T, K) float32 and
        ``frames`` (T, H, W, 3) uint8.

        Any length >= 1 s (one segment per whole second), any codec PyAV reads, any sample rate and layout. A video
        without an audio stream is classified with a silent spectrogram (one warning; ``has_audio: false``).
        """
        from lavish.media.decode import decode_clip

        clip = decode_clip(video, num_segments=None, frame_size=tuple(meta["frame_size"]), frontend=meta["frontend"])
        extra = self._extra_for(model, video, extra_features, len(clip.frames))
        classes = meta["classes"]
        frames, audio = torch.from_numpy(clip.frames), torch.from_numpy(clip.spectrograms)
        probs = []
        for s in range(0, len(frames), batch_seconds):
            f = normalize_frames(frames[s:s + batch_seconds], *model.backbone.frame_stats)[None]
            a = audio[s:s + batch_seconds][None]
            e = None if extra is None else extra[s:s + batch_seconds][None]
            probs.append(model(a, f, e)[0].softmax(-1))
        probs = torch.cat(probs)
        best, idx = probs.max(-1)
        seconds = [{"second": i, "label": classes[int(k)], "probability": round(float(p), 4)}
                   for i, (k, p) in enumerate(zip(idx, best))]
        result = {"video": str(video), "duration": clip.duration, "has_audio": clip.has_audio, "seconds": seconds}
        if plot is not None:
            from lavish.tasks.plots import plot_timeline

            result["plot"] = str(plot_timeline(seconds, clip.frames, Path(video).name, plot))
        if arrays:
            result.update(probabilities=probs.numpy(), frames=clip.frames)
        return result

    @staticmethod
    def _extra_for(model: AveModel, video, path, seconds: int) -> torch.Tensor | None:
        need = model.config.extra_audio_dim
        if not need:
            if path is not None:
                raise ConfigError("--extra-features does not apply: this model was trained without extra audio "
                                  "features")
            return None
        if path is None:
            raise ConfigError(f"this model uses {need}-wide extra audio features per second (Table 8, VGGish), which "
                              f"lavish cannot compute for {video} here: pass them with --extra-features FILE.npy")
        try:
            extra = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as err:
            raise DataError(f"{path}: not a readable .npy array ({err})") from None
        if extra.ndim != 2 or extra.shape[1] != need or extra.shape[0] < seconds:
            raise DataError(f"{path}: extra features have shape {extra.shape}, the video needs ({seconds}, {need})")
        return torch.from_numpy(np.asarray(extra[:seconds], dtype=np.float32))

    def predict_lines(self, res: dict) -> list[str]:
        lines = [f"{res['video']} ({res['duration']:.1f} s{'' if res['has_audio'] else ', no audio'})"]
        lines += [f"  {s['second']:>4d} s  {s['label']:<40} {s['probability']:.3f}" for s in res["seconds"]]
        if res.get("plot"):
            lines.append(f"  timeline: {res['plot']}")
        return lines

    # ----------------------------------------------------------------------------------------------- demo
    def demo(self, options: DemoOptions) -> int:
        """Synthetic AVE layout -> prepare -> train audio-visual LAVISH, vision only and audio only (Table 7's
        comparison) -> test accuracy table and bar plot -> predict one test clip with its timeline."""
        from lavish.fileio import write_json
        from lavish.data.synthetic_ave import make_synthetic_ave
        from lavish.models.adapters import PRESETS
        from lavish.tasks.base import evaluate, load, train
        from lavish.tasks.plots import plot_bars

        if options.videos < 10:
            raise ConfigError(f"videos={options.videos} is not valid: the demo needs at least 10 (train/val/test "
                              "splits)")
        start = time.monotonic()
        backbone = options.backbone or self.demo_backbone
        out = Path(options.out)
        data, cache = out / "data", out / "cache"
        print(f"[1/5] synthetic AVE-layout dataset: {options.videos} videos, {options.classes} classes -> {data}")
        if not (data / "Annotations.txt").exists():
            make_synthetic_ave(data, num_videos=options.videos, num_classes=options.classes, seed=options.seed,
                               workers=options.workers)
        self.demo_cache(data, cache, backbone, options, "2/5")
        rows = []
        for name, modalities in DEMO_VARIANTS.items():
            run_dir = out / "runs" / modalities
            print(f"[3/5] train {name} -> {run_dir}")
            if not (run_dir / "results.json").exists():
                model = AveModelConfig(backbone=backbone, adapter=PRESETS["ave"], modalities=modalities)
                cfg = AveTrainConfig(epochs=options.epochs, batch_size=4, lr=1e-3, lr_head=1e-3,
                                     patience=options.epochs, seed=options.seed)
                train(self, cache, run_dir, model, cfg, pretrained=False, progress=options.progress, test=False)
            result = evaluate(run_dir / "best.safetensors", cache, split="test", progress=False)
            val = json.loads((run_dir / "results.json").read_text())["best_val_acc"]
            rows.append((name, result["accuracy"], val))
        print("[4/5] test accuracy (segments, background included)")
        print(f"      {'model':<24} {'val acc':>8} {'test acc':>9}")
        for name, test_acc, val_acc in rows:
            print(f"      {name:<24} {val_acc:>8.3f} {test_acc:>9.3f}")
        write_json(out / "results.json", {name: {"test_accuracy": t, "val_accuracy": v}
                                                 for name, t, v in rows})
        plot = plot_bars([r[0].split(" (")[0] for r in rows], [r[1] for r in rows], "Synthetic AVE: test accuracy",
                         out / "demo.png")
        _, model, meta = load(out / "runs" / "av" / "best.safetensors")
        ds = AveCacheDataset(cache, "test")
        video = data / "AVE" / f"{ds.items[ds.indices[0]]['video_id']}.mp4"
        pred = self.predict(model, meta, video, plot=out / "timeline.png")
        print(f"[5/5] predict {video}: " + " ".join(s["label"].split(" ")[0][:6] for s in pred["seconds"]))
        print(f"plots: {plot}, {pred['plot']}; table: {out / 'results.json'}; "
              f"{time.monotonic() - start:.0f} s in all")
        print(self.real_run)
        return 0


#: the demo's three runs (Table 7's comparison): name -> modalities
DEMO_VARIANTS = {"audio-visual (LAVISH)": "av", "vision only": "v", "audio only": "a"}
