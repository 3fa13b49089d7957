"""Classify metrics: top-1 / top-5 / per-class accuracy (single-label); mAP, mAUC, d-prime (multi-label).

**Multi-label** statistics are computed as the field's public AudioSet evaluation code computes them (AST / CAV-MAE
``src/utilities/stats.py`` ``calculate_stats`` and ``traintest.py``, PANNs ``evaluate.py``): per class k,
``average_precision_score(target[:, k], output[:, k])`` and ``roc_auc_score(target[:, k], output[:, k])`` of
scikit-learn, mAP and mAUC the plain means over classes, ``d_prime = sqrt(2) * Phi^-1(mAUC)``. Here in numpy, by
hand (the package does not depend on scikit-learn; the tests compare with it): scores are sorted highest first and
TIED SCORES FORM ONE THRESHOLD (scikit-learn's grouping), AP = sum over thresholds of (recall step) x precision,
AUC = the trapezoidal area under the ROC curve (a tied positive/negative pair counts one half). Only the order of
the scores matters, so logits and probabilities give the same numbers; they are ranked in float64 as given (no
sigmoid, which saturates large logits into ties).

Undefined cases (the reference computes a meaningless AP; ``roc_auc_score`` raises, or in scikit-learn >= 1.6 warns
and returns NaN, so its mAUC is NaN): a class is SCORED when the split has at least one positive and one negative
clip of it. An unscored class has ``ap`` and ``auc`` None in ``per_class`` and is left out of both means (mAP and
mAUC average the same ``classes_scored`` classes); it is counted in ``classes_without_positives`` or
``classes_without_negatives``. When every class of a split is scored (AudioSet's eval set) the numbers are the
reference's. No class scored: mAP, mAUC and d_prime are None. d_prime is also None when mAUC is exactly 0 or 1
(the reference gives -inf / inf, which JSON cannot hold).

**Single-label** ranking rule for top-k, ties included: the true class is within the top k when fewer than k
classes rank above it, a class ranking above another when its score is higher, or equal with a LOWER class index
(the order of ``argmax`` and of a stable descending sort; scikit-learn's ``top_k_accuracy_score`` breaks ties the
other way). Per-class accuracy is the fraction of a class's clips whose top-1 class is theirs (the confusion
matrix's diagonal over its row); mean class accuracy averages the classes with clips; a class without clips is
None. No clip at all: top1, top5 and mean_class_accuracy are None. "top5" is top-min(5, K).

**Validation** (``validation_metrics``): torchmetrics states that DDP synchronises exactly (sums for the
accuracies, concatenation for mAP/mAUC), so N processes on the unpadded evaluation shards give one process's
number. torchmetrics' own multilabel AP/AUROC are not used: they sigmoid a batch only when it holds values outside
[0, 1] (a batch of logits inside [0, 1] would be ranked against probabilities) and divide in float32; the metrics
here call :func:`multilabel_stats`' computation, so validation and ``lavish eval`` agree to the last digit.
"""

from __future__ import annotations

import math
from pathlib import Path
from statistics import NormalDist
from typing import Any

import numpy as np
import torch
from torchmetrics import Metric
from torchmetrics.classification import MulticlassAccuracy
from torchmetrics.utilities import dim_zero_cat

from lavish.engine.task import Evaluation
from lavish.errors import ConfigError


def _numpy(x: Any, dtype) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu()
        x = x.double() if dtype == np.float64 else x
        x = x.numpy()
    return np.asarray(x, dtype=dtype)


def _check(scores: np.ndarray, labels: np.ndarray, classes: list[str], label_shape: tuple) -> None:
    if scores.ndim != 2 or labels.shape != label_shape or scores.shape[1] != len(classes):
        raise ValueError(f"expected scores (N, K={len(classes)}) and labels {label_shape}, got {scores.shape} and "
                         f"{labels.shape}")


def single_label_metrics(scores, labels, classes: list[str]) -> dict:
    """scores (N, K) logits or probabilities, labels (N,) class indices -> clips, top1, top5, mean_class_accuracy,
    per_class (fractions; the ranking rule is the module's)."""
    scores, labels = _numpy(scores, np.float64), _numpy(labels, np.int64)
    _check(scores, labels, classes, (len(scores),))
    n, k = scores.shape
    if n and (labels.min() < 0 or labels.max() >= k):
        raise ValueError(f"labels must be class indices in [0, {k}), got {labels.min()} .. {labels.max()}")
    true = scores[np.arange(n), labels][:, None]
    rank = (scores > true).sum(1) + ((scores == true) & (np.arange(k) < labels[:, None])).sum(1)
    per_class = {}
    for c, name in enumerate(classes):
        mine = labels == c
        per_class[name] = float(np.mean(rank[mine] == 0)) if mine.any() else None
    defined = [v for v in per_class.values() if v is not None]
    return {"clips": n, "top1": float(np.mean(rank < 1)) if n else None,
            "top5": float(np.mean(rank < min(5, k))) if n else None,
            "mean_class_accuracy": float(np.mean(defined)) if defined else None, "per_class": per_class}


def _ap_auc(scores: np.ndarray, positive: np.ndarray) -> tuple[float, float]:
    """AP and ROC AUC of one class: scores (N,) float64, positive (N,) bool with both values present."""
    order = np.argsort(-scores, kind="stable")
    ends = np.r_[np.flatnonzero(np.diff(scores[order])), len(scores) - 1]  # last index of each group of ties
    tps = np.cumsum(positive[order])[ends]  # true positives at each threshold, highest first
    fps = ends + 1 - tps
    pos, neg = tps[-1], fps[-1]
    previous = np.r_[0, tps[:-1]]
    ap = np.sum((tps - previous) / pos * (tps / (ends + 1)))
    auc = np.sum(np.diff(fps, prepend=0) * (tps + previous)) / (2 * pos * neg)  # trapezoids, integer numerator
    return float(ap), float(auc)


def _per_class(scores: np.ndarray, targets: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(N, K) scores and 0/1 targets -> AP, AUC (K,) (NaN where unscored), positives, negatives (K,)."""
    positives = targets.sum(0)
    negatives = len(targets) - positives
    ap, auc = np.full(targets.shape[1], np.nan), np.full(targets.shape[1], np.nan)
    for k in np.flatnonzero((positives > 0) & (negatives > 0)):
        ap[k], auc[k] = _ap_auc(scores[:, k], targets[:, k] == 1)
    return ap, auc, positives, negatives


def _mean(values: np.ndarray) -> float | None:
    values = values[~np.isnan(values)]
    return float(np.mean(values)) if len(values) else None


def _optional(x: float) -> float | None:
    return None if np.isnan(x) else float(x)


def d_prime(mauc: float | None) -> float | None:
    """sqrt(2) * Phi^-1(mAUC); None when mAUC is None, 0 or 1."""
    return None if mauc is None or not 0 < mauc < 1 else math.sqrt(2.0) * NormalDist().inv_cdf(mauc)


def multilabel_stats(scores, targets, classes: list[str]) -> dict:
    """scores (N, K), targets (N, K) 0/1 -> clips, mAP, mAUC, d_prime, per_class {name: {ap, auc, positives}},
    classes_scored, classes_without_positives, classes_without_negatives (the module's rules)."""
    scores, targets = _numpy(scores, np.float64), _numpy(targets, np.int64)
    _check(scores, targets, classes, (len(scores), len(classes)))
    if not np.isin(targets, (0, 1)).all():
        raise ValueError("multi-label targets must be 0 or 1")
    ap, auc, positives, negatives = _per_class(scores, targets)
    mauc = _mean(auc)
    return {"clips": len(scores), "mAP": _mean(ap), "mAUC": mauc, "d_prime": d_prime(mauc),
            "per_class": {name: {"ap": _optional(ap[k]), "auc": _optional(auc[k]), "positives": int(positives[k])}
                          for k, name in enumerate(classes)},
            "classes_scored": int((~np.isnan(ap)).sum()),
            "classes_without_positives": int((positives == 0).sum()),
            "classes_without_negatives": int((negatives == 0).sum())}


class MultilabelMean(Metric):
    """mAP or mAUC (``key``) of the epoch by :func:`multilabel_stats`' rules on the concatenated scores (N, K) and
    targets (N, K); NaN when no class is scored."""

    full_state_update = False

    def __init__(self, key: str, **kwargs) -> None:
        super().__init__(**kwargs)
        if key not in ("mAP", "mAUC"):
            raise ValueError(f"unknown multi-label metric {key!r}")
        self.key = key
        self.add_state("scores", default=[], dist_reduce_fx="cat")
        self.add_state("targets", default=[], dist_reduce_fx="cat")

    def update(self, scores: torch.Tensor, targets: torch.Tensor) -> None:  # type: ignore[override]
        self.scores.append(scores.detach().float())
        self.targets.append(targets.detach().to(torch.uint8))

    def compute(self) -> torch.Tensor:
        if not self.scores:
            return torch.tensor(float("nan"))
        ap, auc, _, _ = _per_class(_numpy(dim_zero_cat(self.scores), np.float64),
                                   _numpy(dim_zero_cat(self.targets), np.int64))
        value = _mean(ap if self.key == "mAP" else auc)
        return torch.tensor(float("nan") if value is None else value)


def validation_metrics(multi_label: bool, num_classes: int) -> dict[str, Metric]:
    """The validation / test epoch's metrics: top1, top5 (top-min(5, K)) or mAP, mAUC (monitor top1 / mAP)."""
    if multi_label:
        return {"mAP": MultilabelMean("mAP"), "mAUC": MultilabelMean("mAUC")}
    if num_classes < 2:
        raise ValueError(f"single-label classification needs at least 2 classes, got {num_classes}")
    return {"top1": MulticlassAccuracy(num_classes, top_k=1, average="micro"),
            "top5": MulticlassAccuracy(num_classes, top_k=min(5, num_classes), average="micro")}


def update_validation(metrics: dict[str, Metric], logits: torch.Tensor, labels: torch.Tensor,
                      multi_label: bool) -> None:
    """Add a batch: logits (B, K); labels (B,) class indices or (B, K) 0/1. Single-label logits are replaced by
    their tie-free ranks (K for the first class of the module's order, ..., 1), so torchmetrics' top-k (argmax,
    ``torch.topk``) follows the module's tie rule."""
    if not multi_label:
        order = torch.sort(logits.detach().float(), dim=1, descending=True, stable=True).indices
        k = logits.shape[1]
        ranks = torch.arange(k, 0, -1, device=logits.device, dtype=torch.float32).expand_as(order)
        logits = torch.empty_like(ranks).scatter_(1, order, ranks)
    for metric in metrics.values():
        metric.update(logits, labels)


class ClassifyEvaluation(Evaluation):
    """A split's logits and labels, batch by batch (rank 0 alone evaluates: nothing to synchronise); :meth:`result`
    is :func:`single_label_metrics` or :func:`multilabel_stats` with split, multi_label and classes."""

    def __init__(self, classes: list[str], multi_label: bool, split: str,
                 confusion_png: str | Path | None = None) -> None:
        if confusion_png is not None and multi_label:
            raise ConfigError("--confusion draws a single-label set's confusion matrix; this model is multi-label")
        self.classes, self.multi_label, self.split, self.png = list(classes), multi_label, split, confusion_png
        self.logits: list[torch.Tensor] = []
        self.labels: list[torch.Tensor] = []

    def update(self, logits: torch.Tensor, batch: dict) -> None:
        self.logits.append(logits.detach().float().cpu())
        self.labels.append(batch["labels"].detach().cpu())

    def result(self) -> dict:
        k = len(self.classes)
        logits = torch.cat(self.logits) if self.logits else torch.zeros(0, k)
        labels = torch.cat(self.labels) if self.labels else torch.zeros((0, k) if self.multi_label else 0)
        stats = (multilabel_stats if self.multi_label else single_label_metrics)(logits, labels, self.classes)
        result = {"split": self.split, "multi_label": self.multi_label, "classes": self.classes, **stats}
        if not self.multi_label:  # rows: truth, columns: the top-1 class (argmax: ties to the lower index)
            cm = np.zeros((k, k), np.int64)
            np.add.at(cm, (labels.long().numpy(), logits.argmax(-1).numpy()), 1)
            result["confusion"] = cm.tolist()
            if self.png is not None:
                from lavish.engine.plots import plot_confusion

                result["confusion_png"] = str(plot_confusion(cm, self.classes, self.png))
        return result


def _fmt(x: float | None, percent: bool = True) -> str:
    return "-" if x is None else (f"{100 * x:.2f}%" if percent else f"{x:.4f}")


def format_lines(result: dict) -> list[str]:
    """What ``lavish eval`` prints: a summary line, then per-class accuracy (single-label) or the 10 best and the
    10 worst APs (multi-label; every scored class when there are 20 or fewer)."""
    classes = result["classes"]
    width = min(40, max((len(c) for c in classes), default=0))
    head = f"{result['split']}: {result['clips']} clips, {len(classes)} classes"
    if not result["multi_label"]:
        lines = [(f"{head}, top-1 {_fmt(result['top1'])}, top-{min(5, len(classes))} {_fmt(result['top5'])}, "
                  f"mean class accuracy {_fmt(result['mean_class_accuracy'])}"), "  per-class accuracy:"]
        return lines + [f"    {name:<{width}}  {_fmt(acc)}" for name, acc in result["per_class"].items()]
    lines = [(f"{head} ({result['classes_scored']} scored), mAP {_fmt(result['mAP'], False)}, "
              f"mAUC {_fmt(result['mAUC'], False)}, d-prime {_fmt(result['d_prime'], False)}")]
    if result["classes_scored"] < len(classes):
        lines.append(f"  left out of the means: {result['classes_without_positives']} classes without a positive "
                     f"clip, {result['classes_without_negatives']} without a negative clip")
    scored = sorted(((s["ap"], name) for name, s in result["per_class"].items() if s["ap"] is not None),
                    key=lambda x: (-x[0], x[1]))

    def row(name: str) -> str:
        s = result["per_class"][name]
        return f"    {name:<{width}}  AP {s['ap']:.4f}  AUC {s['auc']:.4f}  ({s['positives']} positives)"

    if len(scored) <= 20:
        return lines + ["  AP per class:", *(row(name) for _, name in scored)]
    return lines + ["  10 best APs:", *(row(name) for _, name in scored[:10]),
                    "  10 worst APs:", *(row(name) for _, name in scored[-10:])]
