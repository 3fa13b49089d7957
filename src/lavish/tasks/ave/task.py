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
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import torch
from torchmetrics.classification import MulticlassAccuracy

from lavish.data.cache import CacheDataset
from lavish.tasks.ave.prepare import prepare_ave
from lavish.tasks.ave.synthetic import make_synthetic_ave
from lavish.errors import DataError
from lavish.media.frames import normalize_frames
from lavish.engine.module import TaskModule, head_and_adapter_groups
from lavish.engine.runner import TrainConfig
from lavish.engine.task import MIN_DURATION, DemoOptions, Option, Task, TrainResult
from lavish.tasks.ave.dataset import AveDataModule
from lavish.tasks.ave.metrics import AveEvaluation
from lavish.tasks.ave.model import EXTRA_FROM_CACHE, AveModel, AveModelConfig, ave_loss
from lavish.tasks.ave.predict import AvePrediction


@dataclass
class AveTrainConfig(TrainConfig):
    """Training settings; defaults are the authors' AVE recipe."""

    LR_FIELDS: ClassVar[tuple[str, ...]] = ("lr", "lr_head")

    lr: float = 5e-5
    """learning rate of the adapters (and any other trainable part but the head)"""
    lr_head: float = 4e-6


class AveTask(Task):
    """Audio-visual event localisation: a label (28 events + background) for every second of a 10-s video."""

    name = "ave"
    demo_clips = "data/AVE"
    order = 0
    family_frontends = {"vit": "ave_vit"}  # the authors' ViT AVE front-end (128 mel bins, 10 ms shift)
    title = "audio-visual event localisation (AVE)"
    model_config_cls = AveModelConfig
    model_cls = AveModel
    train_config_cls = AveTrainConfig
    data_module_cls = AveDataModule
    prepare = staticmethod(prepare_ave)
    synthetic = staticmethod(make_synthetic_ave)
    monitor = "acc"
    lr_help = "adapter learning rate"
    predict_outputs = ("plot",)
    prediction_cls = AvePrediction
    options = (
        MIN_DURATION,
        Option(("--lr-head",), {"type": float, "help": "head learning rate"}),
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
    def predict_lines(self, res: dict) -> list[str]:
        lines = [f"{res['video']} ({res['duration']:.1f} s{'' if res['has_audio'] else ', no audio'})"]
        lines += [f"  {s['second']:>4d} s  {s['label']:<40} {s['probability']:.3f}" for s in res["seconds"]]
        lines += [f"  event {e['label']}: {e['start']:.0f}-{e['end']:.0f} s ({e['probability']:.3f})" for e in res.get("events", ())]
        if res.get("error"):
            lines.append(f"  stopped: {res['error']}")
        if res.get("plot"):
            lines.append(f"  timeline: {', '.join(res.get('plots') or [res['plot']])}")
        return lines

    # ----------------------------------------------------------------------------------------------- demo
    def demo(self, options: DemoOptions) -> int:
        """Synthetic AVE layout -> prepare -> train audio-visual LAVISH, vision only and audio only (Table 7's
        comparison) -> test accuracy table and bar plot -> predict one test clip with its timeline."""
        from lavish.engine.demo import Demo
        from lavish.engine.plots import plot_bars
        from lavish.fileio import write_json
        from lavish.models.adapters import PRESETS

        demo = Demo(self, options, steps=5, min_videos=10,
                    why="the demo needs at least 10 (train/val/test splits)")
        demo.dataset(f"synthetic AVE-layout dataset: {options.videos} videos, {options.classes} classes",
                     "Annotations.txt", lambda data: make_synthetic_ave(
                         data, num_videos=options.videos, num_classes=options.classes, seed=options.seed,
                         workers=options.workers))
        demo.prepare()
        rows = []
        for name, modalities in DEMO_VARIANTS.items():
            run_dir = demo.out / "runs" / modalities
            adapter = demo.train(name, run_dir,
                                 AveModelConfig(backbone=demo.backbone, adapter=PRESETS["ave"], modalities=modalities),
                                 AveTrainConfig(epochs=options.epochs, batch_size=4, lr=1e-3, lr_head=1e-3,
                                                patience=options.epochs, seed=options.seed))
            result = demo.evaluate(adapter)
            val = json.loads((run_dir / "results.json").read_text())["best_val_acc"]
            rows.append((name, result["accuracy"], val))
        print("[4/5] test accuracy (segments, background included)")
        print(f"      {'model':<24} {'val acc':>8} {'test acc':>9}")
        for name, test_acc, val_acc in rows:
            print(f"      {name:<24} {val_acc:>8.3f} {test_acc:>9.3f}")
        write_json(demo.out / "results.json", {name: {"test_accuracy": t, "val_accuracy": v} for name, t, v in rows})
        plot = plot_bars([r[0].split(" (")[0] for r in rows], [r[1] for r in rows], "Synthetic AVE: test accuracy",
                         demo.out / "demo.png")
        _, model, meta = demo.load(demo.out / "runs" / "av" / "best.safetensors")
        ds = CacheDataset(demo.cache, "test")
        video = demo.data / "AVE" / f"{ds.items[ds.indices[0]]['video_id']}.mp4"
        pred = self.predict(model, meta, video, plot=demo.out / "timeline.png")
        print(f"[5/5] predict {video}: " + " ".join(s["label"].split(" ")[0][:6] for s in pred["seconds"]))
        return demo.finish(f"plots: {plot}, {pred['plot']}; table: {demo.out / 'results.json'}")


#: the demo's three runs (Table 7's comparison): name -> modalities
DEMO_VARIANTS = {"audio-visual (LAVISH)": "av", "vision only": "v", "audio only": "a"}
