"""AVVP: audio-visual video parsing on LLP (Tian, Li and Xu, ECCV 2020) on the Task interface.

Every second of a 10-second clip: which of 25 events are heard, which are seen, learned from video-level labels
only (weak supervision). The LAVISH backbone gives per-second audio and visual features (both streams, adapters
fusing them as in AVE); the benchmark's Hybrid Attention Network head (:mod:`lavish.models.avvp`) turns them into
per-second, per-modality class probabilities and pools them (attentive MMIL over time and modality) into the
video-level prediction the loss sees.

Recipe (the benchmark's ``main_avvp.py``): Adam, lr 3e-4 for the head, StepLR (x0.1 every 10 epochs), 40 epochs,
16 clips per batch, seed 1; loss = BCE of the video-level prediction plus BCE of each modality's video-level
prediction against the labels, the visual one smoothed (0.9 y + 0.05; :func:`lavish.models.avvp.avvp_loss`;
``--no-label-smoothing`` trains on the hard labels).
The best epoch is the one with the best validation segment-level Type@AV F1, as the benchmark's script.
The adapters (which the benchmark does not have) train at lr 5e-5, LAVISH's AVE adapter rate.

Metrics (:mod:`lavish.tasks.avvp_metrics`): segment-level and event-level F1 of audio, visual and audio-visual
events, Type@AV (their mean) and Event@AV, each the mean over clips of the per-clip F1, as the benchmark's code.

Where we differ from the benchmark, on purpose:
* no early stopping in the benchmark; here ``--patience`` (default 40, i.e. none within the 40 epochs) applies;
* the backbone sees the frames and audio of each second (the benchmark used frozen ResNet-152, R(2+1)D and
  VGGish features); the model selection uses the validation split, the benchmark's ``val`` mode the same.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch
from torchmetrics import Metric

from lavish.data.cache import AvvpCacheDataset
from lavish.data.prepare import prepare_avvp
from lavish.errors import ConfigError
from lavish.media.frames import normalize_frames
from lavish.models.avvp import AvvpModel, AvvpModelConfig, avvp_loss
from lavish.tasks.avvp_metrics import (CLIP_KEYS, METRIC_KEYS, THRESHOLD, AvvpMetrics, clip_predictions, clip_scores,
                                      extract_events, summarize)
from lavish.tasks.base import (DemoOptions, Evaluation, Option, Task, TaskModule, TrainResult,
                               head_and_adapter_groups)
from lavish.tasks.runner import SplitDataModule, TrainConfig


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


class AvvpF1(Metric):
    """One of the benchmark's ten numbers (``key`` of :data:`METRIC_KEYS`) as a torchmetrics Metric for the
    validation epoch: sums of the per-clip F values (:data:`CLIP_KEYS`) and the number of clips, summed over
    processes (so exact under DDP with the unpadded evaluation sampler), then :func:`summarize` of their means.
    Clips without per-second labels (train, weak labels only) are not counted."""

    full_state_update = False

    def __init__(self, key: str) -> None:
        super().__init__()
        if key not in METRIC_KEYS:
            raise ValueError(f"unknown AVVP metric {key!r}")
        self.key = key
        self.add_state("total", torch.zeros(len(CLIP_KEYS), dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("clips", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, out, batch: dict) -> None:  # type: ignore[override]
        arrays = [x.detach().float().cpu().numpy() for x in (out.audio_prob, out.visual_prob, out.global_prob)]
        audio_gt, visual_gt = batch["audio_labels"].cpu().numpy(), batch["visual_labels"].cpu().numpy()
        for i in range(len(audio_gt)):
            if (audio_gt[i] < 0).any():  # a weakly labelled clip
                continue
            scores = clip_scores(*clip_predictions(arrays[0][i], arrays[1][i], arrays[2][i]), audio_gt[i],
                                 visual_gt[i])
            self.total += torch.tensor([scores[k] for k in CLIP_KEYS], dtype=torch.float64, device=self.total.device)
            self.clips += 1

    def compute(self) -> torch.Tensor:
        if not self.clips:
            return torch.tensor(float("nan"))
        return torch.tensor(summarize((self.total / self.clips).cpu().numpy()[None])[self.key], dtype=torch.float32)


class AvvpEvaluation(Evaluation):
    """The benchmark's ten numbers over a split, plus the number of clips."""

    def __init__(self, split: str) -> None:
        self.split = split
        self.metrics = AvvpMetrics()

    def update(self, out, batch: dict) -> None:
        self.metrics.update(out.audio_prob, out.visual_prob, out.global_prob, batch["audio_labels"],
                            batch["visual_labels"])

    def result(self) -> dict:
        return {"split": self.split, "clips": self.metrics.num_clips, **self.metrics.compute()}


#: (result key, title) of the eval table: rows segment / event, columns audio, visual, AV, Type@AV, Event@AV
TABLE_COLUMNS = (("audio", "audio"), ("visual", "visual"), ("av", "audio-visual"), ("type_av", "Type@AV"),
                 ("event_av", "Event@AV"))


def format_table(result: dict) -> list[str]:
    head = f"  {'level':<8}" + "".join(f"{title:>14}" for _, title in TABLE_COLUMNS)
    rows = [f"  {level:<8}" + "".join(f"{result[f'{prefix}_{key}']:>14.2f}" for key, _ in TABLE_COLUMNS)
            for level, prefix in (("segment", "seg"), ("event", "event"))]
    return [head, *rows]


class AvvpTask(Task):
    """Audio-visual video parsing: per second, which events are heard and which are seen (weakly supervised)."""

    name = "avvp"
    title = "audio-visual video parsing (AVVP, LLP)"
    model_config_cls = AvvpModelConfig
    model_cls = AvvpModel
    train_config_cls = AvvpTrainConfig
    data_module_cls = AvvpDataModule
    prepare = staticmethod(prepare_avvp)
    adapter_preset = "ave"  # 1-s segments of both streams, as AVE
    demo_defaults = {"videos": 80, "epochs": 12}  # weak labels: it takes ~150 steps before the micro model parses
    monitor = "seg_type_av"
    summary = (("seg_type_av", "segment-level Type@AV F1"), ("event_type_av", "event-level Type@AV F1"),
               ("seg_audio", "audio F1"), ("seg_visual", "visual F1"), ("seg_av", "audio-visual F1"))
    lr_help = "adapter learning rate (default 5e-5)"
    predict_outputs = ("plot",)
    options = (
        Option(("--lr-head",), {"type": float, "help": "head learning rate (default 3e-4, the benchmark's)"}),
        Option(("--step-size",), {"type": int, "metavar": "EPOCHS",
                                  "help": "multiply the learning rates by --gamma every EPOCHS epochs (default 10)"}),
        Option(("--gamma",), {"type": float, "help": "learning-rate decay factor (default 0.1)"}),
        Option(("--no-label-smoothing",), {
            "dest": "label_smoothing", "action": "store_false", "default": None,
            "help": "train the per-modality terms on the hard labels (default: the benchmark's modality-aware "
                    "smoothing, visual targets 0.95 / 0.05)"}),
        Option(("--label-smoothing",), {
            "dest": "label_smoothing", "action": "store_true", "default": None,
            "help": "the benchmark's modality-aware label smoothing (the default; overrides label_smoothing: false "
                    "in a --config file)"}),
        Option(("--han-dim",), {"type": int, "metavar": "D", "help": "HAN width (default 512)"}),
        Option(("--han-heads",), {"type": int, "help": "HAN attention heads (default 1, the benchmark's)"}),
        Option(("--han-ff-dim",), {"type": int, "metavar": "D", "help": "HAN feed-forward width (default 512)"}),
        Option(("--han-layers",), {"type": int, "help": "HAN layers (default 1; 0: none)"}),
        Option(("--han-dropout",), {"type": float, "help": "HAN dropout (default 0.1)"}),
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
    @torch.no_grad()
    def predict(self, model: AvvpModel, meta: dict, video, *, plot=None, window: int = 10,
                arrays: bool = False) -> dict:
        """Which events are heard and which are seen, per second of any video.

        The video is cut into windows of ``window`` seconds (the benchmark's 10-s clips; the last one shorter),
        each parsed on its own: per second and modality the classes at probability >= 0.5 whose video-level
        probability in that window is >= 0.5, as the benchmark's evaluation. Returns {video, duration, has_audio,
        seconds: [{second, heard: [..], seen: [..]}], events: [{label, modality, onset, offset}] (runs of
        consecutive seconds, offset exclusive), windows: [{start, labels: {label: probability}}]}; ``plot``: a
        timeline PNG with an audio and a visual row (``plot`` key); ``arrays``: add ``audio_probabilities`` and
        ``visual_probabilities`` (T, C) float32 (per second, before the video-level filter) and ``frames``.
        """
        from lavish.media.decode import decode_clip

        clip = decode_clip(video, num_segments=None, frame_size=tuple(meta["frame_size"]), frontend=meta["frontend"])
        classes = meta["classes"]
        frames, audio = torch.from_numpy(clip.frames), torch.from_numpy(clip.spectrograms)
        heard, seen, windows, probs_a, probs_v = [], [], [], [], []
        for s in range(0, len(frames), window):
            out = model(audio[s:s + window][None], normalize_frames(frames[s:s + window], *model.backbone.frame_stats)[None])
            h, v = clip_predictions(out.audio_prob[0], out.visual_prob[0], out.global_prob[0])
            probs_a.append(out.audio_prob[0].float().numpy())
            probs_v.append(out.visual_prob[0].float().numpy())
            heard.append(h)
            seen.append(v)
            probs = out.global_prob[0].float()
            windows.append({"start": s, "labels": {classes[k]: round(float(probs[k]), 4)
                                                   for k in torch.nonzero(probs >= THRESHOLD).flatten().tolist()}})
        heard_np, seen_np = np.concatenate(heard).astype(bool), np.concatenate(seen).astype(bool)
        seconds = [{"second": t, "heard": [classes[k] for k in np.flatnonzero(heard_np[t])],
                    "seen": [classes[k] for k in np.flatnonzero(seen_np[t])]} for t in range(len(heard_np))]
        events = [{"label": classes[k], "modality": modality, "onset": a, "offset": b}
                  for modality, grid in (("audio", heard_np), ("visual", seen_np))
                  for k in range(grid.shape[1]) for a, b in extract_events(grid[:, k])]
        result = {"video": str(video), "duration": clip.duration, "has_audio": clip.has_audio, "seconds": seconds,
                  "events": events, "windows": windows}
        if plot is not None:
            from lavish.tasks.plots import plot_parsing

            result["plot"] = str(plot_parsing(heard_np, seen_np, classes, clip.frames, Path(video).name, plot))
        if arrays:
            result.update(audio_probabilities=np.concatenate(probs_a), visual_probabilities=np.concatenate(probs_v),
                          frames=clip.frames)
        return result

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
        from lavish.data.synthetic_llp import make_synthetic_llp
        from lavish.fileio import write_json
        from lavish.models.adapters import PRESETS
        from lavish.tasks.base import evaluate, load, train

        if options.videos < 12:
            raise ConfigError(f"videos={options.videos} is not valid: the demo needs at least 12 (train/val/test "
                              "splits of 3 clips or more)")
        start = time.monotonic()
        backbone = options.backbone or self.demo_backbone
        out = Path(options.out)
        data, cache = out / "data", out / "cache"
        print(f"[1/5] synthetic LLP-layout dataset: {options.videos} clips, {options.classes} classes -> {data}")
        if not (data / "AVVP_train.csv").exists():
            held_out = max(3, options.videos // 5)
            make_synthetic_llp(data, num_train=options.videos - 2 * held_out, num_val=held_out, num_test=held_out,
                               num_classes=options.classes, seed=options.seed, workers=options.workers,
                               progress=options.progress)
        self.demo_cache(data, cache, backbone, options, "2/5")
        rows = {}
        for name, modalities in DEMO_VARIANTS.items():
            run_dir = out / "runs" / modalities
            print(f"[3/5] train {name} -> {run_dir}")
            if not (run_dir / "results.json").exists():
                model = AvvpModelConfig(backbone=backbone, adapter=PRESETS["ave"], modalities=modalities)
                cfg = AvvpTrainConfig(epochs=options.epochs, batch_size=4, lr=1e-3, lr_head=1e-3,
                                      patience=options.epochs, seed=options.seed)
                train(self, cache, run_dir, model, cfg, pretrained=False, progress=options.progress, test=False)
            rows[name] = evaluate(run_dir / "best.safetensors", cache, split="test", progress=False)
        print("[4/5] test F1 (%), segment level")
        print(f"      {'model':<24} {'audio':>7} {'visual':>7} {'AV':>7} {'Type@AV':>8} {'event Type@AV':>14}")
        for name, r in rows.items():
            print(f"      {name:<24} {r['seg_audio']:>7.1f} {r['seg_visual']:>7.1f} {r['seg_av']:>7.1f} "
                  f"{r['seg_type_av']:>8.1f} {r['event_type_av']:>14.1f}")
        write_json(out / "results.json", rows)
        _, model, meta = load(out / "runs" / "av" / "best.safetensors")
        ds = AvvpCacheDataset(cache, "test")
        video = data / "LLP_dataset" / "video" / f"{ds.items[ds.indices[0]]['video_id']}.mp4"
        pred = self.predict(model, meta, video, plot=out / "timeline.png")
        events = "; ".join(f"{e['label']} {e['modality']} {e['onset']}-{e['offset']} s" for e in pred["events"])
        print(f"[5/5] predict {video}: {events or 'no event'}")
        print(f"plot: {pred['plot']}; table: {out / 'results.json'}; {time.monotonic() - start:.0f} s in all")
        print(self.real_run)
        return 0


#: the demo's two runs: name -> modalities
DEMO_VARIANTS = {"audio-visual (LAVISH)": "av", "vision only": "v"}
