"""``lavish info`` against the paper's numbers (Table 1, Table 5, Fig. 4; docs/accounting.md explains each).

Models are built on the meta device, so the paper backbones cost no memory and no download. Each distinct
command line runs once per session (cached).
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from lavish.cli.main import main

MICRO_SWIN = "lavish_swinv2_micro_window4_64"
# backbone: (our trainable params, paper trainable M, ours total incl. the pretrained classifier, paper total M)
TABLE_1 = {
    "vit_base_patch16_224": (4_644_989, 4.7, 107_240_912, 107.2),
    "vit_large_patch16_224": (14_458_077, 14.5, 340_148_784, 340.1),
    "swinv2_base_window12_192": (4_951_005, 5.0, 114_231_846, 114.2),
    "swinv2_large_window12_192": (10_036_061, 10.1, 238_808_610, 238.8),
}
# trainable LayerNorm parameters of each backbone (spec 7): the paper's ViT-B / Swin-L counts include them
BACKBONE_LN = {"vit_base_patch16_224": 38_400, "swinv2_large_window12_192": 81_024}


#: one run per distinct command line, for the whole session
_CACHE: dict[tuple[str, ...], dict] = {}


@pytest.fixture
def info(capsys):
    cache = _CACHE

    def run(*args: str) -> dict:
        if args not in cache:
            code = main(["info", *args, "--json"])
            out = capsys.readouterr().out
            assert code == 0
            cache[args] = json.loads(out)
        return cache[args]

    return run


@pytest.mark.parametrize("backbone", list(TABLE_1))
def test_table_1_parameter_counts(info, backbone: str) -> None:
    ours, paper, ours_total, paper_total = TABLE_1[backbone]
    acc = info("--backbone", backbone)
    assert acc["trainable_params"] == ours
    assert acc["trainable_params"] == acc["adapter_params"] + acc["head_params"]
    assert abs(acc["trainable_params"] / 1e6 - paper) / paper < 0.02
    assert acc["total_params_with_pretrained_head"] == ours_total
    assert round(acc["total_params_with_pretrained_head"] / 1e6, 1) == paper_total
    assert acc["total_params"] == acc["trainable_params"] + acc["frozen_params"]
    if backbone in BACKBONE_LN:  # counted with the backbone LayerNorms, the paper's number is met to 0.1M
        assert round((ours + BACKBONE_LN[backbone]) / 1e6, 1) == paper


def test_swin_v2_large_breakdown(info) -> None:
    acc = info("--backbone", "swinv2_large_window12_192")
    assert acc["adapter_params"] == 8_447_808  # spec 7
    assert acc["head_params"] == 1_588_253  # Linear(3072, 512) + Linear(512, 29)
    assert acc["pretrained_head_params"] == 33_569_617  # the unused ImageNet-22k classifier (1536 x 21841 + 21841)
    assert acc["adapter"] == {"kind": "lavish", "num_latents": 2, "reduction": 8, "groups": 2, "use_bn": True,
                              "ln_before": True, "ln_post": True, "audio_gate": True, "order": "ave",
                              "latent_init": "uniform", "fusion": "bi", "formulation": "code"}


def test_table_5_avish_costs_about_twenty_times_lavish(info) -> None:
    lavish = info("--backbone", "swinv2_large_window12_192")
    avish = info("--backbone", "swinv2_large_window12_192", "--adapter", "avish")
    ratio = avish["adapter_gflops"] / lavish["adapter_gflops"]
    assert 15 < ratio < 25  # paper: 217 / 11 = 19.7
    assert avish["backbone_gflops"] == pytest.approx(lavish["backbone_gflops"])
    assert avish["adapter_gmacs"] == pytest.approx(avish["adapter_gflops"] / 2)
    # the paper's 11 / 217 "GFLOPs" are GMACs of one 10-segment AVE video (docs/accounting.md)
    assert 10 * lavish["adapter_gmacs"] == pytest.approx(11, rel=0.05)
    assert 10 * avish["adapter_gmacs"] == pytest.approx(217, rel=0.05)


def test_fig_4_adapter_cost_grows_linearly_with_latent_tokens(info) -> None:
    """On the micro Swin-V2 (same code path, a fraction of the time; docs/accounting.md has Swin-V2-L)."""
    latents = [1, 2, 4, 8, 16]
    runs = [info("--backbone", MICRO_SWIN, "--latents", str(m)) for m in latents]
    flops = np.array([r["adapter_gflops"] for r in runs])
    slope, intercept = np.polyfit(latents, flops, 1)
    r2 = 1 - np.sum((flops - np.polyval([slope, intercept], latents)) ** 2) / np.sum((flops - flops.mean()) ** 2)
    assert slope > 0 and intercept > 0
    assert r2 > 0.999
    assert len({r["backbone_gflops"] for r in runs}) == 1
    # every extra latent token adds one C-vector per adapter: 4 adapters x sum of block widths (32+64+2*128+256)
    params = [r["trainable_params"] for r in runs]
    assert np.diff(params).tolist() == [4 * 608 * d for d in np.diff(latents)]


def test_text_output_shows_the_json_numbers(info, capsys) -> None:
    acc = info("--backbone", MICRO_SWIN, "--latents", "2")
    assert main(["info", "--backbone", MICRO_SWIN, "--latents", "2"]) == 0
    out = capsys.readouterr().out
    assert f"{acc['trainable_params']:,} ({acc['trainable_params'] / 1e6:.2f}M)" in out
    assert f"{acc['total_params_with_pretrained_head']:,}" in out and "the paper's convention" in out
    assert f"{acc['adapter_gflops']:.3f} ({acc['adapter_gmacs']:.3f} GMACs)" in out


@pytest.mark.parametrize(
    ("args", "bad"),
    [(["--backbone", "resnet50"], "resnet50"), (["--latents", "-2"], "-2"), (["--groups", "7"], "groups=7")],
)
def test_bad_options_exit_2_with_one_line(capsys, args: list[str], bad: str) -> None:
    assert main(["info", *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and bad in err and err.count("\n") == 1
