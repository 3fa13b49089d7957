"""AVSBench mIoU and F-score against straightforward loop implementations of the spec 3.2 formulas."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from lavish.tasks.avs.metrics import AvsFScore, AvsMIoU, f_curve, frame_iou, video_fscore


def ref_iou(logit: np.ndarray, gt: np.ndarray) -> float:
    """One frame, pixel by pixel."""
    inter = union = both_zero = 0
    h, w = gt.shape
    for y in range(h):
        for x in range(w):
            p = 1 if 1 / (1 + math.exp(-float(logit[y, x]))) > 0.5 else 0
            g = int(gt[y, x])
            inter += p * g
            union += max(p, g)
            both_zero += (1 - p) * (1 - g)
    if gt.sum() == 0:
        inter, union = both_zero, h * w
    return inter / (union + 1e-7)


def ref_fscore(logits: np.ndarray, gts: np.ndarray) -> float:
    """One video: mean F curve over frames with non-empty gt, max over 255 thresholds (float32 linspace)."""
    ths = np.linspace(0, 1 - 1e-10, 255).astype(np.float32)
    curves = []
    for logit, gt in zip(logits, gts):
        if gt.sum() == 0:
            continue
        prob = (1 / (1 + np.exp(-logit.astype(np.float64)))).astype(np.float32)
        curve = []
        for th in ths:
            pred = prob >= th
            tp = float(np.logical_and(pred, gt).sum())
            prec = tp / (pred.sum() + 1e-20)
            rec = tp / (gt.sum() + 1e-20)
            den = 0.3 * prec + rec
            curve.append(0.0 if den == 0 else 1.3 * prec * rec / den)
        curves.append(curve)
    if not curves:
        return 0.0
    return float(np.max(np.mean(curves, axis=0)))


def _cases():
    rng = np.random.default_rng(0)
    h = w = 12
    full, empty = np.ones((h, w), np.uint8), np.zeros((h, w), np.uint8)
    blob = empty.copy()
    blob[2:8, 3:9] = 1
    big, small = np.full((h, w), 6.0), np.full((h, w), -6.0)
    noisy = rng.normal(0, 3, (h, w))
    return [
        ("random", noisy, (rng.random((h, w)) < 0.3).astype(np.uint8)),
        ("empty gt, empty pred", small, empty),
        ("empty gt, some pred", noisy, empty),
        ("empty gt, full pred", big, empty),
        ("empty pred", small, blob),
        ("full gt, full pred", big, full),
        ("full gt, random pred", noisy, full),
        ("blob, exact pred", np.where(blob > 0, 4.0, -4.0), blob),
        ("logit exactly 0", np.zeros((h, w)), blob),
    ]


@pytest.mark.parametrize("name,logit,gt", _cases(), ids=[c[0] for c in _cases()])
def test_frame_iou_matches_loop(name, logit, gt):
    got = frame_iou(torch.tensor(logit[None], dtype=torch.float32), torch.tensor(gt[None]))
    assert got.shape == (1,)
    assert got.item() == pytest.approx(ref_iou(logit.astype(np.float32), gt), abs=1e-6)


def test_empty_gt_rule_values():
    empty = torch.zeros(1, 4, 4)
    assert frame_iou(torch.full((1, 4, 4), -5.0), empty).item() == pytest.approx(1.0, abs=1e-6)
    half = torch.full((1, 4, 4), -5.0)
    half[0, :2] = 5.0
    assert frame_iou(half, empty).item() == pytest.approx(0.5, abs=1e-6)
    assert frame_iou(torch.full((1, 4, 4), -5.0), torch.ones(1, 4, 4)).item() == 0.0


@pytest.mark.parametrize("name,logit,gt", _cases(), ids=[c[0] for c in _cases()])
def test_f_curve_single_frame_matches_loop(name, logit, gt):
    got = video_fscore(torch.tensor(logit[None], dtype=torch.float32), torch.tensor(gt[None]))
    assert got == pytest.approx(ref_fscore(logit[None].astype(np.float32), gt[None]), abs=1e-5)


def test_fscore_video_averages_curves_before_max_and_skips_empty_gt():
    rng = np.random.default_rng(1)
    logits = rng.normal(0, 2, (5, 10, 10)).astype(np.float32)
    gts = (rng.random((5, 10, 10)) < 0.4).astype(np.uint8)
    gts[2] = 0
    got = video_fscore(torch.tensor(logits), torch.tensor(gts))
    ref = ref_fscore(logits, gts)
    assert got == pytest.approx(ref, abs=1e-5)
    # the max of the mean curve is not the mean of per-frame maxima on this input
    per_frame = np.mean([ref_fscore(lg[None], g[None]) for lg, g in zip(logits, gts) if g.sum()])
    assert per_frame > ref + 1e-4
    assert f_curve(torch.rand(4, 4), torch.zeros(4, 4)).abs().sum() == 0  # no gt: every F is 0 (NaN -> 0)
    assert video_fscore(torch.tensor(logits), torch.zeros(5, 10, 10)) == 0.0


def test_metric_classes_average_over_videos_of_annotated_frames():
    rng = np.random.default_rng(2)
    logits = torch.tensor(rng.normal(0, 2, (3, 5, 8, 8)), dtype=torch.float32)
    gts = torch.tensor((rng.random((3, 5, 8, 8)) < 0.3).astype(np.uint8))
    gts[1, 3] = 0
    annotated = torch.ones(3, 5, dtype=torch.bool)
    annotated[0, 1:] = False  # S4 train style: first frame only
    annotated[2] = False  # a video without annotation does not count
    miou, fs = AvsMIoU(), AvsFScore()
    miou.update(logits[:2], gts[:2], annotated[:2])
    miou.update(logits[2:], gts[2:], annotated[2:])
    fs.update(logits, gts, annotated)
    v0 = ref_iou(logits[0, 0].numpy(), gts[0, 0].numpy())
    v1 = np.mean([ref_iou(logits[1, k].numpy(), gts[1, k].numpy()) for k in range(5)])
    assert miou.compute().item() == pytest.approx((v0 + v1) / 2, abs=1e-6)
    f0 = ref_fscore(logits[0, :1].numpy(), gts[0, :1].numpy())
    f1 = ref_fscore(logits[1].numpy(), gts[1].numpy())
    assert fs.compute().item() == pytest.approx((f0 + f1) / 2, abs=1e-5)
