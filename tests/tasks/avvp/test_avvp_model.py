"""The AVVP model (lavish.tasks.avvp.model): the HAN head against a float64 reference written with plain tensor ops from
the benchmark's definitions (AVVP-ECCV20 nets/net_audiovisual.py HANLayer / MMIL_Net), the attentive MMIL pooling
and the loss (main_avvp.py) on numbers worked by hand, and the whole model on a micro backbone.

The reference never calls a module's forward: linear layers, multi-head attention, LayerNorm are written out on the
modules' weights. Each reference test also shows that a plausible mistake (a ``variant``) moves the output by more
than 1e-6, far beyond the tolerance.
"""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from backbone_helpers import open_gates
from lavish.errors import ConfigError
from lavish.models.accounting import account
from lavish.models.adapters import PRESETS
from lavish.tasks.ave.model import AveModel, AveModelConfig
from lavish.tasks.avvp.model import AvvpModel, AvvpModelConfig, AvvpOutput, HanHead, avvp_loss

F64 = torch.float64
TOL = {"rtol": 1e-9, "atol": 1e-10}
DETECTABLE = 1e-6
LN_EPS = 1e-5
MICRO = "lavish_vit_micro_patch8_64"


def linear(x, module):
    return torch.einsum("...i,oi->...o", x, module.weight.detach()) + module.bias.detach()


def layer_norm(x, module):
    mu = x.mean(-1, keepdim=True)
    var = ((x - mu) ** 2).mean(-1, keepdim=True)
    return (x - mu) / torch.sqrt(var + LN_EPS) * module.weight.detach() + module.bias.detach()


def attention(query, key, mha, *, scale: bool = True):
    """nn.MultiheadAttention(query, key, key) written out: (B, T, D) -> (B, T, D)."""
    d, h = mha.embed_dim, mha.num_heads
    wq, wk, wv = mha.in_proj_weight.detach().split(d)
    bq, bk, bv = mha.in_proj_bias.detach().split(d)
    q = (query @ wq.T + bq).unflatten(-1, (h, d // h))  # (B, T, H, dh)
    k = (key @ wk.T + bk).unflatten(-1, (h, d // h))
    v = (key @ wv.T + bv).unflatten(-1, (h, d // h))
    scores = torch.einsum("bthd,bshd->bhts", q, k) / (math.sqrt(d // h) if scale else 1.0)
    out = torch.einsum("bhts,bshd->bthd", torch.softmax(scores, dim=-1), v).flatten(-2)
    return linear(out, mha.out_proj)


def han_layer(x, other, layer, variant: str = ""):
    """The benchmark's HANLayer (eval, no dropout): x = LN1(x + CM(x, other) + SA(x)); x = LN2(x + FFN(x))."""
    cross = attention(x, x if variant == "no_cross" else other, layer.cm_attn, scale=variant != "no_scale")
    own = attention(x, x, layer.self_attn)
    x = layer_norm(x + cross + own, layer.norm1)
    ffn = linear(torch.relu(linear(x, layer.linear1)), layer.linear2)
    return layer_norm(x + ffn, layer.norm2)


def han_reference(head: HanHead, audio, visual, variant: str = "") -> dict[str, torch.Tensor]:
    a, v = linear(audio, head.fc_a), linear(visual, head.fc_v)
    for layer in head.han:
        a, v = han_layer(a, v, layer, variant), han_layer(v, a if variant != "updated_audio" else
                                                            han_layer(a, v, layer), layer, variant)
    probs, att_t, att_m = {}, {}, {}
    for name, x in (("audio", a), ("visual", v)):
        probs[name] = torch.sigmoid(linear(x, head.fc_prob))  # (B, T, C)
        att_t[name] = torch.softmax(linear(x, head.fc_frame_att), dim=1 if variant != "att_over_classes" else -1)
    # softmax over the two modalities, per segment and class, written as e^a / (e^a + e^v)
    la, lv = linear(a, head.fc_av_att), linear(v, head.fc_av_att)
    att_m["audio"] = torch.exp(la) / (torch.exp(la) + torch.exp(lv))
    att_m["visual"] = torch.exp(lv) / (torch.exp(la) + torch.exp(lv))
    pooled = {m: (att_t[m] * probs[m]).sum(1) for m in probs}
    global_prob = sum((att_t[m] * probs[m] * att_m[m]).sum(1) for m in probs)
    return {"global_prob": global_prob, "a_prob": pooled["audio"], "v_prob": pooled["visual"],
            "audio_prob": probs["audio"], "visual_prob": probs["visual"]}


def _head(layers: int = 1, heads: int = 2) -> HanHead:
    torch.manual_seed(0)
    head = HanHead(6, 5, 4, dim=8, heads=heads, ff_dim=6, dropout=0.1, layers=layers).to(F64).eval()
    with torch.no_grad():  # LayerNorm weights away from their 1 / 0 init so that a wrong norm shows
        for module in head.modules():
            if isinstance(module, torch.nn.LayerNorm):
                module.weight.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.5, 0.5)
    return head


@pytest.mark.parametrize("layers,heads", [(1, 2), (1, 1), (2, 2)])
def test_han_head_matches_the_reference(layers, heads):
    head = _head(layers, heads)
    gen = torch.Generator().manual_seed(1)
    audio, visual = torch.randn(2, 5, 6, generator=gen, dtype=F64), torch.randn(2, 5, 5, generator=gen, dtype=F64)
    out = head(audio, visual)
    ref = han_reference(head, audio, visual)
    for key, value in ref.items():
        torch.testing.assert_close(getattr(out, key), value, **TOL)
    variants = ["no_cross", "no_scale", "att_over_classes"] + (["updated_audio"] if layers == 1 else [])
    for variant in variants:
        wrong = han_reference(head, audio, visual, variant)
        assert (wrong["global_prob"] - out.global_prob).abs().max() > DETECTABLE, variant


def test_attentive_mmil_pooling_by_hand():
    # no HAN, width 1, one class, every weight 1 and bias 0: each score is the projected feature itself.
    head = HanHead(1, 1, 1, dim=1, heads=1, ff_dim=1, layers=0).to(F64)
    with torch.no_grad():
        for p in head.parameters():
            p.copy_(torch.ones_like(p) if p.dim() == 2 else torch.zeros_like(p))
    ln3 = math.log(3.0)
    out = head(torch.tensor([[[0.0], [ln3]]], dtype=F64), torch.tensor([[[ln3], [0.0]]], dtype=F64))
    # audio x = (0, ln 3): probabilities sigmoid = (1/2, 3/4), temporal attention softmax = (1/4, 3/4)
    # visual x = (ln 3, 0): probabilities (3/4, 1/2), temporal attention (3/4, 1/4)
    # a_prob = 1/4 * 1/2 + 3/4 * 3/4 = 11/16, v_prob the same
    # modality attention: second 0 softmax(0, ln 3) = (1/4, 3/4), second 1 (3/4, 1/4)
    # global = 1/4*1/2*1/4 + 3/4*3/4*3/4 (second 0, audio / visual) + 3/4*3/4*3/4 + 1/4*1/2*1/4 = 29/32
    expect = {"audio_prob": [[[0.5], [0.75]]], "visual_prob": [[[0.75], [0.5]]], "a_prob": [[11 / 16]],
              "v_prob": [[11 / 16]], "global_prob": [[29 / 32]]}
    for key, value in expect.items():
        torch.testing.assert_close(getattr(out, key), torch.tensor(value, dtype=F64), **TOL)
    torch.testing.assert_close(out.frame_att[0, :, :, 0], torch.tensor([[0.25, 0.75], [0.75, 0.25]], dtype=F64))
    torch.testing.assert_close(out.av_att[0, :, :, 0], torch.tensor([[0.25, 0.75], [0.75, 0.25]], dtype=F64))


def _output(global_prob, a_prob, v_prob) -> AvvpOutput:
    t = [torch.tensor([x]) for x in (global_prob, a_prob, v_prob)]
    empty = torch.zeros(1, 1, len(global_prob))
    return AvvpOutput(*t, empty, empty, empty, empty)


def test_loss_by_hand_with_and_without_label_smoothing():
    out = _output([0.5, 0.8], [0.25, 0.5], [0.5, 0.9])
    y = torch.tensor([[1.0, 0.0]])
    log = math.log
    g = -(log(0.5) + log(0.2)) / 2  # BCE(global, y), mean over the two classes
    a = -(log(0.25) + log(0.5)) / 2
    v = -(log(0.5) + log(0.1)) / 2
    assert avvp_loss(out, y, guided=False).item() == pytest.approx(g, rel=1e-6)
    assert avvp_loss(out, y).item() == pytest.approx(g + a + v, rel=1e-6)
    # modality-aware smoothing: audio targets stay (1, 0); visual targets 0.9 y + 0.05 = (0.95, 0.05)
    v_smooth = -(0.95 * log(0.5) + 0.05 * log(0.5) + 0.05 * log(0.9) + 0.95 * log(0.1)) / 2
    loss = avvp_loss(out, y, label_smoothing=True)
    assert loss.dtype == torch.float32 and loss.item() == pytest.approx(g + a + v_smooth, rel=1e-6)
    # other smoothing strengths: eps_a = 0.2 -> audio targets (0.9, 0.1)
    a_smooth = -(0.9 * log(0.25) + 0.1 * log(0.75) + 0.1 * log(0.5) + 0.9 * log(0.5)) / 2
    assert avvp_loss(out, y, label_smoothing=True, audio_eps=0.2).item() == pytest.approx(g + a_smooth + v_smooth,
                                                                                        rel=1e-6)
    with pytest.raises(ConfigError, match="guided"):
        avvp_loss(out, y, label_smoothing=True, guided=False)


def test_loss_clamps_certain_probabilities_and_propagates_nan():
    # a certain wrong answer costs -log(1e-7) (the benchmark's clamp), not infinity
    loss = avvp_loss(_output([0.0], [0.5], [0.5]), torch.tensor([[1.0]]), guided=False)
    assert loss.item() == pytest.approx(-math.log(1e-7), rel=1e-6)
    # at the other end 1 - 1e-7 is 1 - 2**-23 in float32 (the benchmark clamps float32 too): -log(2**-23)
    loss = avvp_loss(_output([1.0], [0.5], [0.5]), torch.tensor([[0.0]]), guided=False)
    assert loss.item() == pytest.approx(23 * math.log(2), rel=1e-5)
    nan = _output([0.5], [float("nan")], [0.5])
    assert torch.isnan(avvp_loss(nan, torch.tensor([[1.0]])))
    half = _output([0.5], [0.5], [0.5])
    half.global_prob = half.global_prob.to(torch.bfloat16)
    assert avvp_loss(half, torch.tensor([[1]])).dtype == torch.float32


def test_config_defaults_validation_and_round_trip():
    cfg = AvvpModelConfig()
    assert (cfg.num_classes, cfg.han_dim, cfg.han_heads, cfg.han_ff_dim, cfg.han_dropout, cfg.han_layers) == \
        (25, 512, 1, 512, 0.1, 1)
    assert cfg.adapter == PRESETS["ave"] and cfg.adapter is not PRESETS["ave"] and cfg.modalities == "av"
    assert AvvpModelConfig.from_dict(cfg.to_dict()) == cfg
    for bad in (dict(modalities="x"), dict(num_classes=0), dict(han_heads=3), dict(han_dim=0),
                dict(han_dropout=1.0), dict(han_layers=-1), dict(han_ff_dim=True)):
        with pytest.raises(ConfigError):
            AvvpModelConfig(**bad)


def test_paper_backbone_counts():
    with torch.device("meta"):
        model = AvvpModel(AvvpModelConfig())
        ave = AveModel(AveModelConfig())
    count = lambda m, keep: sum(p.numel() for n, p in m.named_parameters() if keep(n, p))  # noqa: E731
    # head by hand: fc_a, fc_v 2 x (1536*512 + 512); one HAN layer: two attentions 2 x (4*512*512 + 4*512),
    # feed-forward 2 x (512*512 + 512), two LayerNorms 4*512; three classifiers 3 x (512*25 + 25)
    head = 2 * (1536 * 512 + 512) + 2 * (4 * 512 * 512 + 4 * 512) + 2 * (512 * 512 + 512) + 4 * 512 \
        + 3 * (512 * 25 + 25)
    assert count(model, lambda n, p: n.startswith("head.")) == head == 4_240_971
    slots = count(model, lambda n, p: ".slots." in n)
    assert slots == count(ave, lambda n, p: ".slots." in n)  # the AVE adapters
    assert count(model, lambda n, p: p.requires_grad) == slots + head


def test_lavish_info_accounting_runs_on_the_meta_device():
    # what `lavish info` does: the model on "meta", one 1-second segment (B = T = 1) through the FLOP counter
    with torch.device("meta"):
        model = AvvpModel(AvvpModelConfig(backbone=MICRO))
    inputs = (torch.zeros(1, 1, 96, 64, device="meta"), torch.zeros(1, 1, 3, 64, 64, device="meta"))
    acc = account(model, MICRO, inputs)
    d = model.backbone.num_features
    head = 2 * (d * 512 + 512) + 2 * (4 * 512 * 512 + 4 * 512) + 2 * (512 * 512 + 512) + 4 * 512 + 3 * (512 * 25 + 25)
    assert acc.head_params == head and acc.trainable_params == acc.adapter_params + head
    assert acc.backbone_gflops > 0 and acc.adapter_gflops > 0


def _model(modalities: str = "av", seed: int = 0) -> AvvpModel:
    torch.manual_seed(seed)
    cfg = AvvpModelConfig(backbone=MICRO, modalities=modalities, num_classes=5, han_dim=16, han_heads=2,
                          han_ff_dim=16, adapter=dataclasses.replace(PRESETS["ave"]))
    model = AvvpModel(cfg)
    open_gates(model)
    return model


def _inputs(b: int = 2, t: int = 3, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(b, t, 96, 64, generator=gen), torch.randn(b, t, 3, 64, 64, generator=gen)


def test_full_model_shapes_probabilities_and_trainable_parameters():
    model = _model()
    audio, frames = _inputs()
    out = model(audio, frames)
    assert out.global_prob.shape == out.a_prob.shape == out.v_prob.shape == (2, 5)
    assert out.audio_prob.shape == out.visual_prob.shape == (2, 3, 5)
    for x in (out.global_prob, out.a_prob, out.v_prob, out.audio_prob, out.visual_prob):
        assert torch.isfinite(x).all() and (x >= 0).all() and (x <= 1).all()
    torch.testing.assert_close(out.frame_att.sum(1), torch.ones(2, 2, 5))
    torch.testing.assert_close(out.av_att.sum(2), torch.ones(2, 3, 5))
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(n.startswith("head.") or ".slots." in n for n in trainable)
    assert any(n.startswith("head.") for n in trainable) and any(".slots." in n for n in trainable)
    avvp_loss(out, torch.ones(2, 5), label_smoothing=True).backward()
    for name, param in model.named_parameters():
        if param.requires_grad:
            assert param.grad is not None, name
        else:
            assert param.grad is None, name


def test_a_few_steps_reduce_the_loss():
    model = _model()
    audio, frames = _inputs()
    y = torch.tensor([[1.0, 0, 0, 1, 0], [0, 1, 0, 0, 0]])
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=3e-3)
    with torch.no_grad():
        before = avvp_loss(model.eval()(audio, frames), y, label_smoothing=True).item()
    model.train()
    for _ in range(4):
        opt.zero_grad()
        avvp_loss(model(audio, frames), y, label_smoothing=True).backward()
        opt.step()
    with torch.no_grad():
        after = avvp_loss(model.eval()(audio, frames), y, label_smoothing=True).item()
    assert after < before - 0.1, (before, after)


@pytest.mark.parametrize("modalities", ["v", "a"])
def test_a_missing_stream_reaches_the_head_as_zeros(modalities):
    model = _model(modalities).eval()
    audio, frames = _inputs()
    feats_audio, feats_visual = model.features(audio if modalities == "a" else None,
                                               frames if modalities == "v" else None)
    missing, present = (feats_audio, feats_visual) if modalities == "v" else (feats_visual, feats_audio)
    assert missing.shape == present.shape == (2, 3, model.backbone.num_features)
    assert not missing.any() and present.abs().sum() > 0
    with torch.no_grad():
        out = model(audio if modalities == "a" else None, frames if modalities == "v" else None)
        both = model(audio, frames)  # the other stream's input is ignored
        direct = model.head(feats_audio, feats_visual)
    torch.testing.assert_close(out.global_prob, direct.global_prob, rtol=0, atol=0)
    torch.testing.assert_close(both.audio_prob, out.audio_prob, rtol=0, atol=0)


def test_a_stream_that_runs_needs_its_input():
    model = _model("av")
    audio, frames = _inputs()
    with pytest.raises(ConfigError, match="needs audio"):
        model(None, frames)
