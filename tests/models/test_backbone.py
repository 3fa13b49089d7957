"""The frozen two-stream backbone (spec 1.3, 2.1, 8.2-8.3) on small real timm models, on the CPU.

* at init (all gates 0) both streams are the plain timm ``forward_features`` and the pooled features timm's
  ``forward_head(pre_logits=True)`` (bit-exact against the same batch layout; within a few fp32 ulp against timm run
  per stream), for every family and variant of backbone_helpers.BACKBONES and every adapter kind;
* adapter placement: p1 reads the pre-attention streams and is added after the attention residual, p2 reads the
  post-attention streams and is added after the MLP residual (checked against a loop over the timm blocks);
* activation checkpointing and un-batched streams change nothing;
* backbone weights from a local file, and the offline error naming both ways out.
"""

from __future__ import annotations

import pytest
import timm
import torch
from safetensors.torch import save_file

from backbone_helpers import BACKBONES, activate_post_norms, open_gates
from lavish.errors import ConfigError
from lavish.models.adapters import adapter_config
from lavish.models.backbone import LavishBackbone, create_backbone

VIT_MICRO = "lavish_vit_micro_patch8_64"
SWIN_MICRO = "lavish_swinv2_micro_window4_64"
MICROS = ("vit_micro", "swinv2_micro", "swin_micro", "eva02_micro")  # one of each family


def inputs(size: int, spec_shape: tuple[int, int], batch: int = 2, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(batch, *spec_shape, generator=gen), torch.randn(batch, 3, size, size, generator=gen)


def flat(x: torch.Tensor) -> torch.Tensor:
    """timm Swin-V2 features (B, H, W, C) -> (B, H*W, C); ViT (B, N, C) unchanged."""
    return x.flatten(1, 2) if x.ndim == 4 else x


@pytest.mark.parametrize(("key", "batch_streams"), [(k, True) for k in BACKBONES] + [(k, False) for k in MICROS])
def test_zero_gates_give_the_plain_backbone_exactly(key: str, batch_streams: bool) -> None:
    """Bit-exact. With ``batch_streams`` the frozen parts run on [audio; visual] as one batch, so the reference is
    timm on that same batch (a matmul over another batch size may round differently in the last bit)."""
    name, overrides, size = BACKBONES[key]
    model = LavishBackbone(activate_post_norms(create_backbone(name, **overrides)), batch_streams=batch_streams)
    model.eval()
    # families that resize the audio image to the frame grid get another size, to exercise the resize
    spec_shape = (size - 8, size) if model.family.resize_audio else (size, size)
    spec, frames = inputs(size, spec_shape, batch=1 if overrides or size > 64 else 2)

    timm_model = model.backbone
    with torch.no_grad():
        out = model(spec, frames)
        images = model.audio_image(spec), frames
        if batch_streams:
            ref_a, ref_v = timm_model.forward_features(torch.cat(images)).split(len(frames))
        else:
            ref_a, ref_v = (timm_model.forward_features(x) for x in images)
        pooled = model.pool(out.audio), model.pool(out.visual)
        ref_pooled = [timm_model.forward_head(x, pre_logits=True) for x in (ref_a, ref_v)]
        ref_a, ref_v = flat(ref_a), flat(ref_v)

    assert out.visual.shape == ref_v.shape and out.audio.shape == ref_a.shape
    assert (out.visual - ref_v).abs().max().item() == 0.0
    assert (out.audio - ref_a).abs().max().item() == 0.0
    for ours, ref in zip(pooled, ref_pooled):
        assert ours.shape == (len(frames), model.num_features)
        assert (ours - ref).abs().max().item() == 0.0
    if batch_streams:  # and the same, to float tolerance, as each stream on its own
        torch.testing.assert_close(out.visual, flat(timm_model.forward_features(frames)), rtol=0, atol=1e-5)


def test_vit_audio_of_another_size_uses_the_resampled_position_embedding() -> None:
    """A (48 x 64) spectrogram on a 64 px ViT equals timm's own dynamic-size path (2-D pos-embed resampling)."""
    model = LavishBackbone(create_backbone(VIT_MICRO)).eval()
    dynamic = timm.create_model(VIT_MICRO, num_classes=0, dynamic_img_size=True).eval()
    dynamic.load_state_dict(model.backbone.state_dict())
    spec, frames = inputs(64, (48, 64))
    with torch.no_grad():
        out = model(spec, frames)
        ref_a = dynamic.forward_features(model.audio_image(spec))
    assert out.audio.shape == (2, 1 + 6 * 8, 96)
    assert (out.audio - ref_a).abs().max().item() == 0.0


@pytest.mark.parametrize("kind", ["lavish", "avish", "adapter", "lora", "compacter", "lora_attn", "bitfit", "norm",
                                  "none"])
def test_every_adapter_kind_starts_as_the_backbone(kind: str) -> None:
    model = LavishBackbone(activate_post_norms(create_backbone(SWIN_MICRO)), adapter_config(kind)).eval()
    plain = activate_post_norms(create_backbone(SWIN_MICRO)).eval()  # same seeded weights, no adapters
    spec, frames = inputs(64, (64, 64))
    with torch.no_grad():
        out = model(spec, frames)
        # both streams run as one batch of 4 rows against timm's 2: the GEMM library may block (and so sum) them in
        # another order, which moves fp32 results by a few ulp (seen at 3.6e-6 on one host, 0 on another)
        torch.testing.assert_close(out.visual, flat(plain.forward_features(frames)), rtol=0, atol=2e-5)
        torch.testing.assert_close(out.audio, flat(plain.forward_features(model.audio_image(spec))), rtol=0, atol=2e-5)


def test_vision_only_runs_no_audio_stream_and_builds_no_audio_adapter() -> None:
    model = LavishBackbone(create_backbone(SWIN_MICRO), modalities="v").eval()
    assert not any(".audio." in n for n, _ in model.named_parameters())
    _, frames = inputs(64, (64, 64))
    with torch.no_grad():
        out = model(None, frames)
    assert out.audio is None
    assert out.visual.shape == (2, 4, 256)


@pytest.mark.parametrize("name", [SWIN_MICRO, "lavish_swin_micro_window4_64"])
def test_swin_stage_maps_are_taken_before_patch_merging(name: str) -> None:
    model = LavishBackbone(create_backbone(name)).eval()
    spec, frames = inputs(64, (64, 64))
    with torch.no_grad():
        out = model(spec, frames, return_stages=True)
        # timm on the same [audio; visual] batch as the joint streams, visual rows: (B, C, h, w) maps
        both = torch.cat([model.audio_image(spec), frames])
        ref = [r[2:] for r in model.backbone.forward_intermediates(both, norm=True, intermediates_only=True)]
    assert [tuple(s.shape) for s in out.visual_stages] == [(2, 16, 16, 32), (2, 8, 8, 64), (2, 4, 4, 128),
                                                          (2, 2, 2, 256)]
    assert model.stage_dims() == [32, 64, 128, 256]
    torch.testing.assert_close(out.visual_stages[-1].flatten(1, 2), out.visual, rtol=0, atol=0)
    # zero gates: the maps are timm's own stage outputs (the last one after the final norm, as timm gives it)
    for ours, theirs in zip(out.visual_stages, ref):
        assert torch.equal(ours, theirs.permute(0, 2, 3, 1))


# ----- placement (spec 1.3) ---------------------------------------------------------------------------------------

def reference_loop(model: LavishBackbone, spec: torch.Tensor, frames: torch.Tensor):
    """The authors' per-block loop written over timm's own sub-modules, using the model's slot modules."""
    timm_model = model.backbone
    is_swin = hasattr(timm_model, "layers")
    img_a = model.audio_image(spec)
    if is_swin:
        a, v = timm_model.patch_embed(img_a), timm_model.patch_embed(frames)  # (B, H, W, C)
        blocks = [(stage.downsample, blk) for stage in timm_model.layers for blk in stage.blocks]
    else:
        embed = lambda x: timm_model.norm_pre(timm_model._pos_embed(timm_model.patch_embed(x)))  # noqa: E731
        a, v = embed(img_a), embed(frames)
        blocks = [(None, blk) for blk in timm_model.blocks]
    seen_downsample = set()
    for i, (down, blk) in enumerate(blocks):
        slot = model.slots[i]
        if is_swin:
            if id(down) not in seen_downsample:
                seen_downsample.add(id(down))
                a, v = down(a), down(v)
            shape = a.shape
            b, c = shape[0], shape[-1]
            pre_a, pre_v = a.reshape(b, -1, c), v.reshape(b, -1, c)
            attn_a = blk.norm1(blk._attn(a)).reshape(b, -1, c)
            attn_v = blk.norm1(blk._attn(v)).reshape(b, -1, c)
        else:
            pre_a, pre_v = a, v
            attn_a, attn_v = blk.ls1(blk.attn(blk.norm1(a))), blk.ls1(blk.attn(blk.norm1(v)))
        # p1: from the PRE-attention streams, added after the attention residual
        mid_a = pre_a + attn_a + slot.p1.audio(pre_a, pre_v)
        mid_v = pre_v + attn_v + slot.p1.visual(pre_v, pre_a)
        if is_swin:
            mlp_a, mlp_v = blk.norm2(blk.mlp(mid_a)), blk.norm2(blk.mlp(mid_v))
        else:
            mlp_a, mlp_v = blk.ls2(blk.mlp(blk.norm2(mid_a))), blk.ls2(blk.mlp(blk.norm2(mid_v)))
        # p2: from the POST-attention streams (both already updated), added after the MLP residual
        out_a = mid_a + mlp_a + slot.p2.audio(mid_a, mid_v)
        out_v = mid_v + mlp_v + slot.p2.visual(mid_v, mid_a)
        a, v = (out_a.reshape(shape), out_v.reshape(shape)) if is_swin else (out_a, out_v)
    return flat(timm_model.norm(a)), flat(timm_model.norm(v))


@pytest.mark.parametrize("name", [VIT_MICRO, SWIN_MICRO])
def test_p1_reads_pre_attention_and_p2_reads_post_attention_streams(name: str) -> None:
    torch.manual_seed(0)
    model = LavishBackbone(activate_post_norms(create_backbone(name)), adapter_config("lavish", use_bn=False)).eval()
    open_gates(model, 0.7)
    spec, frames = inputs(64, (64, 64))
    with torch.no_grad():
        out = model(spec, frames)
        ref_a, ref_v = reference_loop(model, spec, frames)
        plain_v = flat(model.backbone.forward_features(frames))
        # the same loop with the two positions swapped must NOT match: the test can tell placements apart
        for slot in model.slots:
            slot.p1, slot.p2 = slot.p2, slot.p1
        swapped_a, _ = reference_loop(model, spec, frames)
    assert (out.visual - plain_v).abs().max() > 1e-2  # the adapters act
    torch.testing.assert_close(out.audio, ref_a, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(out.visual, ref_v, rtol=1e-5, atol=1e-5)
    assert (swapped_a - ref_a).abs().max() > 1e-3


# ----- checkpointing and stream batching change nothing ----------------------------------------------------------

@pytest.mark.parametrize("name", [VIT_MICRO, SWIN_MICRO])
def test_checkpointing_and_unbatched_streams_give_the_same_outputs_and_gradients(name: str) -> None:
    spec, frames = inputs(64, (64, 64))
    results = []
    for options in ({}, {"checkpointing": True}, {"batch_streams": False}):
        torch.manual_seed(1)
        model = LavishBackbone(activate_post_norms(create_backbone(name)), **options).eval()
        open_gates(model, 0.5)
        out = model(spec, frames)
        (out.audio.square().mean() + out.visual.square().mean()).backward()
        grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}
        results.append((out.audio.detach(), out.visual.detach(), grads))
    base_a, base_v, base_g = results[0]
    assert all(g.abs().sum() > 0 for g in base_g.values())
    for audio, visual, grads in results[1:]:
        torch.testing.assert_close(audio, base_a, rtol=1e-5, atol=2e-5)  # batch-shape dependent GEMM order
        torch.testing.assert_close(visual, base_v, rtol=1e-5, atol=2e-5)
        assert grads.keys() == base_g.keys()
        for key in grads:
            torch.testing.assert_close(grads[key], base_g[key], rtol=1e-4, atol=1e-6)


# ----- backbone weights -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
def test_backbone_weights_from_a_local_file(tmp_path, suffix: str) -> None:
    torch.manual_seed(5)
    source = timm.create_model(VIT_MICRO)  # with its 1000-class head, like a real checkpoint
    path = tmp_path / f"micro{suffix}"
    if suffix == ".safetensors":
        save_file({k: v.contiguous() for k, v in source.state_dict().items()}, str(path))
    else:
        torch.save(source.state_dict(), path)

    loaded = create_backbone(VIT_MICRO, weights=path)
    random_init = create_backbone(VIT_MICRO)
    state = loaded.state_dict()
    assert "head.weight" not in state
    for key, value in state.items():
        assert torch.equal(value, source.state_dict()[key]), key
    assert not torch.equal(random_init.blocks[0].attn.qkv.weight, loaded.blocks[0].attn.qkv.weight)


def test_missing_weights_file_is_a_config_error(tmp_path) -> None:
    path = tmp_path / "nope.safetensors"
    with pytest.raises(ConfigError, match=str(path)):
        create_backbone(VIT_MICRO, weights=path)


def test_unreadable_weights_file_is_a_config_error_naming_it(tmp_path) -> None:
    path = tmp_path / "junk.safetensors"
    path.write_bytes(b"\x00not a checkpoint" * 10)
    with pytest.raises(ConfigError, match="junk.safetensors"):
        create_backbone(VIT_MICRO, weights=path)


def test_pretrained_without_network_names_both_ways_out(monkeypatch) -> None:
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(ConfigError) as info:
        create_backbone("vit_tiny_patch16_224", pretrained=True)
    message = str(info.value)
    assert "--backbone-weights" in message and "--no-pretrained" in message
    assert "\n" not in message


def test_unknown_or_unsupported_backbones_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="vit_nonexistent_patch3"):
        create_backbone("vit_nonexistent_patch3")
    with pytest.raises(ConfigError, match="resnet50"):
        create_backbone("resnet50")
