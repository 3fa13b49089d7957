"""AVVP: audio-visual video parsing on LLP (Tian, Li and Xu, ECCV 2020) on the Task interface.

Every second of a 10-second clip: which of 25 events are heard, which are seen, learned from video-level labels
only (weak supervision). The LAVISH backbone gives per-second audio and visual features (both streams, adapters
fusing them as in AVE); the benchmark's Hybrid Attention Network head (:mod:`lavish.tasks.avvp.model`) turns them into
per-second, per-modality class probabilities and pools them (attentive MMIL over time and modality) into the
video-level prediction the loss sees.

Recipe (the benchmark's ``main_avvp.py``): Adam, lr 3e-4 for the head, StepLR (x0.1 every 10 epochs), 40 epochs,
16 clips per batch, seed 1; loss = BCE of the video-level prediction plus BCE of each modality's video-level
prediction against the labels, the visual one smoothed (0.9 y + 0.05; :func:`lavish.tasks.avvp.model.avvp_loss`;
``--no-label-smoothing`` trains on the hard labels).
The best epoch is the one with the best validation segment-level Type@AV F1, as the benchmark's script.
The adapters (which the benchmark does not have) train at lr 5e-5, LAVISH's AVE adapter rate.

Metrics (:mod:`lavish.tasks.avvp.metrics`): segment-level and event-level F1 of audio, visual and audio-visual
events, Type@AV (their mean) and Event@AV, each the mean over clips of the per-clip F1, as the benchmark's code.

Where we differ from the benchmark, on purpose:
* no early stopping in the benchmark; here ``--patience`` (default 40, i.e. none within the 40 epochs) applies;
* the backbone sees the frames and audio of each second (the benchmark used frozen ResNet-152, R(2+1)D and
  VGGish features); the model selection uses the validation split, the benchmark's ``val`` mode the same.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import torch

from lavish.engine.module import TaskModule, head_and_adapter_groups
from lavish.engine.runner import TrainConfig
from lavish.engine.task import MIN_DURATION, DemoOptions, Option, Task, TrainResult
from lavish.errors import ConfigError
from lavish.media.frames import normalize_frames
from lavish.tasks.avvp.dataset import AvvpCacheDataset, AvvpDataModule
from lavish.tasks.avvp.metrics import AvvpEvaluation, AvvpF1, format_table
from lavish.tasks.avvp.model import AvvpModel, AvvpModelConfig, avvp_loss
from lavish.tasks.avvp.prepare import prepare_avvp
from lavish.tasks.avvp.synthetic import make_synthetic_llp
from lavish.tasks.avvp.predict import AvvpPrediction


@dataclass
class AvvpTrainConfig(TrainConfig):
    """Training settings; defaults are the benchmark's recipe (adapters: LAVISH's AVE rate)."""

    LR_FIELDS: ClassVar[tuple[str, ...]] = ("lr", "lr_head")

    epochs: int = 40
    batch_size: int = 16
    lr: float = 5e-5
    """learning rate of the adapters (and any other trainable part but the head)"""
    lr_head: float = 3e-4
    patience: int = 40
    seed: int = 1
    step_size: int = 10
    """StepLR: multiply both learning rates by ``gamma`` every ``step_size`` epochs"""
    gamma: float = 0.1

    def __post_init__(self) -> None:
        super().__post_init__()
        if not isinstance(self.step_size, int) or isinstance(self.step_size, bool) or self.step_size < 1:
            raise ConfigError(f"step-size={self.step_size!r} is not valid: it must be a positive integer")
        if not (isinstance(self.gamma, (int, float)) and 0 < self.gamma <= 1):
            raise ConfigError(f"gamma={self.gamma!r} is not valid: it must be in (0, 1]")


class AvvpTask(Task):
    """Audio-visual video parsing: per second, which events are heard and which are seen (weakly supervised)."""

    name = "avvp"
    order = 3
    audio_frontend = "ave"  # 1-s segments of a 10-s clip, as AVE
    family_frontends = {"vit": "ave_vit"}
    title = "audio-visual video parsing (AVVP, LLP)"
    model_config_cls = AvvpModelConfig
    model_cls = AvvpModel
    train_config_cls = AvvpTrainConfig
    data_module_cls = AvvpDataModule
    prepare = staticmethod(prepare_avvp)
    synthetic = staticmethod(make_synthetic_llp)
    adapter_preset = "ave"  # 1-s segments of both streams, as AVE
    demo_defaults = {"videos": 80, "epochs": 12}  # weak labels: it takes ~150 steps before the micro model parses
    demo_clips = "data/LLP_dataset/video"
    monitor = "seg_type_av"
    summary = (("seg_type_av", "segment-level Type@AV F1"), ("event_type_av", "event-level Type@AV F1"),
               ("seg_audio", "audio F1"), ("seg_visual", "visual F1"), ("seg_av", "audio-visual F1"))
    lr_help = "adapter learning rate"
    predict_outputs = ("plot",)
    prediction_cls = AvvpPrediction
    options = (
        MIN_DURATION,
        Option(("--lr-head",), {"type": float, "help": "head learning rate (the benchmark's)"}),
        Option(("--step-size",), {"type": int, "metavar": "EPOCHS",
                                  "help": "multiply the learning rates by --gamma every EPOCHS epochs"}),
        Option(("--gamma",), {"type": float, "help": "learning-rate decay factor"}),
        Option(("--no-label-smoothing",), {
            "dest": "label_smoothing", "action": "store_false", "default": None,
            "help": "train the per-modality terms on the hard labels (default: the benchmark's modality-aware "
                    "smoothing, visual targets 0.95 / 0.05)"}),
        Option(("--label-smoothing",), {
            "dest": "label_smoothing", "action": "store_true", "default": None,
            "help": "the benchmark's modality-aware label smoothing (the default; overrides label_smoothing: false "
                    "in a --config file)"}),
        Option(("--han-dim",), {"type": int, "metavar": "D", "help": "HAN width"}),
        Option(("--han-heads",), {"type": int, "help": "HAN attention heads (the benchmark's)"}),
        Option(("--han-ff-dim",), {"type": int, "metavar": "D", "help": "HAN feed-forward width"}),
        Option(("--han-layers",), {"type": int, "help": "HAN layers (0: none)"}),
        Option(("--han-dropout",), {"type": float, "help": "HAN dropout"}),
        Option(("--csv-dir",), {"type": Path, "metavar": "DIR",
                                "help": "folder of the five AVVP_*.csv files (default: beside the clips)"},
               commands=("prepare",)),
    )
    real_run = (
        "A real run uses pretrained weights and LLP: download the 11,849 LLP clips (AVVP-ECCV20) and its five csv "
        "files, then\n  lavish prepare avvp --root LLP_ROOT --out llp-cache --workers 8\n"
        "  lavish train avvp --data llp-cache --out runs/avvp-swinv2-l\n"
        "(offline machines: add --backbone-weights swinv2_large_window12_192.safetensors). See docs/avvp.md."
    )

    # ----------------------------------------------------------------------------------------------- data
    def fit_model_config(self, model_config: AvvpModelConfig, dm: AvvpDataModule):
        classes = dm.classes
        return dataclasses.replace(model_config, num_classes=len(classes)), {"classes": classes}

    def check_model_data(self, model, meta, dm: AvvpDataModule, checkpoint: Path) -> None:
        from lavish.errors import DataError

        classes = meta.get("classes") or dm.classes
        if classes != dm.classes:
            raise DataError(f"{dm.cache_dir}: the cache's {len(dm.classes)} classes are not the {len(classes)} "
                            f"classes checkpoint {checkpoint} was trained on")

    # ---------------------------------------------------------------------------------------------- model
    def forward(self, model: AvvpModel, batch: dict):
        return model(batch["audio"], normalize_frames(batch["frames"], *model.backbone.frame_stats))

    def model_loss(self, model: AvvpModel, out, batch: dict) -> torch.Tensor:
        return avvp_loss(out, batch["labels"], label_smoothing=model.config.label_smoothing)

    def metrics(self, stage: str, model: AvvpModel) -> dict:
        if stage == "train":  # weak labels only: no per-second ground truth
            return {}
        return {key: AvvpF1(key) for key in ("seg_type_av", "event_type_av", "seg_audio", "seg_visual")}

    def update_metrics(self, metrics, out, batch) -> None:
        for metric in metrics.values():
            metric.update(out, batch)

    def configure_optimizers(self, module: TaskModule):
        cfg = module.train_config
        groups = head_and_adapter_groups(module.model, cfg.lr_head, cfg.lr)
        optimizer = torch.optim.Adam(groups)
        scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=cfg.step_size, gamma=cfg.gamma)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "epoch"}}

    def results(self, result: TrainResult) -> dict:
        return {"best_epoch": result.best_epoch, "best_val_seg_type_av": result.best_value, "test": result.test,
                "epochs_run": result.epochs_run, "seconds": round(result.seconds, 1)}

    # ----------------------------------------------------------------------------------------- evaluation
    def evaluation(self, model, meta, dm, split) -> AvvpEvaluation:
        if split == "train":
            raise ConfigError("the train split has video-level labels only: evaluate on val or test")
        return AvvpEvaluation(split)

    def eval_lines(self, result: dict) -> list[str]:
        return [f"{result['split']}: {result['clips']} clips, F1 (%)", *format_table(result)]

    # ----------------------------------------------------------------------------------------- prediction
    def predict_lines(self, res: dict) -> list[str]:
        lines = [f"{res['video']} ({res['duration']:.1f} s{'' if res['has_audio'] else ', no audio'})"]
        for s in res["seconds"]:
            lines.append(f"  {s['second']:>4d} s  heard: {', '.join(s['heard']) or '-':<36} "
                         f"seen: {', '.join(s['seen']) or '-'}")
        if res.get("plot"):
            lines.append(f"  timeline: {res['plot']}")
        return lines

    # ----------------------------------------------------------------------------------------------- demo
    def demo(self, options: DemoOptions) -> int:
        """Synthetic LLP layout (events heard only, seen only, or both) -> prepare -> train audio-visual LAVISH and
        a vision-only baseline -> the benchmark's F1 table on the test split -> parse one test clip."""
        from lavish.engine.demo import Demo
        from lavish.fileio import write_json
        from lavish.models.adapters import PRESETS

        demo = Demo(self, options, steps=5, min_videos=12,
                    why="the demo needs at least 12 (train/val/test splits of 3 clips or more)")
        held_out = max(3, options.videos // 5)
        demo.dataset(f"synthetic LLP-layout dataset: {options.videos} clips, {options.classes} classes",
                     "AVVP_train.csv", lambda data: make_synthetic_llp(
                         data, num_train=options.videos - 2 * held_out, num_val=held_out, num_test=held_out,
                         num_classes=options.classes, seed=options.seed, workers=options.workers,
                         progress=options.progress))
        demo.prepare()
        rows = {}
        for name, modalities in DEMO_VARIANTS.items():
            adapter = demo.train(name, demo.out / "runs" / modalities,
                                 AvvpModelConfig(backbone=demo.backbone, adapter=PRESETS["ave"], modalities=modalities),
                                 AvvpTrainConfig(epochs=options.epochs, batch_size=4, lr=1e-3, lr_head=1e-3,
                                                 patience=options.epochs, seed=options.seed))
            rows[name] = demo.evaluate(adapter)
        print("[4/5] test F1 (%), segment level")
        print(f"      {'model':<24} {'audio':>7} {'visual':>7} {'AV':>7} {'Type@AV':>8} {'event Type@AV':>14}")
        for name, r in rows.items():
            print(f"      {name:<24} {r['seg_audio']:>7.1f} {r['seg_visual']:>7.1f} {r['seg_av']:>7.1f} "
                  f"{r['seg_type_av']:>8.1f} {r['event_type_av']:>14.1f}")
        write_json(demo.out / "results.json", rows)
        _, model, meta = demo.load(demo.out / "runs" / "av" / "best.safetensors")
        ds = AvvpCacheDataset(demo.cache, "test")
        video = demo.data / "LLP_dataset" / "video" / f"{ds.items[ds.indices[0]]['video_id']}.mp4"
        pred = self.predict(model, meta, video, plot=demo.out / "timeline.png")
        events = "; ".join(f"{e['label']} {e['modality']} {e['onset']}-{e['offset']} s" for e in pred["events"])
        print(f"[5/5] predict {video}: {events or 'no event'}")
        return demo.finish(f"plot: {pred['plot']}; table: {demo.out / 'results.json'}")


#: the demo's two runs: name -> modalities
DEMO_VARIANTS = {"audio-visual (LAVISH)": "av", "vision only": "v"}
