"""AVS task: the loss reads only annotated frames; one training epoch on a tiny real cache writes an adapter file
that evaluate_avs reloads to the same metrics as the metric functions on the model's own outputs."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from lavish.tasks.avs.prepare import prepare_avs
from lavish.tasks.avs.synthetic import make_synthetic_avs
from lavish.media.audio import get_frontend
from lavish.media.frames import normalize_frames
from lavish.tasks.avs.model import AvsModelConfig
from lavish.tasks.avs.dataset import AvsCacheDataset, collate
from lavish.tasks.avs.model import avs_loss
from lavish.tasks.avs.task import AvsTrainConfig
from lavish.engine.train import evaluate, load, train
from lavish.tasks.avs.metrics import baseline_scores, frame_iou, video_fscore

MICRO = "lavish_swinv2_micro_window4_64"


def test_loss_uses_annotated_frames_only():
    torch.manual_seed(0)
    logits, masks = torch.randn(2, 5, 4, 4), (torch.rand(2, 5, 4, 4) > 0.5).float()
    annotated = torch.zeros(2, 5, dtype=torch.bool)
    annotated[:, 0] = True
    loss = avs_loss(logits, masks, annotated)
    changed = logits.clone()
    changed[:, 1:] = 100.0
    assert avs_loss(changed, masks, annotated) == loss
    p = torch.sigmoid(logits[:, 0])
    ref = -(masks[:, 0] * p.log() + (1 - masks[:, 0]) * (1 - p).log()).mean()
    torch.testing.assert_close(loss, ref)


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    root = tmp_path_factory.mktemp("avs")
    make_synthetic_avs(root / "data", num_videos=6, num_classes=2)
    prepare_avs(root / "data", root / "cache", frame_size=(64, 64), frontend=get_frontend("micro"), progress=False)
    return root / "cache"


def test_train_one_epoch_then_evaluate(cache, tmp_path):
    ds = AvsCacheDataset(cache, "train")
    item = ds[0]
    assert item["masks"].shape == (5, 64, 64) and item["annotated"].tolist() == [True, False, False, False, False]
    model = AvsModelConfig(backbone=MICRO, decoder_channels=8, tpavi_stages=(0, 3))
    result = train("avs", cache, tmp_path / "run", model, AvsTrainConfig(epochs=1, batch_size=2, lr=1e-3),
                   progress=False, test=False)
    assert result.best_epoch == 0 and (tmp_path / "run" / "best.safetensors").exists()
    assert json.loads((tmp_path / "run" / "run.json").read_text())["model"]["mask_size"] == [64, 64]
    got = evaluate(result.adapter, cache, split="val", progress=False)
    assert got["subset"] == "s4" and got["frames"] == 5 * got["videos"]
    assert got["miou"] == pytest.approx(result.best_value, abs=1e-5)
    _, loaded, meta = load(result.adapter, task="avs")
    assert meta["task"] == "avs" and loaded.config.tpavi_stages == (0, 3)
    batch = collate([AvsCacheDataset(cache, "val")[i] for i in range(got["videos"])])
    with torch.no_grad():
        logits = loaded(batch["audio"], normalize_frames(batch["frames"]))
    ious = [float(frame_iou(lg, m).mean()) for lg, m in zip(logits, batch["masks"])]
    fs = [video_fscore(lg, m) for lg, m in zip(logits, batch["masks"])]
    assert got["miou"] == pytest.approx(np.mean(ious), abs=1e-5)
    assert got["fscore"] == pytest.approx(np.mean(fs), abs=1e-5)
    base = baseline_scores(cache, backbone=MICRO, split="val")
    assert base["all background"]["miou"] == 0.0  # every S4 frame has a sounding object
    assert 0 < base["all object"]["miou"] < 0.2
