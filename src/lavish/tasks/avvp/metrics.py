"""AVVP metrics exactly as the LLP benchmark computes them (github:YapengTian/AVVP-ECCV20: ``main_avvp.py`` ``eval``
and ``utils/eval_metrics.py`` ``segment_level``, ``event_level``, ``extract_event``, ``event_wise_metric``).

Pure numpy. Per clip (T one-second segments, C classes; the benchmark's T = 10, C = 25):

* **Predictions** (``clip_predictions``): ``o = global_prob >= 0.5`` (the predicted video-level labels, the pooled
  ``global_prob``, not the per-modality ``a_prob`` / ``v_prob``); a class is heard in second t when
  ``audio_prob[t, c] >= 0.5`` AND ``o[c]``, seen when ``visual_prob[t, c] >= 0.5`` AND ``o[c]`` (the benchmark's
  "filter out false positive events with predicted weak labels"). Audio-visual = heard AND seen, for the
  predictions and for the ground truth alike (``SO_av = SO_a * SO_v``, ``GT_av = GT_a * GT_v``).
* **Segment level** (``segment_counts``): per class, TP / FP / FN counted over the T seconds.
* **Event level** (``event_counts``): per class, events are the runs of consecutive positive seconds
  (``extract_events``; a one-second gap splits an event in two). A predicted event is a TP when SOME ground-truth
  event of its class overlaps it with IoU >= 0.5 (intersection >= 0.5 x union, in seconds), else an FP; a
  ground-truth event no predicted event matches that way is an FN. Matching is not one-to-one in the code, but
  within one class runs are disjoint and non-adjacent, so no event can match two (two disjoint events both at
  IoU >= 0.5 with a third would have to tile it, i.e. be adjacent, i.e. be one run).
* **Per-clip F** (``mean_f``): per class F = 2 TP / (2 TP + FP + FN) for the classes with anything predicted or
  annotated (TP + FP > 0 or TP + FN > 0); the clip's F is the MEAN OVER THOSE CLASSES (a macro average, not one
  count over classes x seconds). Divisions by zero cannot happen: a class with nothing predicted and nothing
  annotated is skipped, and **a clip where no class is active scores 1.0** ("all true negatives", the
  benchmark's comment). Consequence: a clip without any audio-visual event (or without visual events ...) counts
  as perfect in that column when nothing of the kind is predicted, and as 0 when anything is.
* **Event@AV** (``seg_event_av``, ``event_event_av``): per class the audio and the visual counts are ADDED
  (TP = TP_a + TP_v, ...), then F per class and the mean over the active classes as above (the benchmark's
  ``F``); it is not computed from the audio-visual events.
* **Type@AV** (``*_type_av``): the mean of the audio, visual and audio-visual columns (each already a mean over
  clips).

The ten reported numbers are the means over clips of the per-clip F, in percent (the paper's tables): the
benchmark evaluates one clip per batch, so every clip weighs the same.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torchmetrics import Metric

from lavish.engine.task import Evaluation

THRESHOLD = 0.5
"""per-segment and video-level probabilities >= this count as positive (the benchmark's ``>= 0.5``)"""
EVENT_IOU = 0.5
"""a predicted and an annotated event match when intersection >= EVENT_IOU x union (in seconds)"""

CLIP_KEYS = ("seg_audio", "seg_visual", "seg_av", "seg_event_av",
             "event_audio", "event_visual", "event_av", "event_event_av")
"""the per-clip F values (fractions in [0, 1]) that :func:`clip_scores` returns, in this order"""
METRIC_KEYS = ("seg_audio", "seg_visual", "seg_av", "seg_type_av", "seg_event_av",
               "event_audio", "event_visual", "event_av", "event_type_av", "event_event_av")
"""what :meth:`AvvpMetrics.compute` returns (percent)"""


def _numpy(x: Any) -> np.ndarray:
    """A numpy array of ``x`` (torch tensors of any dtype / device through ``.float().cpu()``; no torch import)."""
    if hasattr(x, "detach"):
        x = x.detach().float().cpu().numpy()
    return np.asarray(x)


def clip_predictions(audio_prob, visual_prob, global_prob, threshold: float = THRESHOLD
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Per-second predictions of one clip: audio_prob, visual_prob (T, C), global_prob (C,) -> heard, seen
    (T, C) int arrays of 0/1, each ``prob >= threshold`` AND ``global_prob >= threshold``."""
    video = _numpy(global_prob) >= threshold
    heard = (_numpy(audio_prob) >= threshold) & video[None, :]
    seen = (_numpy(visual_prob) >= threshold) & video[None, :]
    return heard.astype(np.int64), seen.astype(np.int64)


def extract_events(seq) -> list[tuple[int, int]]:
    """Runs of consecutive positive (non-zero) entries of a (T,) sequence as [start, end) seconds."""
    events, start = [], None
    for t, on in enumerate(np.asarray(seq) != 0):
        if on and start is None:
            start = t
        elif not on and start is not None:
            events.append((start, t))
            start = None
    if start is not None:
        events.append((start, len(seq)))
    return events


def _match(a: tuple[int, int], b: tuple[int, int]) -> bool:
    """Intervals [start, end) match when intersection >= EVENT_IOU x union."""
    inter = max(0, min(a[1], b[1]) - max(a[0], b[0]))
    union = (a[1] - a[0]) + (b[1] - b[0]) - inter
    return inter >= EVENT_IOU * union


def segment_counts(pred, gt) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per class TP, FP, FN over the seconds. pred, gt (T, C) 0/1 -> three (C,) int arrays."""
    p, g = _numpy(pred) != 0, _numpy(gt) != 0
    return (p & g).sum(0), (p & ~g).sum(0), (~p & g).sum(0)


def event_counts(pred, gt) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per class TP, FP, FN of events (runs of seconds, matched at IoU >= 0.5). pred, gt (T, C) 0/1 -> (C,) ×3."""
    p, g = _numpy(pred), _numpy(gt)
    counts = np.zeros((3, p.shape[1]), dtype=np.int64)
    for c in range(p.shape[1]):
        pe, ge = extract_events(p[:, c]), extract_events(g[:, c])
        tp = sum(any(_match(x, y) for y in ge) for x in pe)
        counts[:, c] = tp, len(pe) - tp, sum(not any(_match(y, x) for x in pe) for y in ge)
    return counts[0], counts[1], counts[2]


def mean_f(tp, fp, fn) -> float:
    """Mean over the active classes (TP + FP > 0 or TP + FN > 0) of 2 TP / (2 TP + FP + FN); 1.0 if none."""
    tp, fp, fn = (np.asarray(x, dtype=np.float64) for x in (tp, fp, fn))
    active = (tp + fp > 0) | (tp + fn > 0)
    if not active.any():
        return 1.0
    return float(np.mean(2 * tp[active] / (2 * tp[active] + fp[active] + fn[active])))


def clip_scores(heard, seen, audio_gt, visual_gt) -> dict[str, float]:
    """The eight per-clip F values (:data:`CLIP_KEYS`, fractions) from the predictions heard, seen and the ground
    truth audio_gt, visual_gt, all (T, C) 0/1."""
    heard, seen, audio_gt, visual_gt = ((_numpy(x) != 0).astype(np.int64) for x in (heard, seen, audio_gt, visual_gt))
    both, both_gt = heard * seen, audio_gt * visual_gt
    scores = {}
    for level, counts in (("seg", segment_counts), ("event", event_counts)):
        a, v, av = counts(heard, audio_gt), counts(seen, visual_gt), counts(both, both_gt)
        scores[f"{level}_audio"] = mean_f(*a)
        scores[f"{level}_visual"] = mean_f(*v)
        scores[f"{level}_av"] = mean_f(*av)
        scores[f"{level}_event_av"] = mean_f(*(x + y for x, y in zip(a, v)))
    return {k: scores[k] for k in CLIP_KEYS}


def summarize(per_clip: np.ndarray) -> dict[str, float]:
    """(N, 8) per-clip F values (columns :data:`CLIP_KEYS`) -> the ten numbers (:data:`METRIC_KEYS`), percent;
    NaN for every number when N = 0."""
    per_clip = np.asarray(per_clip, dtype=np.float64).reshape(-1, len(CLIP_KEYS))
    if len(per_clip) == 0:
        return {k: float("nan") for k in METRIC_KEYS}
    mean = dict(zip(CLIP_KEYS, 100.0 * per_clip.mean(0)))
    out = {}
    for level in ("seg", "event"):
        a, v, av = mean[f"{level}_audio"], mean[f"{level}_visual"], mean[f"{level}_av"]
        out.update({f"{level}_audio": a, f"{level}_visual": v, f"{level}_av": av,
                    f"{level}_type_av": (a + v + av) / 3.0, f"{level}_event_av": mean[f"{level}_event_av"]})
    return {k: float(out[k]) for k in METRIC_KEYS}


class AvvpMetrics:
    """Accumulates per-clip F values over batches; :meth:`compute` gives the ten numbers (percent).

    Not synchronised across processes: one process evaluates (as the other tasks' evaluations after DDP), or
    the callers concatenate :attr:`per_clip` of each.
    """

    def __init__(self, threshold: float = THRESHOLD) -> None:
        self.threshold = threshold
        self._rows: list[list[float]] = []

    def reset(self) -> None:
        self._rows = []

    @property
    def num_clips(self) -> int:
        return len(self._rows)

    @property
    def per_clip(self) -> np.ndarray:
        """(N, 8) float64, columns :data:`CLIP_KEYS` (fractions)."""
        return np.asarray(self._rows, dtype=np.float64).reshape(-1, len(CLIP_KEYS))

    def update(self, audio_prob, visual_prob, global_prob, audio_gt, visual_gt) -> None:
        """audio_prob, visual_prob (B, T, C), global_prob (B, C): the model's probabilities; audio_gt,
        visual_gt (B, T, C): 0/1 per-second labels (numpy arrays or torch tensors)."""
        audio_prob, visual_prob, global_prob = _numpy(audio_prob), _numpy(visual_prob), _numpy(global_prob)
        audio_gt, visual_gt = _numpy(audio_gt), _numpy(visual_gt)
        shape = audio_prob.shape
        if len(shape) != 3 or any(x.shape != shape for x in (visual_prob, audio_gt, visual_gt)) \
                or global_prob.shape != (shape[0], shape[2]):
            raise ValueError(f"AvvpMetrics.update: expected (B, T, C) probabilities and labels and (B, C) global "
                             f"probabilities, got {shape}, {visual_prob.shape}, {global_prob.shape}, "
                             f"{audio_gt.shape}, {visual_gt.shape}")
        for i in range(shape[0]):
            heard, seen = clip_predictions(audio_prob[i], visual_prob[i], global_prob[i], self.threshold)
            scores = clip_scores(heard, seen, audio_gt[i], visual_gt[i])
            self._rows.append([scores[k] for k in CLIP_KEYS])

    def compute(self) -> dict[str, float]:
        """The ten numbers (:data:`METRIC_KEYS`) in percent; NaN when no clip was seen."""
        return summarize(self.per_clip)


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
