"""AVQA task: loss arithmetic, seeded negatives from other videos, lr rule, one epoch of training end to end."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from avqa_layout import MICRO, make_avqa_layout, prepare_avqa_cache
from lavish.errors import ConfigError
from lavish.models.adapters import PRESETS
from lavish.tasks.avqa.model import AvqaModelConfig, AvqaOutput
from lavish.tasks.avqa.dataset import IGNORE, AvqaQuestions, Vocabularies, split_records
from lavish.tasks.avqa.model import avqa_loss
from lavish.tasks.avqa.task import AvqaTrainConfig
from lavish.engine.train import evaluate, train


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    root = tmp_path_factory.mktemp("avqa_task")
    return prepare_avqa_cache(make_avqa_layout(root / "data"), root / "cache")


def test_loss_is_answer_ce_plus_half_match_ce():
    torch.manual_seed(0)
    logits, posi, nega = torch.randn(2, 5), torch.randn(6, 2), torch.randn(6, 2)
    out = AvqaOutput(logits, posi, nega, torch.zeros(2, 3, 4), torch.zeros(2, 3), torch.zeros(2, 3))
    answers = torch.tensor([3, IGNORE])
    expected = F.cross_entropy(logits[:1], answers[:1]) + 0.5 * 0.5 * (
        F.cross_entropy(posi, torch.ones(6, dtype=torch.long)) + F.cross_entropy(nega, torch.zeros(6, dtype=torch.long)))
    torch.testing.assert_close(avqa_loss(out, answers), expected)


def test_negatives_come_from_other_videos_deterministically(cache):
    vocab = Vocabularies.from_records(split_records(cache, "train"))
    ds = AvqaQuestions(cache, "train", vocab, negatives=True, seed=5)
    same = AvqaQuestions(cache, "train", vocab, negatives=True, seed=5)
    assert torch.equal(ds[(0, 0)]["negatives"], same[(0, 0)]["negatives"])
    assert not torch.equal(ds[(0, 0)]["negatives"], ds[(0, 1)]["negatives"])  # new draw each epoch
    import numpy as np

    own = np.load(cache / "frames" / f"{ds.records[0].video_id}.npy")
    neg = ds[(0, 2)]["negatives"].numpy()
    assert neg.shape == own.shape
    assert not any((neg[t] == own[s]).all() for t in range(len(neg)) for s in range(len(own)))
    assert len(ds.questions[0]) == 14 and ds.answers.min() >= 0


def test_lr_rule():
    assert AvqaTrainConfig(batch_size=16).scaled_lr == pytest.approx(8e-5 * 4)
    assert AvqaTrainConfig(batch_size=16, lr_rule="linear").scaled_lr == pytest.approx(8e-5 * 16)
    assert AvqaTrainConfig(batch_size=16, lr_rule="constant").scaled_lr == pytest.approx(8e-5)
    with pytest.raises(ConfigError, match="lr-rule='cubic' is not valid"):
        AvqaTrainConfig(lr_rule="cubic")


def test_one_epoch_trains_and_evaluates_per_type(cache, tmp_path):
    model = AvqaModelConfig(backbone=MICRO, adapter=PRESETS["avqa_paper"])
    train_config = AvqaTrainConfig(epochs=1, batch_size=8, lr=1e-3, seed=0)
    result = train("avqa", cache, tmp_path / "run", model, train_config, progress=False, test=False)
    assert result.adapter.is_file() and result.best_epoch == 0
    ev = evaluate(result.adapter, cache, split="val", progress=False)
    records = split_records(cache, "val")
    assert ev["questions"] == len(records) and ev["counts"]["overall"] == len(records)
    for key in ("audio", "visual", "audio_visual", "overall", "audio_visual_temporal"):
        assert key in ev and key in ev["prior"]
    assert ev["overall"] == pytest.approx(result.best_value, abs=1e-6)
    assert all(math.isnan(v) or 0 <= v <= 1 for k, v in ev.items() if k in ev["prior"])
