"""The maths of the AVQA and AVS heads against float64 references written from the spec (3.2, 3.3) and the authors'
code (LAVISH AVQA/net_grd_avst/net_avst.py, AVSBench avs_scripts/avs_s4/model/{PVT_AVSModel,TPAVI}.py).

The references use plain tensor ops on the modules' weights (einsum, softmax, slices): convolutions are sums of
shifted zero-padded copies, resizes are interpolation matrices, LSTM / multi-head attention / LayerNorm /
BatchNorm are written out; no module's forward is called. Modules run in float64 too, so the tolerance is tight
(rtol 1e-9, atol 1e-10); each test also shows that a plausible mistake (a ``variant`` of the reference: the skip
adding x instead of relu(x), align_corners False, attention without its 1/sqrt(d)...) moves the output by more
than 1e-6, i.e. far beyond that tolerance.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from lavish.tasks.avqa.model import AvqaHead
from lavish.tasks.avs.model import TPAVI, AvsModel, AvsModelConfig, ClassifierModule, FeatureFusionBlock, ResidualConvUnit

F64 = torch.float64
TOL = {"rtol": 1e-9, "atol": 1e-10}
DETECTABLE = 1e-6
"""a wrong variant of a reference must differ from the module by more than this (10^4 x the tolerance)"""
LN_EPS = BN_EPS = 1e-5  # PyTorch's defaults, as the authors use them


def w(module) -> tuple[torch.Tensor, torch.Tensor]:
    return module.weight.detach(), module.bias.detach()


def linear(x, module):
    weight, bias = w(module)
    return torch.einsum("...i,oi->...o", x, weight) + bias


def layer_norm(x, module):
    """Over the last axis, biased variance."""
    weight, bias = w(module)
    mu = x.mean(-1, keepdim=True)
    var = ((x - mu) ** 2).mean(-1, keepdim=True)
    return (x - mu) / torch.sqrt(var + LN_EPS) * weight + bias


def conv(x, module, dilation: int = 1):
    """'Same' 2-D convolution (padding = dilation * (k // 2)) of x (N, C, H, W): a sum over the kernel taps of
    shifted copies of the zero-padded input."""
    weight, bias = w(module)
    k = weight.shape[-1]
    pad = dilation * (k // 2)
    n, c, h, wd = x.shape
    xp = x.new_zeros(n, c, h + 2 * pad, wd + 2 * pad)
    xp[:, :, pad:pad + h, pad:pad + wd] = x
    out = bias[None, :, None, None].expand(n, -1, h, wd)
    for i in range(k):
        for j in range(k):
            tap = xp[:, :, i * dilation:i * dilation + h, j * dilation:j * dilation + wd]
            out = out + torch.einsum("nchw,oc->nohw", tap, weight[:, :, i, j])
    return out


def linear_matrix(n_in: int, n_out: int, align_corners: bool) -> torch.Tensor:
    """(n_out, n_in) 1-D linear interpolation (PyTorch's source-index rules)."""
    m = torch.zeros(n_out, n_in, dtype=F64)
    for i in range(n_out):
        if align_corners:
            src = i * (n_in - 1) / (n_out - 1) if n_out > 1 else 0.0
        else:
            src = max((i + 0.5) * n_in / n_out - 0.5, 0.0)
        i0 = min(int(math.floor(src)), n_in - 1)
        i1 = min(i0 + 1, n_in - 1)
        frac = src - i0
        m[i, i0] += 1 - frac
        m[i, i1] += frac
    return m


def cubic_matrix(n_in: int, n_out: int, a: float = -0.75) -> torch.Tensor:
    """(n_out, n_in) 1-D bicubic interpolation, align_corners False: Keys' kernel with a = -0.75, border taps
    clamped (PyTorch's ``upsample_bicubic2d``, no antialias)."""
    def near(x):  # |x| <= 1
        return ((a + 2) * x - (a + 3)) * x * x + 1

    def far(x):  # 1 < |x| < 2
        return ((a * x - 5 * a) * x + 8 * a) * x - 4 * a

    m = torch.zeros(n_out, n_in, dtype=F64)
    for i in range(n_out):
        src = (i + 0.5) * n_in / n_out - 0.5
        x0 = math.floor(src)
        t = src - x0
        for k, weight in zip(range(-1, 3), (far(t + 1), near(t), near(1 - t), far(2 - t))):
            m[i, min(max(x0 + k, 0), n_in - 1)] += weight
    return m


def resize(x, mh: torch.Tensor, mw: torch.Tensor):
    """Separable resize of x (N, C, H, W) by row / column matrices (H', H) and (W', W)."""
    return torch.einsum("ph,nchw,qw->ncpq", mh, x, mw)


def up2(x, align_corners: bool):
    h, wd = x.shape[-2:]
    return resize(x, linear_matrix(h, 2 * h, align_corners), linear_matrix(wd, 2 * wd, align_corners))


def randomise(module: torch.nn.Module, seed: int) -> None:
    """Weights ~ N(0, 1/fan_in), biases and norm affines away from their init, BN statistics non-trivial, so every
    part of the computation shows in the output."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            if p.dim() > 1:
                p.copy_(torch.randn(p.shape, generator=g, dtype=p.dtype) / math.sqrt(p[0].numel()))
            elif name.endswith("weight"):  # LayerNorm / BatchNorm scales
                p.copy_(1 + 0.3 * torch.randn(p.shape, generator=g, dtype=p.dtype))
            else:
                p.copy_(0.2 * torch.randn(p.shape, generator=g, dtype=p.dtype))
        for name, buf in module.named_buffers():
            if name.endswith("running_mean"):
                buf.copy_(0.3 * torch.randn(buf.shape, generator=g, dtype=buf.dtype))
            elif name.endswith("running_var"):
                buf.copy_(0.5 + torch.rand(buf.shape, generator=g, dtype=buf.dtype))


def assert_detects(module_out, ref_fn, variants):
    for variant in variants:
        diff = (ref_fn(variant) - module_out).abs().max().item()
        assert diff > DETECTABLE, f"variant {variant!r} of the reference is not told apart (max diff {diff:.2e})"


# ================================================================================================ AVS (spec 3.2)
DILATIONS = (3, 6, 12, 18)


def classifier_ref(module: ClassifierModule, x, variant: str = ""):
    """Sum of four 3x3 convs with dilation = padding = 3, 6, 12, 18."""
    dilations = (1, 1, 1, 1) if variant == "dilation 1" else DILATIONS
    convs = list(module.conv2d_list)[:3] if variant == "three convs" else module.conv2d_list
    return sum(conv(x, c, d) for c, d in zip(convs, dilations))


def rcu_ref(module: ResidualConvUnit, x, variant: str = ""):
    """conv2(relu(conv1(relu(x)))) + relu(x): the authors' in-place ReLU turns the skip into relu(x)."""
    r = F.relu(x)
    y = conv(F.relu(conv(r, module.conv1)), module.conv2)
    return y + (x if variant == "skip x" else r)


def ffb_ref(module: FeatureFusionBlock, x, skip=None, variant: str = ""):
    """rcu2(x + rcu1(skip)) upsampled x2, bilinear, align_corners True."""
    if skip is not None and variant != "no rcu1":
        x = x + rcu_ref(module.resConfUnit1, skip, variant)
    x = rcu_ref(module.resConfUnit2, x, variant)
    return up2(x, align_corners=variant != "align_corners False")


def tpavi_ref(module: TPAVI, x, audio, variant: str = ""):
    """Explicit (N x N) form, N = T*h*w: z = LN_C(x + BN(W_z((theta phi^T / N) g))), the audio projected to C and
    broadcast over (h, w). x (B, C, T, h, w), audio (B, T, 128)."""
    b, c, t, h, wd = x.shape
    n = t * h * wd
    xs = x.reshape(b, c, n)  # positions in (t, h, w) order
    a = linear(audio, module.align_channel)  # (B, T, C)
    a = a.permute(0, 2, 1)[..., None, None].expand(b, c, t, h, wd).reshape(b, c, n)

    def conv1x1(m, v):
        weight, bias = w(m)
        return torch.einsum("oc,bcn->bon", weight.flatten(1), v) + bias[:, None]

    theta, phi, g = conv1x1(module.theta, xs), conv1x1(module.phi, a), conv1x1(module.g, xs)
    f = torch.einsum("bcn,bcm->bnm", theta, phi)  # (B, N, N)
    f = f.softmax(-1) if variant == "softmax" else f if variant == "no 1/N" else f / n
    y = torch.einsum("bnm,bcm->bcn", f, g)
    conv_z, bn = module.W_z
    wz = conv1x1(conv_z, y)
    weight, bias = w(bn)
    mean, var = bn.running_mean[:, None], bn.running_var[:, None]
    wz = (wz - mean) / torch.sqrt(var + BN_EPS) * weight[:, None] + bias[:, None]
    z = xs + wz
    return layer_norm(z.transpose(1, 2), module.norm_layer).transpose(1, 2).reshape(b, c, t, h, wd)


def avs_ref(model: AvsModel, stages, audio_feature, b: int, t: int, variant: str = ""):
    """Stage maps (B', h, w, C_s) and the pooled audio (B', D) -> mask logits (B, T, H_m, W_m) (spec 3.2)."""
    sizes = model.config.stage_sizes()
    maps = []
    for x, lin, (h, wd) in zip(stages, (model.x1_linear, model.x2_linear, model.x3_linear, model.x4_linear), sizes):
        x = linear(x, lin).permute(0, 3, 1, 2)
        if variant == "bilinear maps":
            maps.append(resize(x, linear_matrix(x.shape[2], h, False), linear_matrix(x.shape[3], wd, False)))
        else:
            maps.append(resize(x, cubic_matrix(x.shape[2], h), cubic_matrix(x.shape[3], wd)))
    a = linear(audio_feature, model.audio_linear).view(b, t, -1)
    feats = [classifier_ref(m, x, variant) for m, x in zip((model.conv1, model.conv2, model.conv3, model.conv4), maps)]
    for s in model.config.tpavi_stages:
        x = feats[s].unflatten(0, (b, t)).transpose(1, 2)
        feats[s] = tpavi_ref(model.tpavi[str(s)], x, a, variant).transpose(1, 2).flatten(0, 1)
    x = ffb_ref(model.path4, feats[3], None, variant)
    x = ffb_ref(model.path3, x, feats[2], variant)
    x = ffb_ref(model.path2, x, feats[1], variant)
    x = ffb_ref(model.path1, x, feats[0], variant)
    oc = model.output_conv
    x = up2(conv(x, oc[0]), align_corners=False)
    x = conv(F.relu(conv(x, oc[2])), oc[4])
    return x.view(b, t, *x.shape[-2:])


def test_classifier_module_is_a_sum_of_four_dilated_convs():
    torch.manual_seed(0)
    module = ClassifierModule(5, 4).double()
    randomise(module, 1)
    x = torch.randn(2, 5, 40, 40, dtype=F64)  # 40 > 2 * 18: every dilation reaches real pixels
    with torch.no_grad():
        got = module(x)
    torch.testing.assert_close(got, classifier_ref(module, x), **TOL)
    assert_detects(got, lambda v: classifier_ref(module, x, v), ["dilation 1", "three convs"])


def test_classifier_module_init_is_normal_0_001():
    weights = torch.cat([c.weight.flatten() for c in ClassifierModule(512, 256).conv2d_list])
    assert weights.numel() == 4 * 256 * 512 * 9
    assert abs(weights.mean().item()) < 1e-4 and weights.std().item() == pytest.approx(0.01, rel=0.01)


def test_residual_conv_unit_adds_relu_x_and_leaves_its_input_alone():
    torch.manual_seed(0)
    module = ResidualConvUnit(6).double()
    randomise(module, 2)
    x = torch.randn(2, 6, 7, 9, dtype=F64)
    before = x.clone()
    with torch.no_grad():
        got = module(x)
    torch.testing.assert_close(got, rcu_ref(module, x), **TOL)
    assert torch.equal(x, before)  # no in-place ReLU on the caller's tensor (the authors' code mutates it)
    assert_detects(got, lambda v: rcu_ref(module, x, v), ["skip x"])


def test_feature_fusion_block():
    torch.manual_seed(0)
    module = FeatureFusionBlock(6).double()
    randomise(module, 3)
    coarse, skip = torch.randn(2, 6, 5, 4, dtype=F64), torch.randn(2, 6, 5, 4, dtype=F64)
    inputs = (coarse.clone(), skip.clone())
    with torch.no_grad():
        fused, single = module(coarse, skip), module(coarse)
    assert fused.shape == (2, 6, 10, 8)
    torch.testing.assert_close(fused, ffb_ref(module, coarse, skip), **TOL)
    torch.testing.assert_close(single, ffb_ref(module, coarse), **TOL)  # path4: one input, rcu1 unused
    assert torch.equal(coarse, inputs[0]) and torch.equal(skip, inputs[1])
    assert_detects(fused, lambda v: ffb_ref(module, coarse, skip, v), ["align_corners False", "no rcu1", "skip x"])


def test_tpavi_reassociated_product_equals_the_explicit_n_by_n_form():
    torch.manual_seed(0)
    module = TPAVI(16).double().eval()
    randomise(module, 4)
    x, audio = torch.randn(2, 16, 5, 3, 4, dtype=F64), torch.randn(2, 5, 128, dtype=F64)
    with torch.no_grad():
        got = module(x, audio)
    torch.testing.assert_close(got, tpavi_ref(module, x, audio), **TOL)
    assert_detects(got, lambda v: tpavi_ref(module, x, audio, v), ["softmax", "no 1/N"])
    # at init (BN weight and bias 0) TPAVI is LayerNorm_C(x)
    fresh = TPAVI(16).double().eval()
    with torch.no_grad():
        torch.testing.assert_close(fresh(x, audio), layer_norm(x.movedim(1, -1), fresh.norm_layer).movedim(-1, 1),
                                   **TOL)


def test_bicubic_and_bilinear_matrices_match_torch():
    """The interpolation matrices of the references, checked once against torch's resize (float64)."""
    x = torch.randn(1, 2, 8, 8, dtype=F64)
    for size in (16, 8, 4, 2):
        torch.testing.assert_close(resize(x, cubic_matrix(8, size), cubic_matrix(8, size)),
                                   F.interpolate(x, size=(size, size), mode="bicubic", align_corners=False), **TOL)
    for align in (True, False):
        torch.testing.assert_close(up2(x, align), F.interpolate(x, scale_factor=2, mode="bilinear",
                                                                align_corners=align), **TOL)


def test_avs_decoder_from_stage_maps_to_logits():
    """Projection + bicubic resize (ViT micro: 8x8 stage maps to 8, 4, 2, 1), atrous modules, TPAVI on every
    stage, the four fusion blocks and output_conv, against the reference (the stage modules' own mistakes are
    shown detectable in the tests above; here the resize and TPAVI's scale, once more in the whole path)."""
    torch.manual_seed(0)
    config = AvsModelConfig(backbone="lavish_vit_micro_patch8_64", mask_size=(32, 32), decoder_channels=8,
                            tpavi_stages=(0, 1, 2, 3))
    model = AvsModel(config).double().eval()
    for name, child in model.named_children():
        if name != "backbone":
            randomise(child, 5)
    b, t = 1, 2
    audio, frames = torch.randn(b, t, 96, 64, dtype=F64), torch.randn(b, t, 3, 64, 64, dtype=F64)
    with torch.no_grad():
        got = model(audio, frames)
        out = model.backbone(audio.flatten(0, 1), frames.flatten(0, 1), return_stages=True)
    # the reference starts from what the backbone hands over: its stage maps and its pooled audio feature
    stages, pooled = out.visual_stages, model.backbone.pool(out.audio)
    assert got.shape == (b, t, 32, 32)
    torch.testing.assert_close(got, avs_ref(model, stages, pooled, b, t), **TOL)
    assert_detects(got, lambda v: avs_ref(model, stages, pooled, b, t, v), ["bilinear maps", "no 1/N"])


# ============================================================================================== AVQA (spec 3.3)
def question_ref(head: AvqaHead, ids):
    """Embedding -> tanh -> one-layer LSTM (gates i, f, g, o) -> tanh(cat(h_n, c_n)) -> Linear."""
    enc = head.question_encoder
    x = torch.tanh(enc.word2vec.weight.detach()[ids])  # (B, L, E)
    lstm = enc.lstm
    w_ih, w_hh = lstm.weight_ih_l0.detach(), lstm.weight_hh_l0.detach()
    b_ih, b_hh = lstm.bias_ih_l0.detach(), lstm.bias_hh_l0.detach()
    h = c = x.new_zeros(ids.shape[0], lstm.hidden_size)
    for step in range(ids.shape[1]):
        i, f, g, o = (x[:, step] @ w_ih.T + b_ih + h @ w_hh.T + b_hh).chunk(4, dim=-1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(c)
    return linear(torch.tanh(torch.cat([h, c], -1)), enc.fc)


def ground_ref(head: AvqaHead, audio, visual, variant: str = ""):
    """audio (B', C), visual (B', N, C) -> v_grd (B', C), match logits (B', 2), attention (B', N)."""
    v_pool = visual.mean(1)
    v_tok = visual / visual.norm(dim=-1, keepdim=True)
    a_n = audio if variant == "raw audio" else audio / audio.norm(dim=-1, keepdim=True)
    att = torch.einsum("bnc,bc->bn", v_tok, a_n).softmax(-1)
    v_att = torch.einsum("bn,bnc->bc", att, visual if variant == "raw tokens" else v_tok)
    v_grd = linear(torch.tanh(torch.cat([v_pool, v_att], -1)), head.fc_gl)
    x = torch.cat([audio, v_grd], -1)
    for fc in (head.fc1, head.fc2, head.fc3):
        x = F.relu(linear(x, fc))
    return v_grd, linear(x, head.fc4), att


def mha_ref(attn: torch.nn.MultiheadAttention, q, seq, variant: str = ""):
    """One query q (B, E) over seq (B, T, E), 4 heads: (out (B, E), weights averaged over heads (B, T))."""
    e, heads = q.shape[-1], attn.num_heads
    d = e // heads
    wq, wk, wv = attn.in_proj_weight.detach().chunk(3)
    bq, bk, bv = attn.in_proj_bias.detach().chunk(3)
    qh = (q @ wq.T + bq).view(-1, heads, d)
    kh = (seq @ wk.T + bk).view(*seq.shape[:2], heads, d)
    vh = (seq @ wv.T + bv).view(*seq.shape[:2], heads, d)
    scale = 1.0 if variant == "unscaled" else 1 / math.sqrt(d)
    p = (torch.einsum("bhd,bthd->bht", qh, kh) * scale).softmax(-1)
    out = torch.einsum("bht,bthd->bhd", p, vh).reshape(-1, e)
    return linear(out, attn.out_proj), p.mean(1)


def temporal_ref(attn, lin1, lin2, norm, q, seq, variant: str = ""):
    """norm(att + lin2(relu(lin1(att)))), att = attention of q over the T segments."""
    att, weights = mha_ref(attn, q, seq, variant)
    ffn = 0 if variant == "no ffn" else linear(F.relu(linear(att, lin1)), lin2)
    return layer_norm(att + ffn, norm), weights


def avqa_ref(head: AvqaHead, audio_tokens, visual_tokens, q, b, t, negative_tokens, variant: str = ""):
    """q: :func:`question_ref` -> (logits, match_posi, match_nega, spatial (B, T, N), temporal_visual (B, T),
    temporal_audio (B, T))."""
    audio = linear(audio_tokens, head.yb_fc_a).mean(1)
    audio_feat = linear(F.relu(audio), head.fc_a2)
    v_grd, match_posi, spatial = ground_ref(head, audio_feat, linear(visual_tokens, head.yb_fc_v), variant)
    match_nega = ground_ref(head, audio_feat, linear(negative_tokens, head.yb_fc_v), variant)[1]
    a_seq, v_seq = audio_feat.view(b, t, -1), v_grd.view(b, t, -1)  # rows are (b, t), b outer
    v_att, w_v = temporal_ref(head.attn_v, head.linear11, head.linear12, head.norm1, q, v_seq, variant)
    a_att, w_a = temporal_ref(head.attn_a, head.linear21, head.linear22, head.norm2, q, a_seq, variant)
    a_part = a_att if variant == "no mean" else a_att + a_seq.mean(1)
    v_part = v_att if variant == "no mean" else v_att + v_seq.mean(1)
    parts = [v_part, a_part] if variant == "visual first" else [a_part, v_part]
    feat = linear(torch.tanh(torch.cat(parts, -1)), head.fc_fusion)
    logits = linear(torch.tanh(feat * q), head.fc_ans)
    return logits, match_posi, match_nega, spatial.view(b, t, -1), w_v, w_a


def test_avqa_head_matches_float64_reference():
    torch.manual_seed(0)
    b, t, dim, na, nv = 2, 3, 48, 5, 9
    head = AvqaHead(dim, question_vocab=20, num_answers=7).double().eval()  # eval: dropout off
    for norm in (head.norm1, head.norm2):
        randomise(norm, 6)
    audio_tokens = torch.randn(b * t, na, dim, dtype=F64)
    # tokens of different lengths, so that normalising them matters
    visual_tokens = torch.randn(b * t, nv, dim, dtype=F64) * (0.2 + 3 * torch.rand(b * t, nv, 1, dtype=F64))
    negative_tokens = torch.randn(b * t, nv, dim, dtype=F64)
    question = torch.randint(1, 20, (b, 14))
    with torch.no_grad():
        out = head(audio_tokens, visual_tokens, question, b, t, negative_tokens)
        q = question_ref(head, question)
        torch.testing.assert_close(head.question_encoder(question), q, **TOL)
    got = (out.logits, out.match_posi, out.match_nega, out.spatial, out.temporal_visual, out.temporal_audio)
    ref = avqa_ref(head, audio_tokens, visual_tokens, q, b, t, negative_tokens)
    for name, g, r in zip(("logits", "match_posi", "match_nega", "spatial", "temporal_visual", "temporal_audio"),
                          got, ref):
        assert g.dtype == F64 and g.shape == r.shape, name
        torch.testing.assert_close(g, r, **TOL, msg=lambda m, name=name: f"{name}: {m}")
    torch.testing.assert_close(out.spatial.sum(-1), torch.ones(b, t, dtype=F64), **TOL)

    def flat(v):  # every output of a variant, side by side
        return torch.cat([x.flatten() for x in avqa_ref(head, audio_tokens, visual_tokens, q, b, t, negative_tokens,
                                                           v)])

    assert_detects(torch.cat([x.flatten() for x in got]), flat,
                   ["raw tokens", "raw audio", "unscaled", "no ffn", "no mean", "visual first"])
