"""The clip classifier (lavish.tasks.classify.model): its forward against the backbone's own features pooled by hand,
the heads, the losses against numbers worked by hand and torch's reference formulas, the balanced class weights
against sklearn, the config's refusals."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from sklearn.utils.class_weight import compute_class_weight

from lavish.errors import ConfigError
from lavish.tasks.classify.model import (ClassifyHead, ClassifyModel, ClassifyModelConfig, balanced_weights,
                                         classify_loss)

MICRO = "lavish_vit_micro_patch8_64"


def _inputs(b: int = 2, t: int = 3, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, t, 96, 64, generator=g), torch.randn(b, t, 3, 64, 64, generator=g)


@pytest.mark.parametrize("modalities", ["av", "v", "a"])
def test_forward_is_the_head_of_the_segments_pooled_features_averaged_over_time(modalities):
    torch.manual_seed(0)
    model = ClassifyModel(ClassifyModelConfig(backbone=MICRO, num_classes=5, modalities=modalities)).eval()
    audio, frames = _inputs()
    with torch.no_grad():
        logits = model(audio, frames)
        out = model.backbone(audio.flatten(0, 1), frames.flatten(0, 1))
        parts = [model.backbone.pool(x) for x in (out.visual, out.audio) if x is not None]
        per_segment = torch.cat(parts, -1).view(2, 3, -1)  # (B, T, F): visual first, then audio
        expected = model.head(per_segment.mean(1))
    assert logits.shape == (2, 5)
    assert per_segment.shape[-1] == model.backbone.num_features * len(modalities)
    torch.testing.assert_close(logits, expected)
    # each clip is its own: the second clip's logits do not change when the first clip's inputs do
    audio2, frames2 = audio.clone(), frames.clone()
    audio2[0], frames2[0] = audio2[0] + 1, frames2[0] + 1
    with torch.no_grad():
        torch.testing.assert_close(model(audio2, frames2)[1], logits[1])


def test_heads_compute_layernorm_then_linear_or_mlp_by_hand():
    torch.manual_seed(1)
    x = torch.randn(4, 6)
    linear = ClassifyHead(6, 3, "linear")
    normed = (x - x.mean(-1, keepdim=True)) / torch.sqrt(x.var(-1, unbiased=False, keepdim=True) + 1e-5)
    torch.testing.assert_close(linear(x), normed @ linear.fc.weight.T + linear.fc.bias)
    mlp = ClassifyHead(6, 3, "mlp", hidden=8).eval()
    h = torch.nn.functional.gelu(normed @ mlp.fc[0].weight.T + mlp.fc[0].bias)
    torch.testing.assert_close(mlp(x), h @ mlp.fc[3].weight.T + mlp.fc[3].bias)
    assert sum(p.numel() for p in linear.parameters()) == 2 * 6 + 6 * 3 + 3
    with torch.device("meta"):  # the counts docs/classify.md states for Swin-V2-L (F = 2 x 1536)
        counts = {k: sum(p.numel() for p in ClassifyHead(3072, k).parameters()) for k in (2, 309, 527)}
    assert counts == {2: 12_290, 309: 955_701, 527: 1_625_615}


def test_only_adapters_and_head_train_and_the_head_count_is_layernorm_plus_linear():
    model = ClassifyModel(ClassifyModelConfig(backbone=MICRO, num_classes=7))
    f = model.backbone.num_features * 2
    assert sum(p.numel() for p in model.head.parameters()) == 2 * f + f * 7 + 7
    trainable = {n.split(".")[0] for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {"backbone", "head"}
    frozen = [n for n, p in model.backbone.named_parameters() if not p.requires_grad]
    assert frozen and all("adapter" not in n and "lavish" not in n for n in frozen[:20])


def test_single_label_loss_is_cross_entropy_worked_by_hand():
    logits = torch.tensor([[2.0, 0.0, 0.0], [0.0, 1.0, 3.0]])
    labels = torch.tensor([0, 1])
    # clip 0: -log(e^2 / (e^2 + 2)); clip 1: -log(e^1 / (1 + e^1 + e^3)); mean of the two
    by_hand = (-math.log(math.e**2 / (math.e**2 + 2)) - math.log(math.e / (1 + math.e + math.e**3))) / 2
    config = ClassifyModelConfig(backbone=MICRO, num_classes=3)
    assert classify_loss(logits, labels, config).item() == pytest.approx(by_hand, rel=1e-6)
    # smoothing 0.3 over 3 classes: target = 0.7 + 0.1 = 0.8 on the label, 0.1 elsewhere (torch: eps / K spread)
    smooth = ClassifyModelConfig(backbone=MICRO, num_classes=3, label_smoothing=0.3)
    logp = logits.log_softmax(-1)
    target = torch.full((2, 3), 0.1)
    target[0, 0] = target[1, 1] = 0.7 + 0.1
    assert classify_loss(logits, labels, smooth).item() == pytest.approx(float(-(target * logp).sum(-1).mean()),
                                                                         rel=1e-6)
    # class weights: torch's weighted mean, sum_i w_yi * l_i / sum_i w_yi
    weighted = ClassifyModelConfig(backbone=MICRO, num_classes=3, class_weights=[2.0, 0.5, 1.0])
    per_clip = -logp[torch.arange(2), labels]
    assert classify_loss(logits, labels, weighted).item() == pytest.approx(
        float((2.0 * per_clip[0] + 0.5 * per_clip[1]) / 2.5), rel=1e-6)


def test_multi_label_loss_is_binary_cross_entropy_per_class_worked_by_hand():
    logits = torch.tensor([[0.0, 2.0], [-1.0, 0.5]])
    targets = torch.tensor([[1, 0], [0, 1]])
    sig = lambda z: 1 / (1 + math.exp(-z))  # noqa: E731
    terms = [-math.log(sig(0.0)), -math.log(1 - sig(2.0)), -math.log(1 - sig(-1.0)), -math.log(sig(0.5))]
    config = ClassifyModelConfig(backbone=MICRO, num_classes=2, multi_label=True)
    assert classify_loss(logits, targets, config).item() == pytest.approx(sum(terms) / 4, rel=1e-6)
    weighted = ClassifyModelConfig(backbone=MICRO, num_classes=2, multi_label=True, class_weights=[3.0, 1.0])
    assert classify_loss(logits, targets, weighted).item() == pytest.approx(
        (3 * terms[0] + terms[1] + 3 * terms[2] + terms[3]) / 4, rel=1e-6)


def test_a_non_finite_logit_gives_a_nan_loss_not_an_exception():
    config = ClassifyModelConfig(backbone=MICRO, num_classes=2)
    assert math.isnan(classify_loss(torch.tensor([[float("nan"), 0.0]]), torch.tensor([0]), config).item())


def test_balanced_weights_equal_sklearn_and_count_each_label_of_multi_label_clips():
    labels = np.array([0, 0, 0, 1, 2, 2])
    expected = compute_class_weight("balanced", classes=np.arange(3), y=labels)
    np.testing.assert_allclose(balanced_weights(labels, 3), expected, rtol=1e-6)
    assert balanced_weights(np.array([0, 0, 1]), 3)[2] == 1.0  # a class without a training clip weighs 1
    multi = np.array([[1, 0, 1], [1, 1, 0], [1, 0, 0], [1, 0, 0]])
    # n / (K * n_k): 4 / (3 * 4), 4 / (3 * 1), 4 / (3 * 1)
    np.testing.assert_allclose(balanced_weights(multi, 3), [1 / 3, 4 / 3, 4 / 3], rtol=1e-5)


@pytest.mark.parametrize("settings, message", [
    ({"num_classes": 1}, "at least 2 classes"),
    ({"head": "conv"}, "head='conv' is not valid"),
    ({"class_weighting": "inverse"}, "class_weighting='inverse' is not valid"),
    ({"label_smoothing": 1.0}, "label_smoothing=1.0 is not valid"),
    ({"label_smoothing": 0.1, "multi_label": True}, "applies to single-label sets"),
    ({"head_hidden": 256}, "settings of the MLP head"),
    ({"head": "mlp", "head_dropout": 1.5}, "head_dropout=1.5 is not valid"),
    ({"num_classes": 3, "class_weights": [1.0, 2.0]}, "2 values for 3 classes"),
    ({"modalities": "va"}, "modalities='va' is not valid"),
])
def test_config_refuses_settings_that_do_not_apply_in_one_line(settings, message):
    with pytest.raises(ConfigError, match=message) as err:
        ClassifyModelConfig(backbone=MICRO, **settings)
    assert "\n" not in str(err.value)


def test_config_round_trips_through_the_adapter_file_dict():
    config = ClassifyModelConfig(backbone=MICRO, num_classes=4, multi_label=True, head="mlp", head_hidden=32,
                                 class_weighting="balanced", class_weights=[1.0, 2.0, 0.5, 1.0])
    assert ClassifyModelConfig.from_dict(config.to_dict()) == config
