"""The adapter maths against plain references written from the spec's formulas (spec 1.1, 1.2, 8.1).

References use einsum / softmax / grouped ``conv2d`` on the authors' (B', C, N, 1) layout, nothing from lavish,
in float64 so that the comparison is tight. Every learnable tensor (gates, latents, BN and LN affine) is set to
random non-zero values first, so that no term of the formula can hide behind a zero. The Table 6 baselines
(Compacter, LoRA) are checked against the PHM definition and the authors' layer shapes (docs/accounting.md).
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from lavish.errors import ConfigError
from lavish.models.adapters import adapter_config
from lavish.models.adapters.baselines import FACTORISED, CompacterBottleneck, LowRankBottleneck
from lavish.models.adapters.fusion import DirectFusion, LatentFusion
from lavish.models.adapters.layers import Bottleneck, GroupedLinear
from lavish.models.adapters.slots import PaperPairSlot, Streams, StreamAdapter

DIM, B, NX, NO, M = 16, 3, 7, 5, 4


def randomise(module: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """float64, every parameter and BN running statistic random and non-zero."""
    gen = torch.Generator().manual_seed(seed)
    module.double()
    with torch.no_grad():
        for name, p in module.named_parameters():
            p.copy_(torch.rand(p.shape, generator=gen, dtype=p.dtype) * 0.8 + 0.2
                    if name.endswith(("gate", "weight")) and p.ndim <= 1
                    else torch.randn(p.shape, generator=gen, dtype=p.dtype) * 0.5)
    return module


def tokens(*shape: int, seed: int) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) * 0.7


# ----- plain references (spec 1.1), layout (B', C, N, 1) for the convolutions ------------------------------------

def ref_conv(x: torch.Tensor, lin: GroupedLinear) -> torch.Tensor:
    """Grouped 1x1 conv on (B', N, C) tokens, via the authors' layout and a Conv2d weight (C_out, C_in/G, 1, 1)."""
    g, cin, cout = lin.weight.shape
    weight = lin.weight.permute(0, 2, 1).reshape(g * cout, cin)[:, :, None, None]
    y = F.conv2d(x.transpose(1, 2).unsqueeze(-1), weight, groups=g)  # (B', C_out, N, 1)
    return y.squeeze(-1).transpose(1, 2)


def ref_bn_train(x: torch.Tensor, bn: torch.nn.Module) -> torch.Tensor:
    """BatchNorm2d in training mode on (B', C, N, 1): statistics over (B', N), biased variance."""
    bn = bn.bn
    mean = x.mean(dim=(0, 1))
    var = x.var(dim=(0, 1), unbiased=False)
    return (x - mean) / torch.sqrt(var + bn.eps) * bn.weight + bn.bias


def ref_ln(x: torch.Tensor, ln: torch.nn.Module) -> torch.Tensor:
    mean = x.mean(-1, keepdim=True)
    var = x.var(-1, unbiased=False, keepdim=True)
    return (x - mean) / torch.sqrt(var + ln.eps) * ln.weight + ln.bias


def ref_attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """softmax(q k^T) v, no 1/sqrt(d)."""
    return torch.einsum("bqk,bkc->bqc", torch.softmax(torch.einsum("bqc,bkc->bqk", q, k), dim=-1), v)


def ref_bottleneck(x: torch.Tensor, bott: Bottleneck, use_bn: bool, order: str) -> torch.Tensor:
    if order == "ave":
        x = ref_ln(x, bott.ln_before)
    z = ref_conv(x, bott.down)
    if use_bn:
        z = ref_bn_train(z, bott.bn1)
    out = ref_conv(torch.relu(z), bott.up)
    if use_bn:
        out = ref_bn_train(out, bott.bn2)
    g = bott.gate.gate
    return g * ref_ln(out, bott.ln_post) if order == "ave" else ref_ln(g * out, bott.ln_post)


def ref_lavish(x: torch.Tensor, other: torch.Tensor, fusion: LatentFusion) -> torch.Tensor:
    """S = L + softmax(L O^T) O;  X' = X + g_av softmax(X S^T) S."""
    latents = fusion.latents.expand(x.shape[0], -1, -1)
    s = latents + ref_attend(latents, other, other)
    return x + fusion.gate_av.gate * ref_attend(x, s, s)


# ----- tests -----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("use_bn", [True, False])
@pytest.mark.parametrize("order", ["ave", "avs"])
def test_lavish_adapter_matches_spec_formulas(use_bn: bool, order: str) -> None:
    bott = Bottleneck(DIM, reduction=2, groups=2, use_bn=use_bn, order=order)
    adapter = randomise(StreamAdapter(LatentFusion(DIM, num_latents=M), bott).train())
    x, other = tokens(B, NX, DIM, seed=1), tokens(B, NO, DIM, seed=2)

    out = adapter(x, other)
    ref = ref_bottleneck(ref_lavish(x, other, adapter.fusion), bott, use_bn, order)

    assert out.shape == (B, NX, DIM)
    assert ref.abs().max() > 0.1
    torch.testing.assert_close(out, ref, rtol=1e-10, atol=1e-10)


def test_bn_in_eval_mode_uses_running_statistics() -> None:
    bott = randomise(Bottleneck(DIM, reduction=2, groups=4, use_bn=True))
    for bn in (bott.bn1.bn, bott.bn2.bn):
        bn.running_mean.normal_()
        bn.running_var.uniform_(0.5, 2.0)
    bott.eval()
    x = tokens(B, NX, DIM, seed=3)

    def bn_eval(z, bn):
        bn = bn.bn
        return (z - bn.running_mean) / torch.sqrt(bn.running_var + bn.eps) * bn.weight + bn.bias

    z = torch.relu(bn_eval(ref_conv(ref_ln(x, bott.ln_before), bott.down), bott.bn1))
    ref = bott.gate.gate * ref_ln(bn_eval(ref_conv(z, bott.up), bott.bn2), bott.ln_post)
    torch.testing.assert_close(bott(x), ref, rtol=1e-10, atol=1e-10)


def test_grouped_linear_is_a_block_diagonal_map_with_conv_parameter_count() -> None:
    lin = GroupedLinear(12, 6, groups=3).double()
    assert lin.weight.numel() == 12 * 6 // 3  # == Conv2d(12, 6, 1, groups=3, bias=False)
    x = tokens(2, 5, 12, seed=4)
    y = lin(x)
    x_changed = x.clone()
    x_changed[..., :4] += 1.0  # group 0 inputs only
    y_changed = lin(x_changed)
    assert not torch.equal(y_changed[..., :2], y[..., :2])
    torch.testing.assert_close(y_changed[..., 2:], y[..., 2:], rtol=0, atol=1e-12)
    torch.testing.assert_close(y, ref_conv(x, lin), rtol=1e-12, atol=1e-12)


def test_adapter_is_exactly_zero_at_init() -> None:
    adapter = StreamAdapter(LatentFusion(DIM, num_latents=M), Bottleneck(DIM, reduction=2, groups=2))
    out = adapter(torch.randn(B, NX, DIM), torch.randn(B, NO, DIM))
    assert torch.count_nonzero(out) == 0


def test_avish_direct_fusion_matches_formula() -> None:
    fusion = randomise(DirectFusion(DIM))
    x, other = tokens(B, NX, DIM, seed=5), tokens(B, NO, DIM, seed=6)
    ref = x + fusion.gate_av.gate * ref_attend(x, other, other)
    torch.testing.assert_close(fusion(x, other), ref, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("receive", [(True, True), (True, False), (False, True)])
def test_paper_formulation_matches_eqs_6_to_8(receive: tuple[bool, bool]) -> None:
    """S_x = L_x + g softmax(L_x X^T) X (own tokens); X' = X + g_av softmax(X S_o^T) S_x; out = post + bottleneck."""
    recv_a, recv_v = receive
    slot = PaperPairSlot(
        DIM, Bottleneck(DIM, reduction=2, groups=2), Bottleneck(DIM, reduction=2, groups=2),
        num_latents=M, latent_init="uniform", receive_audio=recv_a, receive_visual=recv_v,
    )
    slot = randomise(slot.train())
    pre = Streams(tokens(B, NX, DIM, seed=7), tokens(B, NO, DIM, seed=8))
    post = Streams(tokens(B, NX, DIM, seed=9), tokens(B, NO, DIM, seed=10))

    def summary(x, mod):
        latents = mod.latents.expand(x.shape[0], -1, -1)
        return latents + mod.gate.gate * ref_attend(latents, x, x)

    s_a, s_v = summary(pre.audio, slot.summary_audio), summary(pre.visual, slot.summary_visual)
    x_a = pre.audio + slot.readout_audio.gate_av.gate * ref_attend(pre.audio, s_v, s_a) if recv_a else pre.audio
    x_v = pre.visual + slot.readout_visual.gate_av.gate * ref_attend(pre.visual, s_a, s_v) if recv_v else pre.visual
    ref_a = post.audio + ref_bottleneck(x_a, slot.audio, True, "ave")
    ref_v = post.visual + ref_bottleneck(x_v, slot.visual, True, "ave")

    out = slot(pre, post)
    torch.testing.assert_close(out.audio, ref_a, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(out.visual, ref_v, rtol=1e-10, atol=1e-10)


def test_lavish_fusion_reads_the_other_modality_only() -> None:
    """Changing the other stream changes the adapter output; the summary does not depend on the own stream."""
    fusion = randomise(LatentFusion(DIM, num_latents=M))
    other = tokens(B, NO, DIM, seed=11)
    latents = fusion.latents.expand(B, -1, -1)
    torch.testing.assert_close(fusion.summaries(other), latents + ref_attend(latents, other, other))
    x = tokens(B, NX, DIM, seed=12)
    assert not torch.allclose(fusion(x, other), fusion(x, other * 2))


# ----- config validation ------------------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("kind", "overrides", "bad"),
    [
        ("lavishh", {}, "lavishh"),
        ("lavish", {"fusion": "sideways"}, "sideways"),
        ("avish", {"fusion": "up"}, "up"),
        ("lavish", {"num_latents": -3}, "-3"),
        ("lavish", {"num_latents": 0}, "num_latents=0"),
        ("lavish", {"reduction": 0}, "reduction=0"),
        ("lavish", {"order": "avq"}, "avq"),
        ("lavish", {"latent_init": "normal"}, "normal"),
        ("lavish", {"formulation": "blog"}, "blog"),
        ("avish", {"num_latents": 2}, "num_latents=2"),
        ("lora_attn", {"rank": -1}, "rank=-1"),
        ("lora_attn", {"dropout": 1.5}, "1.5"),
        ("lora", {"reduction": 0}, "reduction=0"),
        ("lora", {"rank": 8}, "rank"),  # the Table 6 LoRA's rank is C / reduction
        ("compacter", {"phm_dim": 0}, "phm_dim=0"),
        ("compacter", {"factorised": "down"}, "down"),
        ("adapter", {"num_latents": 2}, "num_latents"),
        ("adapter", {"cma": "sideways"}, "sideways"),
        ("compacter", {"cma_latents": 4}, "cma_latents=4"),
        ("lora", {"cma": "direct", "cma_latents": 2}, "cma_latents=2"),
        ("lora", {"cma": "latent", "cma_latents": 0}, "cma_latents=0"),
        ("lavish", {"cma": "direct"}, "cma"),
    ],
)
def test_bad_adapter_settings_are_refused_naming_the_value(kind: str, overrides: dict, bad: str) -> None:
    with pytest.raises(ConfigError, match=None) as info:
        adapter_config(kind, **overrides)
    message = str(info.value)
    assert bad in message
    assert "\n" not in message


def test_channels_not_divisible_by_groups_are_refused() -> None:
    with pytest.raises(ConfigError, match="groups=3"):
        adapter_config("lavish", groups=3).build_slots(32, "av")


@pytest.mark.parametrize("kind", ["adapter", "compacter", "lora"])
def test_cross_modal_attention_without_the_other_stream_is_refused(kind: str) -> None:
    adapter_config(kind).build_slots(32, "v")  # plain: fine on one stream
    with pytest.raises(ConfigError, match="cma='direct'.*modalities 'av', not 'v'"):
        adapter_config(kind, cma="direct").build_slots(32, "v")


# ----- Table 6 baselines ------------------------------------------------------------------------------------------

def ref_phm(x: torch.Tensor, phm: torch.nn.Module) -> torch.Tensor:
    """PHM layer from its definition: H = sum_i kron(A_i, W_i) (in x out), y = x H + b."""
    blocks = torch.bmm(phm.s, phm.t) if phm.factorised else phm.w
    h = sum(torch.kron(phm.rules[i], blocks[i]) for i in range(phm.n))
    return x @ h + phm.bias


def ref_gelu_tanh(x: torch.Tensor) -> torch.Tensor:
    return 0.5 * x * (1 + torch.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3)))


@pytest.mark.parametrize("factorised", FACTORISED)
def test_compacter_matches_the_phm_definition(factorised: str) -> None:
    bott = randomise(CompacterBottleneck(DIM, reduction=2, phm_dim=4, rank=2, factorised=factorised))
    assert (bott.down.factorised, bott.up.factorised) == {"up": (False, True), "both": (True, True),
                                                          "none": (False, False)}[factorised]
    x = tokens(B, NX, DIM, seed=13)
    ref = bott.gate.gate * ref_phm(ref_gelu_tanh(ref_phm(x, bott.down)), bott.up)
    assert ref.abs().max() > 0.1
    torch.testing.assert_close(bott(x), ref, rtol=1e-10, atol=1e-10)


def test_table_6_lora_is_a_rank_c_over_r_linear_update() -> None:
    """LN_before -> down -> BN -> up -> BN -> LN_post -> gate, no activation, ungrouped (docs/accounting.md)."""
    bott = randomise(LowRankBottleneck(DIM, reduction=4).train())
    x = tokens(B, NX, DIM, seed=14)
    z = ref_bn_train(ref_conv(ref_ln(x, bott.ln_before), bott.down), bott.bn1)
    ref = bott.gate.gate * ref_ln(ref_bn_train(ref_conv(z, bott.up), bott.bn2), bott.ln_post)
    torch.testing.assert_close(bott(x), ref, rtol=1e-10, atol=1e-10)
    assert bott.down.groups == bott.up.groups == 1
    assert torch.linalg.matrix_rank(bott.down.weight[0] @ bott.up.weight[0]) == DIM // 4


@pytest.mark.parametrize("dim", [192, 384, 768, 1536])  # the block widths of Swin-V2-L
def test_table_6_adapters_have_the_authors_parameter_count(dim: int) -> None:
    """One adapter of each kind against the layer shapes of the authors' code (plus our per-adapter gate)."""
    n, h = 4, dim // 8
    authors = {
        # HyperComplexAdapter with compacter.json: down PHM with full blocks, up PHM with rank-1 factors, biases
        "compacter": (n**3 + n * (dim // n) * (h // n) + h) + (n**3 + n * (h // n) + n * (dim // n) + dim),
        # VisualAdapter's plain branch, one group: LN_before, C x C/8 and C/8 x C maps, bn1, bn2, LN_post
        "lora": 2 * dim + dim * h + 2 * h + h * dim + 2 * dim + 2 * dim,
        # the same branch with two groups (the AVE flags)
        "adapter": 2 * dim + dim * h // 2 + 2 * h + h * dim // 2 + 2 * dim + 2 * dim,
    }
    for kind, count in authors.items():
        with torch.device("meta"):
            slot = adapter_config(kind).build_slots(dim, "av").p1.visual
        assert sum(p.numel() for p in slot.parameters()) == count + 1, kind  # + the output gate
        with torch.device("meta"):
            with_cma = adapter_config(kind, cma="direct").build_slots(dim, "av").p1.visual
        assert sum(p.numel() for p in with_cma.parameters()) == count + 2, kind  # + g_av
