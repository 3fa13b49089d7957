"""Table 6's CMA column: cross-modal attention in front of the adapter, Compacter and LoRA baselines.

On the micro Swin-V2 (post-norms activated so the blocks act), in eval mode:

* zero gates: a CMA variant computes exactly what its plain adapter computes, which is the plain backbone
  (tests/models/test_backbone.py), and stays equal to it while only g_av is zero and the adapters act;
* open gates: each stream reads the other modality: changing the audio input changes the visual features, which
  without CMA it cannot.
"""

from __future__ import annotations

import pytest
import torch

from backbone_helpers import activate_post_norms, open_gates
from lavish.models.adapters import adapter_config
from lavish.models.backbone import LavishBackbone, create_backbone

SWIN_MICRO = "lavish_swinv2_micro_window4_64"
KINDS = ("adapter", "compacter", "lora")
CMAS = ("direct", "latent")


def pair(kind: str, cma: str) -> tuple[LavishBackbone, LavishBackbone]:
    """(plain adapter model, CMA model) with the same backbone and the same adapter weights, in eval mode."""
    torch.manual_seed(0)
    plain = LavishBackbone(activate_post_norms(create_backbone(SWIN_MICRO)), adapter_config(kind)).eval()
    with_cma = LavishBackbone(activate_post_norms(create_backbone(SWIN_MICRO)), adapter_config(kind, cma=cma)).eval()
    missing, unexpected = with_cma.load_state_dict(plain.state_dict(), strict=False)
    assert not unexpected and missing and all(".fusion." in n for n in missing)
    return plain, with_cma


def same(a, b) -> bool:
    """Both streams' features bit-identical."""
    return torch.equal(a.audio, b.audio) and torch.equal(a.visual, b.visual)


def segments(seed: int = 0, batch: int = 2):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(batch, 56, 64, generator=gen), torch.randn(batch, 3, 64, 64, generator=gen)


@pytest.mark.parametrize("cma", CMAS)
@pytest.mark.parametrize("kind", KINDS)
def test_cma_has_no_effect_until_its_gate_opens(kind: str, cma: str) -> None:
    plain, with_cma = pair(kind, cma)
    spec, frames = segments()
    with torch.no_grad():
        closed = plain(spec, frames)
        assert same(closed, with_cma(spec, frames))  # all gates zero
        for model in (plain, with_cma):  # the adapters act; g_av stays zero
            open_gates(model)
            for name, p in model.named_parameters():
                if name.endswith("gate_av.gate"):
                    p.zero_()
        acting = plain(spec, frames)
        assert (acting.visual - closed.visual).abs().max() > 1e-3
        assert same(acting, with_cma(spec, frames))


@pytest.mark.parametrize("cma", CMAS)
@pytest.mark.parametrize("kind", KINDS)
def test_open_cma_brings_the_other_modality_into_each_stream(kind: str, cma: str) -> None:
    plain, with_cma = pair(kind, cma)
    open_gates(plain)
    open_gates(with_cma)
    spec, frames = segments()
    other_spec, _ = segments(seed=1)
    with torch.no_grad():
        ref, out = plain(spec, frames), with_cma(spec, frames)
        assert not torch.allclose(out.visual, ref.visual) and not torch.allclose(out.audio, ref.audio)
        # the visual features follow the audio input only through the cross-modal path, and vice versa
        torch.testing.assert_close(plain(other_spec, frames).visual, ref.visual, rtol=0, atol=1e-6)
        assert (with_cma(other_spec, frames).visual - out.visual).abs().max() > 1e-3
        assert (with_cma(spec, frames.flip(0)).audio - out.audio).abs().max() > 1e-3
