"""``lavish info`` on backbones found by their class (docs/backbones.md): DeiT-III (a ViT), Swin (V1) and EVA-02.

Each is counted on the meta device (no download). The numbers are checked against independent ones: the frozen
count is timm's own parameter count of the model without classifier; the trainable count equals that of the paper
backbone with the same block widths (DeiT-III-B and EVA-02-B: ViT-B; Swin-B: Swin-V2-B), built apart; the backbone
FLOPs are timm's ``forward_features`` on the frame plus on the audio image as the family feeds it.
"""

from __future__ import annotations

import json

import pytest
import timm
import torch
from torch.utils.flop_counter import FlopCounterMode

from lavish.cli.main import main
from lavish.tasks.ave.model import AveModel, AveModelConfig

# backbone -> (paper backbone of the same widths, audio image the family feeds: (height, width))
CASES = {
    # ViT: the 'ave_vit' spectrogram (102 x 128) as is, which the stride-16 patch conv reads as 6 x 8 patches
    "deit3_base_patch16_224": ("vit_base_patch16_224", (96, 128)),
    "swin_base_patch4_window7_224": ("swinv2_base_window12_192", (224, 224)),  # resized to the frame grid
    "eva02_base_patch14_224.mim_in22k": ("vit_base_patch16_224", (224, 224)),  # resized to the frame grid
}


def trainable_of(backbone: str) -> int:
    with torch.device("meta"):
        model = AveModel(AveModelConfig(backbone=backbone))
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def timm_flops(backbone: str, audio_size: tuple[int, int]) -> float:
    """FLOPs of timm's forward_features on one 224x224 frame and one audio image (meta device)."""
    with torch.device("meta"):
        model = timm.create_model(backbone.split(".")[0], num_classes=0, dynamic_img_size="deit3" in backbone)
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        for size in ((224, 224), audio_size):
            model.forward_features(torch.zeros(1, 3, *size, device="meta"))
    return float(counter.get_total_flops())


@pytest.mark.parametrize("backbone", list(CASES))
def test_info_counts_a_backbone_of_each_new_family(capsys, backbone: str) -> None:
    same_widths, audio_size = CASES[backbone]
    assert main(["info", "--task", "ave", "--backbone", backbone, "--json"]) == 0
    acc = json.loads(capsys.readouterr().out)

    with torch.device("meta"):
        frozen = sum(p.numel() for p in timm.create_model(backbone.split(".")[0], num_classes=0).parameters())
    assert acc["frozen_params"] == frozen
    assert acc["trainable_params"] == acc["adapter_params"] + acc["head_params"] == trainable_of(same_widths)
    assert acc["total_params"] == frozen + acc["trainable_params"]
    # the wrapper runs the whole frozen backbone once per stream (+ the AVE head, a few MFLOPs)
    assert acc["backbone_gflops"] * 1e9 == pytest.approx(timm_flops(backbone, audio_size), rel=1e-3)
    assert 0 < acc["adapter_gflops"] < acc["backbone_gflops"] / 20


def test_info_refuses_a_cnn_in_one_line(capsys) -> None:
    assert main(["info", "--task", "ave", "--backbone", "resnet50"]) == 2
    assert capsys.readouterr().err == (
        "error: backbone resnet50 is a ResNet, not a supported transformer family: ViT (VisionTransformer, "
        "VisionTransformerDistilled), Swin-V2 (SwinTransformerV2), Swin (SwinTransformer), EVA-02 (Eva)\n")
