"""AVS model: shapes, stage sizes, the spec 7 parameter count, TPAVI against the explicit (N x N) formula."""

from __future__ import annotations

import pytest
import torch

from lavish.errors import ConfigError
from lavish.tasks.avs.model import TPAVI, AvsModel, AvsModelConfig

MICRO = "lavish_swinv2_micro_window4_64"


def test_swinv2_large_counts_match_spec_7():
    with torch.device("meta"):
        plain = AvsModel(AvsModelConfig())
        tpavi = AvsModel(AvsModelConfig(tpavi_stages=(0, 1, 2, 3)))
    count = lambda m, prefix="": sum(p.numel() for n, p in m.named_parameters() if p.requires_grad and n.startswith(prefix))  # noqa: E731
    assert count(plain, "backbone.slots") == 17_148_048
    assert sum(count(plain, f"x{i}_linear") for i in range(1, 5)) == 1_094_656
    assert count(plain, "audio_linear") == 196_736
    assert sum(count(plain, f"conv{i}") for i in range(1, 5)) == 9_441_280
    assert sum(count(plain, f"path{i}") for i in range(1, 5)) == 9_441_280
    assert count(plain, "output_conv") == 331_969
    assert count(plain) == 37_653_969 and abs(count(plain) / 37.2e6 - 1) < 0.02
    assert count(tpavi) - count(plain) == 4 * 165_760


def test_stage_sizes_and_output_shape():
    assert AvsModelConfig().stage_sizes() == [(56, 56), (28, 28), (14, 14), (7, 7)]
    cfg = AvsModelConfig(backbone=MICRO, mask_size=(64, 48), decoder_channels=8, tpavi_stages=(1, 3))
    assert cfg.stage_sizes() == [(16, 16), (8, 8), (4, 4), (2, 2)]
    model = AvsModel(cfg)
    out = model(torch.randn(2, 3, 96, 64), torch.randn(2, 3, 3, 64, 64))
    assert out.shape == (2, 3, 64, 48) and torch.isfinite(out).all()
    vit = AvsModel(AvsModelConfig(backbone="lavish_vit_micro_patch8_64", mask_size=(64, 64), decoder_channels=8,
                                  modalities="v"))
    assert vit(None, torch.randn(1, 5, 3, 64, 64)).shape == (1, 5, 64, 64)


def test_frames_are_independent_without_tpavi_and_mixed_with_it():
    torch.manual_seed(0)
    audio, frames = torch.randn(1, 3, 96, 64), torch.randn(1, 3, 3, 64, 64)
    for stages, independent in (((), True), ((0, 1, 2, 3), False)):
        model = AvsModel(AvsModelConfig(backbone=MICRO, mask_size=(64, 64), decoder_channels=8,
                                        tpavi_stages=stages)).eval()
        for m in model.tpavi.values():  # make TPAVI non-identity (BN weight starts at 0)
            torch.nn.init.ones_(m.W_z[1].weight)
        with torch.no_grad():
            full = model(audio, frames)
            changed = frames.clone()
            changed[:, 2] = torch.randn(3, 64, 64)
            other = model(audio, changed)
        same0 = torch.allclose(full[:, 0], other[:, 0], atol=1e-5)
        assert same0 == independent


def test_tpavi_equals_explicit_formula():
    torch.manual_seed(0)
    m = TPAVI(16).eval()
    torch.nn.init.normal_(m.W_z[1].weight)
    torch.nn.init.normal_(m.W_z[1].bias)
    x, audio = torch.randn(2, 16, 5, 3, 4), torch.randn(2, 5, 128)
    with torch.no_grad():
        got = m(x, audio)
        b, c, t, h, w = x.shape
        a = m.align_channel(audio).permute(0, 2, 1)[..., None, None].repeat(1, 1, 1, h, w)
        g = m.g(x).view(b, 8, -1).permute(0, 2, 1)
        theta = m.theta(x).view(b, 8, -1).permute(0, 2, 1)
        phi = m.phi(a).view(b, 8, -1)
        f = theta @ phi
        y = (f / f.size(-1)) @ g
        y = y.permute(0, 2, 1).reshape(b, 8, t, h, w)
        z = m.W_z(y) + x
        ref = m.norm_layer(z.permute(0, 2, 3, 4, 1)).permute(0, 4, 1, 2, 3)
    torch.testing.assert_close(got, ref, rtol=1e-4, atol=1e-5)


def test_bad_configs_are_refused():
    with pytest.raises(ConfigError, match="tpavi_stages"):
        AvsModelConfig(tpavi_stages=(4,))
    with pytest.raises(ConfigError, match="TPAVI needs the audio"):
        AvsModelConfig(modalities="v", tpavi_stages=(0,))
    with pytest.raises(ConfigError, match="modalities"):
        AvsModelConfig(modalities="a")
    cfg = AvsModelConfig(tpavi_stages=[3, 0])
    assert AvsModelConfig.from_dict(cfg.to_dict()) == cfg
