"""Clip classification: the label (or labels) of a whole clip, on your own labelled videos, VGGSound or AudioSet.

Data (``lavish prepare classify``, :mod:`lavish.tasks.classify.layout`): a folder per class, a CSV of your own
(``path,label[,split]``; several labels separated by ``;`` make a multi-label set), VGGSound's ``vggsound.csv`` or
AudioSet's segment csvs with ``class_labels_indices.csv``. Every clip becomes T one-second segments spread over it
(``--segments``, default 10), whatever its length.

Model (:mod:`lavish.tasks.classify.model`): the LAVISH backbone (the paper's AVE adapters: both streams fused in
every block), the segments' pooled [visual, audio] features averaged over time, a linear head (``--head mlp`` for a
small non-linear one). Single-label sets: softmax and cross-entropy (``--label-smoothing``); multi-label sets:
sigmoid and a binary cross-entropy per class. ``--class-weighting balanced`` for skewed sets (AudioSet).

Recipe (ours; the paper has no classification run): Adam, lr 5e-5 for the adapters (LAVISH's AVE rate) and 5e-4
for the head, batch 16, up to 10 epochs with early stopping after 3 without improvement, the best epoch chosen on the
validation split's top-1 accuracy (single-label) or mAP (multi-label).

Metrics (:mod:`lavish.tasks.classify.metrics`): top-1 / top-5 accuracy, per-class and mean per-class accuracy;
multi-label: mAP, mean ROC AUC and d-prime as the AudioSet evaluation code computes them.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch

from lavish.engine.module import TaskModule, head_and_adapter_groups
from lavish.engine.runner import TrainConfig
from lavish.engine.task import DemoOptions, Option, Task, TrainResult
from lavish.errors import DataError
from lavish.media.frames import normalize_frames
from lavish.tasks.classify.dataset import ClassifyDataModule
from lavish.tasks.classify.layout import LAYOUTS, TEST_FRACTION, VAL_FRACTION
from lavish.tasks.classify.metrics import ClassifyEvaluation, format_lines, update_validation, validation_metrics
from lavish.tasks.classify.model import (HEADS, WEIGHTINGS, ClassifyModel, ClassifyModelConfig, balanced_weights,
                                         classify_loss)
from lavish.tasks.classify.predict import TOP_K, ClassifyPrediction
from lavish.tasks.classify.prepare import NUM_SEGMENTS, prepare_classify
from lavish.tasks.classify.synthetic import make_synthetic_classify


@dataclass
class ClassifyTrainConfig(TrainConfig):
    """Training settings (ours: see the module doc)."""

    LR_FIELDS: ClassVar[tuple[str, ...]] = ("lr", "lr_head")

    epochs: int = 10
    batch_size: int = 16
    lr: float = 5e-5
    """learning rate of the adapters (and any other trainable part but the head)"""
    lr_head: float = 5e-4
    patience: int = 3


#: single-label / multi-label: (key of the evaluation result, title) printed after training
SUMMARIES = {False: (("top1", "top-1 accuracy"), ("top5", "top-5 accuracy"),
                     ("mean_class_accuracy", "mean per-class accuracy")),
             True: (("mAP", "mAP"), ("mAUC", "mean ROC AUC"), ("d_prime", "d-prime"))}
DEMO_SEGMENTS = 4
"""segments per clip in the demo (its clips last about 4 s)"""


class ClassifyTask(Task):
    """Clip classification (single- or multi-label) on your own videos, VGGSound or AudioSet."""

    name = "classify"
    order = 4
    title = "clip classification on your own labelled videos, VGGSound or AudioSet"
    audio_frontend = "ave"  # 1-s segments, as AVE
    family_frontends = {"vit": "ave_vit"}
    model_config_cls = ClassifyModelConfig
    model_cls = ClassifyModel
    train_config_cls = ClassifyTrainConfig
    data_module_cls = ClassifyDataModule
    prepare = staticmethod(prepare_classify)
    synthetic = staticmethod(make_synthetic_classify)
    adapter_preset = "ave"
    unit = "clips"
    monitor = "top1"
    summary = SUMMARIES[False]
    lr_help = "adapter learning rate"
    prediction_cls = ClassifyPrediction
    predict_outputs = ("plot",)
    demo_defaults = {"videos": 48, "epochs": 6}
    demo_clips = "data/test"
    demo_prepare_options = {"segments": DEMO_SEGMENTS}
    options = (
        Option(("--lr-head",), {"type": float, "help": "head learning rate"}),
        Option(("--head",), {"choices": HEADS, "help": "linear (LayerNorm + Linear, CAV-MAE's) or mlp"}),
        Option(("--head-hidden",), {"type": int, "metavar": "D", "help": "hidden width of the MLP head"}),
        Option(("--head-dropout",), {"type": float, "metavar": "P", "help": "dropout of the MLP head"}),
        Option(("--label-smoothing",), {"type": float, "metavar": "E",
                                        "help": "cross-entropy label smoothing (single-label sets)"}),
        Option(("--class-weighting",), {"choices": WEIGHTINGS,
                                        "help": "balanced: weigh each class by its inverse training frequency"}),
        Option(("--confusion",), {"metavar": "PNG", "dest": "confusion_png",
                                  "help": "also draw the confusion matrix into this PNG (single-label sets)"},
               commands=("eval",)),
        Option(("--layout",), {"choices": LAYOUTS, "help": "the set's layout (default auto: detected)"},
               commands=("prepare",)),
        Option(("--csv",), {"type": Path, "metavar": "FILE",
                            "help": "csv layout: the CSV (path,label[,split]; default ROOT/labels.csv)"},
               commands=("prepare",)),
        Option(("--classes",), {"type": Path, "metavar": "FILE", "dest": "classes_file",
                                "help": "csv layout: the class list, one per line (labels not in it are left out)"},
               commands=("prepare",)),
        Option(("--multi-label",), {"action": "store_true", "default": None,
                                    "help": "csv layout: a multi-label set even if no row has two labels"},
               commands=("prepare",)),
        Option(("--video-dir",), {"type": Path, "metavar": "DIR",
                                  "help": "vggsound / audioset: the folder of the clips (default: ROOT/video, ROOT)"},
               commands=("prepare",)),
        Option(("--segments",), {"type": int, "metavar": "T",
                                 "help": f"one-second segments spread over each clip (default {NUM_SEGMENTS})"},
               commands=("prepare",)),
        Option(("--val-fraction",), {"type": float, "metavar": "F",
                                     "help": "share of each class's training clips kept for validation where the "
                                             f"layout has no val split (default {VAL_FRACTION})"},
               commands=("prepare",)),
        Option(("--test-fraction",), {"type": float, "metavar": "F",
                                      "help": "share kept for testing where the layout has no test split "
                                              f"(default {TEST_FRACTION})"}, commands=("prepare",)),
        Option(("--split-seed",), {"type": int, "metavar": "N",
                                   "help": "seed of those validation / test splits (default 0)"},
               commands=("prepare",)),
        Option(("--top-k",), {"type": int, "metavar": "K", "help": f"labels listed per video (default {TOP_K})"},
               commands=("predict",)),
        Option(("--window-seconds",), {"type": int, "metavar": "S",
                                       "help": "label a long recording in parts: each run of S seconds on its own "
                                               "(default: the whole video as one clip of T spread segments)"},
               commands=("predict",)),
    )
    real_run = (
        "A real run uses pretrained weights and a real set, e.g. VGGSound (vggsound.csv and its clips):\n"
        "  lavish prepare classify --root VGGSOUND_ROOT --out vggsound-cache --workers 8\n"
        "  lavish train classify --data vggsound-cache --out runs/vggsound --config configs/classify/vggsound.yaml\n"
        "or your own videos, a folder per class: lavish prepare classify --root MY_VIDEOS --out my-cache. "
        "See docs/classify.md."
    )

    # ----------------------------------------------------------------------------------------------- data
    def fit_model_config(self, model_config: ClassifyModelConfig, dm: ClassifyDataModule):
        classes, multi = dm.classes, dm.multi_label
        if multi:  # the monitored mAP needs a class with a positive and a negative validation clip
            val = np.asarray(dm.labels[dm.manifest["splits"].get("val", [])])
            if len(val) and not ((val.sum(0) > 0) & (val.sum(0) < len(val))).any():
                raise DataError(f"{dm.cache_dir}: no class has both a positive and a negative clip among the "
                                f"{len(val)} validation clips, so their mAP (which selects the best epoch) is "
                                "undefined; prepare with a larger --val-fraction")
        weights = balanced_weights(dm.train_labels(), len(classes)) if model_config.class_weighting == "balanced" \
            else None
        config = dataclasses.replace(model_config, num_classes=len(classes), multi_label=multi, class_weights=weights)
        return config, {"classes": classes, "multi_label": multi}

    def check_model_data(self, model, meta, dm: ClassifyDataModule, checkpoint: Path) -> None:
        classes = meta.get("classes") or dm.classes
        if classes != dm.classes or model.config.multi_label != dm.multi_label:
            kind = "multi-label" if dm.multi_label else "single-label"
            raise DataError(f"{dm.cache_dir}: the cache's {len(dm.classes)} classes ({kind}) are not the "
                            f"{len(classes)} classes checkpoint {checkpoint} was trained on")

    # ---------------------------------------------------------------------------------------------- model
    def monitored(self, model_config: ClassifyModelConfig) -> str:
        return "mAP" if model_config.multi_label else "top1"

    def forward(self, model: ClassifyModel, batch: dict) -> torch.Tensor:
        """Logits (B, K)."""
        return model(batch["audio"], normalize_frames(batch["frames"], *model.backbone.frame_stats))

    def model_loss(self, model: ClassifyModel, logits: torch.Tensor, batch: dict) -> torch.Tensor:
        return classify_loss(logits, batch["labels"], model.config)

    def metrics(self, stage: str, model: ClassifyModel) -> dict:
        config = model.config
        if stage == "train" and config.multi_label:  # mAP keeps every score: only on validation and test
            return {}
        metrics = validation_metrics(config.multi_label, config.num_classes)
        return {"top1": metrics["top1"]} if stage == "train" else metrics

    def update_metrics(self, metrics, logits, batch) -> None:
        update_validation(metrics, logits, batch["labels"], batch["labels"].ndim == 2)

    def configure_optimizers(self, module: TaskModule):
        cfg = module.train_config
        return torch.optim.Adam(head_and_adapter_groups(module.model, cfg.lr_head, cfg.lr))

    def train_lines(self, result: TrainResult) -> list[str]:
        multi = result.monitor.endswith("mAP")
        best = "none" if result.best_value is None else f"{result.best_value:.4f}"
        test = result.test or {}
        tests = ", ".join(f"{title} {test[key]:.4f}" if test.get(key) is not None else f"{title} none"
                          for key, title in SUMMARIES[multi])
        return [f"best validation {SUMMARIES[multi][0][1]} {best} at epoch {result.best_epoch}; test {tests}; "
                f"adapter file {result.adapter} ({result.seconds:.0f} s)"]

    # ----------------------------------------------------------------------------------------- evaluation
    def evaluation(self, model, meta, dm, split, *, confusion_png=None) -> ClassifyEvaluation:
        return ClassifyEvaluation(meta.get("classes") or dm.classes, model.config.multi_label, split, confusion_png)

    def eval_lines(self, result: dict) -> list[str]:
        lines = format_lines(result)
        return lines + [f"confusion matrix: {result['confusion_png']}"] if result.get("confusion_png") else lines

    # ----------------------------------------------------------------------------------------- prediction
    def predict_lines(self, res: dict) -> list[str]:
        lines = [f"{res['video']} ({res['duration']:.1f} s{'' if res['has_audio'] else ', no audio'}, "
                 f"{res['segments']} segments)"]
        lines += [f"  {t['probability']:.3f}  {t['label']}" for t in res["top_k"]]
        for w in res.get("windows", ()):
            best = w["top_k"][0]
            span = f"{w['start']:.0f}-{w['end']:.0f} s"
            lines.append(f"  {span:>13}  {best['label']} ({best['probability']:.3f})")
        if res.get("plot"):
            lines.append(f"  bars: {res['plot']}")
        return lines

    # ----------------------------------------------------------------------------------------------- demo
    def demo(self, options: DemoOptions) -> int:
        """A synthetic folder-per-class set where a class is an (object, sound) pair -> prepare -> train
        audio-visual LAVISH, vision only and audio only -> test accuracy table -> top-k of one test clip."""
        from lavish.engine.demo import Demo
        from lavish.fileio import write_json
        from lavish.models.adapters import PRESETS

        demo = Demo(self, options, steps=5, min_videos=4 * options.classes,
                    why=f"the demo needs at least 4 clips per class ({4 * options.classes} for {options.classes} "
                        "classes: train / val / test folders)")
        demo.dataset(f"synthetic folder-per-class set: {options.videos} clips, {options.classes} classes, each an "
                     "(object, sound) pair", "train", lambda data: make_synthetic_classify(
                         data, layout="folder", num_videos=options.videos, num_classes=options.classes,
                         seed=options.seed, workers=options.workers, progress=options.progress))
        demo.prepare()
        rows = {}
        for name, modalities in DEMO_VARIANTS.items():
            run_dir = demo.out / "runs" / modalities
            adapter = demo.train(name, run_dir, ClassifyModelConfig(backbone=demo.backbone, adapter=PRESETS["ave"],
                                                                    modalities=modalities),
                                 ClassifyTrainConfig(epochs=options.epochs, batch_size=4, lr=1e-3, lr_head=1e-3,
                                                     patience=options.epochs, seed=options.seed))
            result = demo.evaluate(adapter)
            val = json.loads((run_dir / "results.json").read_text()).get("best_val_top1")
            rows[name] = {"val_top1": val, "test_top1": result["top1"],
                          "test_mean_class_accuracy": result["mean_class_accuracy"]}
        print("[4/5] test accuracy (clips)")
        print(f"      {'model':<24} {'val top-1':>9} {'test top-1':>10} {'per-class':>9}")
        for name, r in rows.items():
            val = "-" if r["val_top1"] is None else f"{r['val_top1']:.3f}"
            print(f"      {name:<24} {val:>9} {r['test_top1']:>10.3f} {r['test_mean_class_accuracy']:>9.3f}")
        write_json(demo.out / "results.json", rows)
        _, model, meta = demo.load(demo.out / "runs" / "av" / "best.safetensors")
        video = sorted((demo.data / "test").rglob("*.mp4"))[0]
        pred = self.predict(model, meta, video, plot=demo.out / "top_k.png")
        best = pred["top_k"][0]
        print(f"[5/5] predict {video}: {best['label']} ({best['probability']:.3f}); truth: {video.parent.name}")
        return demo.finish(f"plot: {pred['plot']}; table: {demo.out / 'results.json'}")


#: the demo's three runs (as AVE's, Table 7's comparison): name -> modalities
DEMO_VARIANTS = {"audio-visual (LAVISH)": "av", "vision only": "v", "audio only": "a"}
