"""AvqaModel: the paper's 21.09M trainable (Table 3) from the authors' modules, shapes, attention, gradients."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from lavish.models.adapters import PRESETS
from lavish.tasks.avqa.model import UNUSED_MODULES, AvqaModel, AvqaModelConfig


def _count(model, keep) -> int:
    return sum(p.numel() for n, p in model.named_parameters() if keep(n, p))


def test_authors_run_preset_gives_the_papers_trainable_count():
    with torch.device("meta"):
        model = AvqaModel(AvqaModelConfig())  # Swin-V2-L, preset avqa (m=64, r=8, G=4), LayerNorms trained
    trainable = _count(model, lambda n, p: p.requires_grad)
    assert _count(model, lambda n, p: ".slots." in n) == 8_835_264
    assert _count(model, lambda n, p: n.startswith("head.")) == 12_182_188 + 512  # + the '<unk>' embedding row
    assert _count(model, lambda n, p: n.startswith("backbone.backbone.") and p.requires_grad) == 81_024
    assert trainable == 21_098_988 and abs(trainable / 21.09e6 - 1) < 0.02
    assert _count(model, lambda n, p: True) + 33_570_225 == pytest.approx(249.8e6, rel=1e-3)  # + unused 22k head
    with torch.device("meta"):
        paper = AvqaModel(AvqaModelConfig(adapter=dataclasses.replace(PRESETS["avqa_paper"])))
    assert _count(paper, lambda n, p: p.requires_grad) / 1e6 == pytest.approx(29.41, abs=0.01)


@pytest.mark.parametrize("backbone", ["lavish_vit_micro_patch8_64", "lavish_swinv2_micro_window4_64"])
def test_forward_shapes_attention_and_gradients(backbone):
    torch.manual_seed(0)
    config = AvqaModelConfig(backbone=backbone, adapter=dataclasses.replace(PRESETS["avqa_paper"]),
                             question_vocab=20, num_answers=7)
    model = AvqaModel(config)
    for module in model.backbone.slots.modules():  # open the zero-initialised gates so adapters get gradients
        for name, param in module.named_parameters(recurse=False):
            if "gate" in name:
                param.data.fill_(0.5)
    b, t = 2, 3
    audio = torch.randn(b, t, 96, 64)
    frames, negatives = torch.randn(b, t, 3, 64, 64), torch.randn(b, t, 3, 64, 64)
    question = torch.randint(1, 20, (b, 14))
    frozen = {n: p.detach().clone() for n, p in model.backbone.backbone.named_parameters() if not p.requires_grad}
    out = model(audio, frames, question, negatives)
    grid = 64 if "vit" in backbone else 4  # ViT: 8x8 patches (class token dropped); Swin-V2 last stage: 2x2
    assert out.logits.shape == (b, 7) and out.match_posi.shape == (b * t, 2) and out.match_nega.shape == (b * t, 2)
    assert out.spatial.shape == (b, t, grid)
    torch.testing.assert_close(out.spatial.sum(-1), torch.ones(b, t))
    with torch.no_grad():  # temporal weights sum to 1 without dropout (MHA drops attention weights in training)
        ev = model.eval()(audio, frames, question)
        model.train()
    for att in (ev.temporal_visual.sum(-1), ev.temporal_audio.sum(-1)):
        torch.testing.assert_close(att, torch.ones(b))
    (out.logits.sum() + out.match_posi.sum() + out.match_nega.sum()).backward()
    for name, param in model.named_parameters():
        unused = name.startswith("head.") and name.split(".")[1] in UNUSED_MODULES
        if not param.requires_grad:
            assert param.grad is None
        elif unused:
            assert param.grad is None, name
        else:
            assert param.grad is not None and param.grad.abs().sum() > 0, name
    assert any("norm" in n and p.grad is not None for n, p in model.backbone.backbone.named_parameters())
    for n, p in model.backbone.backbone.named_parameters():
        if n in frozen:
            assert torch.equal(p, frozen[n])


def test_negatives_skip_the_adapters():
    torch.manual_seed(0)
    model = AvqaModel(AvqaModelConfig(backbone="lavish_vit_micro_patch8_64", question_vocab=10, num_answers=3)).eval()
    frames = torch.randn(4, 3, 64, 64)
    before = model.negative_tokens(frames)
    for p in model.backbone.slots.parameters():
        p.data.add_(0.3)
    torch.testing.assert_close(model.negative_tokens(frames), before)
    assert before.shape == (4, 64, 96) and not before.requires_grad
    posi = model.backbone(torch.randn(4, 96, 64), frames).visual
    assert not torch.allclose(model.visual_tokens(posi), before)
