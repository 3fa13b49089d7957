"""AVSBench metrics exactly as the benchmark computes them (spec 3.2; AVSBench ``utils/utility.py``).

* **mIoU** (``mask_iou``): per frame, pred = sigmoid(logit) > 0.5; IoU = inter / (union + 1e-7) with
  inter = |pred AND gt|, union = |pred OR gt|; a frame with an EMPTY ground truth scores the fraction of pixels
  predicted empty (inter = |NOT pred AND NOT gt|, union = H*W). The benchmark averages frames within a batch,
  then batches; it evaluates one video per batch, so the value is the mean over videos of the mean over the
  video's annotated frames. That is what :class:`AvsMIoU` accumulates.
* **F-score** (``Eval_Fmeasure``): prob = sigmoid(logit); for 255 thresholds ``linspace(0, 1 - 1e-10, 255)``
  (float32, so the last one is 1.0) precision = TP / (#(prob >= th) + 1e-20), recall = TP / (#gt + 1e-20),
  F = 1.3 P R / (0.3 P + R) (beta^2 = 0.3), NaN -> 0; frames with an empty ground truth are skipped; the
  F curves of a video's frames are averaged and the maximum over thresholds is the video's score (0 when every
  frame of the video was skipped, as the benchmark's zero-initialised curve); the result is the mean over videos.

torchmetrics has no metric with the empty-mask rule or the per-video max over thresholds, hence these small
functions; the Metric classes only sum per-video scores (so they are correct under DDP).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch.utils.data import DataLoader
from torchmetrics import Metric

from lavish.engine.task import Evaluation
from lavish.tasks.avs.dataset import AvsDataModule, collate

IOU_EPS = 1e-7
F_BETA2 = 0.3
F_THRESHOLDS = 255


def frame_iou(logits: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    """Per-frame IoU with the empty-ground-truth rule. logits, gt: (N, H, W) (gt 0/1) -> (N,) float32."""
    pred = (torch.sigmoid(logits.float()) > 0.5).float()
    gt = gt.float()
    inter = (pred * gt).sum((1, 2))
    union = torch.maximum(pred, gt).sum((1, 2))
    empty = gt.sum((1, 2)) == 0
    inter = torch.where(empty, ((1 - pred) * (1 - gt)).sum((1, 2)), inter)
    union = torch.where(empty, torch.full_like(union, gt.shape[-1] * gt.shape[-2]), union)
    return inter / (union + IOU_EPS)


def f_curve(probs: torch.Tensor, gt: torch.Tensor, num: int = F_THRESHOLDS) -> torch.Tensor:
    """F-measure (beta^2 = 0.3) of one frame at each threshold. probs, gt: (H, W) -> (num,) float32."""
    th = torch.linspace(0, 1 - 1e-10, num)  # float32, as the benchmark
    pred = (probs.float().reshape(1, -1) >= th[:, None].to(probs.device)).float()  # (num, HW)
    g = gt.float().reshape(-1)
    tp = pred @ g
    prec = tp / (pred.sum(1) + 1e-20)
    rec = tp / (g.sum() + 1e-20)
    f = (1 + F_BETA2) * prec * rec / (F_BETA2 * prec + rec)
    return torch.nan_to_num(f, nan=0.0).cpu()


def video_fscore(logits: torch.Tensor, gt: torch.Tensor, num: int = F_THRESHOLDS) -> float:
    """Max over thresholds of the mean F curve over the frames with a non-empty gt. logits, gt: (N, H, W)."""
    probs = torch.sigmoid(logits.float())
    curves = [f_curve(p, g, num) for p, g in zip(probs, gt) if g.sum() > 0]
    if not curves:
        return 0.0
    return float(torch.stack(curves).mean(0).max())


class _PerVideoMean(Metric):
    """Mean over videos of ``score(logits (N, H, W), gt (N, H, W)) -> float`` of each video's annotated frames."""

    full_state_update = False

    def __init__(self, score, **kwargs) -> None:
        super().__init__(**kwargs)
        self.score = score
        self.add_state("total", torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("videos", torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, logits: torch.Tensor, gt: torch.Tensor, annotated: torch.Tensor) -> None:
        """logits, gt: (B, T, H, W); annotated: (B, T) bool, the frames that have a ground-truth mask."""
        for lg, g, a in zip(logits, gt, annotated):
            if a.any():
                self.total += self.score(lg[a], g[a])
                self.videos += 1

    def compute(self) -> torch.Tensor:
        return (self.total / self.videos.clamp(min=1)).float()


class AvsMIoU(_PerVideoMean):
    """Benchmark mIoU: mean over videos of the mean frame IoU (see module doc)."""

    def __init__(self, **kwargs) -> None:
        super().__init__(lambda logits, gt: float(frame_iou(logits, gt).mean()), **kwargs)


class AvsFScore(_PerVideoMean):
    """Benchmark F-score (beta^2 = 0.3, max over 255 thresholds per video; see module doc)."""

    def __init__(self, **kwargs) -> None:
        super().__init__(video_fscore, **kwargs)


class AvsEvaluation(Evaluation):
    """The benchmark's mIoU and F-score (per-video means, see :mod:`lavish.tasks.avs.metrics`)."""

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
