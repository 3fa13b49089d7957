"""Backbone families (lavish.models.families, docs/backbones.md): chosen by the model's class, not its name.

* a timm name resolves (on the meta device) to its class and family, whatever it is called; unsupported classes
  and variants are refused in one line naming the class (and the supported families);
* each family's two residual halves are timm's own block with the other branch switched off, block by block
  (so adapters land after the attention and after the MLP, not somewhere that only adds up to the block);
* a training step moves only adapter parameters (LAVISH and LoRA) and leaves every frozen tensor bit-identical;
  LoRA's default targets are exactly the attention projections of every family;
* Swin (V1) and EVA give the AVS decoder its four maps.
(That zero gates give timm's own features exactly is tested over the same table in test_backbone.py.)
"""

from __future__ import annotations

import copy

import pytest
import timm
import torch
from torch import nn

from backbone_helpers import BACKBONES, activate_post_norms, open_gates
from lavish.errors import ConfigError
from lavish.models.adapters import adapter_config
from lavish.tasks.avs.model import AvsModel, AvsModelConfig
from lavish.models.backbone import LavishBackbone, create_backbone
from lavish.models.families import SUPPORTED
from lavish.engine.registry import input_spec
from lavish.models.input_spec import backbone_family, describe

#: the table entries that train in a fraction of a second (the others are full-width tiny models)
SMALL_KEYS = [k for k in BACKBONES if k not in ("vit_tiny", "swinv2_tiny_64", "swin_tiny_64", "eva02_tiny")]


def build(key: str, adapter: str = "lavish") -> LavishBackbone:
    name, overrides, _ = BACKBONES[key]
    return LavishBackbone(activate_post_norms(create_backbone(name, **overrides)), adapter_config(adapter))


def frames_of(key: str, batch: int = 2, seed: int = 0) -> torch.Tensor:
    size = BACKBONES[key][2]
    return torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(seed))


# ----- names -> families, by class ---------------------------------------------------------------------------------

@pytest.mark.parametrize(("name", "family", "timm_class"), [
    ("deit3_base_patch16_224", "vit", "VisionTransformer"),
    ("vit_base_patch16_clip_224.openai", "vit", "VisionTransformer"),
    ("vit_small_patch14_reg4_dinov2.lvd142m", "vit", "VisionTransformer"),
    ("deit_base_distilled_patch16_224", "vit", "VisionTransformerDistilled"),
    ("swin_base_patch4_window7_224", "swin", "SwinTransformer"),
    ("swinv2_base_window12_192", "swinv2", "SwinTransformerV2"),
    ("eva02_base_patch14_224.mim_in22k", "eva", "Eva"),
    ("vit_medium_patch16_rope_reg1_gap_256", "eva", "Eva"),  # a 'vit_' name that timm builds as an Eva
])
def test_a_name_resolves_to_its_class_family(name: str, family: str, timm_class: str) -> None:
    info = describe(name)
    assert (info.family, info.timm_class, info.micro) == (family, timm_class, False)
    assert backbone_family(name) == family
    with torch.device("meta"):
        real = timm.create_model(name.split(".")[0], num_classes=0)
    assert info.img_size == tuple(real.patch_embed.img_size)


def test_input_spec_per_family() -> None:
    """ViT keeps the audio image at its size (the authors' ViT AVE front-end); resizing families use the task's."""
    assert input_spec("deit3_base_patch16_224", "ave").audio_frontend == "ave_vit"
    assert input_spec("deit3_base_patch16_224", "avs").audio_frontend == "avs"
    assert input_spec("vit_small_patch14_reg4_dinov2", "ave").frame_size == (518, 518)
    for name in ("swin_base_patch4_window7_224", "eva02_base_patch14_224.mim_in22k", "swinv2_base_window12_192"):
        spec = input_spec(name, "ave")
        assert spec.audio_frontend == "ave" and spec.frame_size == describe(name).img_size
    assert input_spec("swinv2_base_window12_192", "ave").frame_size == (192, 192)
    for name in ("lavish_swin_micro_window4_64", "lavish_eva02_micro_patch8_64"):
        assert input_spec(name, "avqa").audio_frontend == "micro"


def test_a_model_built_for_another_size_takes_frames_of_that_size() -> None:
    """DINOv2 is built for 518 px in timm; in Python another size is one keyword away (docs/backbones.md)."""
    with torch.device("meta"):
        model = LavishBackbone(create_backbone("vit_small_patch14_reg4_dinov2", img_size=224))
    assert model.img_size == (224, 224) and describe("vit_small_patch14_reg4_dinov2").img_size == (518, 518)


def test_an_unsupported_class_is_refused_naming_it_and_the_families() -> None:
    with pytest.raises(ConfigError) as err:
        backbone_family("resnet50")
    assert str(err.value) == (
        "backbone resnet50 is a ResNet, not a supported transformer family: ViT (VisionTransformer, "
        "VisionTransformerDistilled), Swin-V2 (SwinTransformerV2), Swin (SwinTransformer), EVA-02 (Eva)")
    with pytest.raises(ConfigError, match="swinv2_cr_tiny_224 is a SwinTransformerV2Cr, not a supported"):
        create_backbone("swinv2_cr_tiny_224")  # a 'swinv2' name of another class: refused before any weights
    with pytest.raises(ConfigError, match=r"^backbone passed in is a ResNet, not .*EVA-02 \(Eva\)$"):
        LavishBackbone(timm.create_model("resnet18", num_classes=0))
    assert SUPPORTED.count("(") == 4


@pytest.mark.parametrize(("name", "overrides", "why"), [
    ("vit_base_r50_s16_384", {}, "VisionTransformer with a HybridEmbed patch embedding"),
    ("vit_small_patch16_18x2_224", {}, "VisionTransformer with ParallelThingsBlock blocks"),
    ("vit_base_patch16_rpn_224", {}, "VisionTransformer with ResPostBlock blocks"),
    ("vit_base_patch16_xp_224", {}, "VisionTransformer with ParallelScalingBlock blocks"),
    ("beit_base_patch16_224", {}, "a Beit, not a supported transformer family"),
    ("vit_relpos_base_patch16_224", {}, "a VisionTransformerRelPos, not a supported transformer family"),
    ("eva02_enormous_patch14_clip_224", {}, "an Eva with EvaBlockPostNorm blocks"),
    ("lavish_vit_micro_patch8_64", {"patch_drop_rate": 0.5}, "patch dropout"),
    ("lavish_eva02_micro_patch8_64", {"global_pool": ""}, "global_pool=''"),
    ("lavish_eva02_micro_patch8_64", {"rope_shift_coords": 1.0}, "RoPE coordinate augmentation"),
])
def test_unsupported_variants_are_refused_in_one_line(name: str, overrides: dict, why: str) -> None:
    with pytest.raises(ConfigError) as err:
        if overrides:  # a supported name built with an option the family cannot step through
            with torch.device("meta"):
                LavishBackbone(create_backbone(name, **overrides))
        else:
            backbone_family(name)
    assert why in str(err.value) and "\n" not in str(err.value)


# ----- residual halves -------------------------------------------------------------------------------------------

def silence(family: str, blk: nn.Module, branch: str) -> None:
    """Make the ``branch`` ("attn" or "mlp") of ``blk`` add exactly zero: its output layer (post-norm: its norm)."""
    with torch.no_grad():
        if family == "swinv2":  # x + norm(branch(x)): a zero norm
            layer = blk.norm1 if branch == "attn" else blk.norm2
        else:  # x + branch(norm(x)): a zero output projection
            layer = blk.attn.proj if branch == "attn" else blk.mlp.fc2
        layer.weight.zero_()
        layer.bias.zero_()


def activate_layer_scale(model: nn.Module) -> None:
    """Layer-scale factors in [0.5, 1.5) instead of DeiT-III's / DINOv2's 1e-6 / 1e-5, so that both branches act."""
    gen = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith((".gamma", ".gamma_1", ".gamma_2")):
                p.copy_(torch.rand(p.shape, generator=gen) + 0.5)


def timm_block(model: LavishBackbone, i: int, blk: nn.Module, x: torch.Tensor, grid, frames: torch.Tensor):
    """timm's own forward of block ``blk`` (the i-th) on tokens x (B, N, C) of ``frames``."""
    timm_model, family = model.backbone, model.family.name
    if family in ("swin", "swinv2"):
        return blk(x.view(x.shape[0], *grid, x.shape[-1])).flatten(1, 2)
    if family == "eva":
        _, rope = timm_model._pos_embed(timm_model.patch_embed(frames))  # the RoPE timm computes for frames
        return blk(x, rope=rope[i] if timm_model.rope_mixed else rope)
    return blk(x)


@pytest.mark.parametrize("key", ["vit_micro", "deit3", "dinov2_reg", "swinv2_micro", "swin_micro", "eva02_micro",
                                 "dinov3", "rope_mixed", "pe"])
def test_each_residual_half_is_the_timm_block_with_the_other_branch_off(key: str) -> None:
    model = build(key).eval()
    activate_layer_scale(model)
    fam, frames = model.family, frames_of(key)
    with torch.no_grad():
        x, grid = fam.embed(frames)
        for i, unit in enumerate(model.units):
            x, grid = fam.downsample(unit, x, grid)
            after_attn = fam.attn_residual(unit.block, x, grid)
            after_mlp = fam.mlp_residual(unit.block, x, grid)  # the MLP half alone, on the block input
            for branch, ours in (("mlp", after_attn), ("attn", after_mlp)):
                blk = copy.deepcopy(unit.block)
                silence(fam.name, blk, branch)
                assert torch.equal(ours, timm_block(model, i, blk, x, grid, frames)), (i, branch)
            assert (after_attn - x).abs().max() > 1e-4 and (after_mlp - x).abs().max() > 1e-4  # both halves act
            x = fam.mlp_residual(unit.block, after_attn, grid)


@pytest.mark.parametrize("key", ["rope_mixed", "eva02_micro"])
def test_a_deep_copy_runs_the_same(key: str) -> None:
    """The EVA family keeps per-grid RoPE and looks blocks up: a copy (EMA, SWA, ...) must use its own blocks."""
    model = build(key).eval()
    open_gates(model)
    twin = copy.deepcopy(model)
    frames = frames_of(key)
    spec = torch.randn(2, *frames.shape[-2:])
    with torch.no_grad():
        assert torch.equal(model(spec, frames).visual, twin(spec, frames).visual)
        for p in twin.backbone.blocks[-1].parameters():
            p.mul_(1.5)
        assert not torch.equal(model(spec, frames).visual, twin(spec, frames).visual)


# ----- training moves only the adapters ---------------------------------------------------------------------------

def attention_linears(model: nn.Module) -> set[str]:
    """Names of the token projections of every block's attention: Linear layers that read or write C features
    (excluding e.g. Swin-V2's continuous position bias MLP), found from the modules, not from LoRA's regex."""
    names = set()
    for name, module in model.named_modules():
        if ".attn." in f"{name}." and isinstance(module, nn.Linear):
            parent = model.get_submodule(name.rsplit(".attn.", 1)[0] + ".attn")
            dim = parent.proj.out_features
            if dim in (module.in_features, module.out_features):
                names.add(name)
    return names


@pytest.mark.parametrize("adapter", ["lavish", "lora_attn"])
@pytest.mark.parametrize("key", SMALL_KEYS)
def test_a_training_step_moves_only_adapter_parameters(key: str, adapter: str) -> None:
    torch.manual_seed(0)
    name, overrides, size = BACKBONES[key]
    expected_lora = attention_linears(create_backbone(name, **overrides))
    model = build(key, adapter).train()
    if adapter == "lora_attn":  # LoRA's default targets are exactly the attention projections, in every family
        wrapped = {n.removesuffix(".lora_A") for n, _ in model.backbone.named_modules() if n.endswith(".lora_A")}
        assert wrapped == expected_lora and len(wrapped) >= 2 * len(model.units)
    open_gates(model)
    frozen = {n: p.detach().clone() for n, p in model.named_parameters() if not p.requires_grad}
    trainable = {n: p for n, p in model.named_parameters() if p.requires_grad}
    before = {n: p.detach().clone() for n, p in trainable.items()}
    assert trainable and all(("lora_" in n) if adapter == "lora_attn" else n.startswith("slots.") for n in trainable)
    assert all(n.startswith("backbone.") for n in frozen)

    gen = torch.Generator().manual_seed(1)
    spec = torch.randn(2, size, size, generator=gen)
    frames = torch.randn(2, 3, size, size, generator=gen)
    head = nn.Linear(2 * model.num_features, 3)
    optimiser = torch.optim.Adam(list(trainable.values()) + list(head.parameters()), lr=1e-3)
    for _ in range(2):
        optimiser.zero_grad()
        out = model(spec, frames)
        logits = head(torch.cat([model.pool(out.visual), model.pool(out.audio)], dim=-1))
        loss = nn.functional.cross_entropy(logits, torch.tensor([0, 2]))
        loss.backward()
        no_grad = [n for n, p in trainable.items() if p.grad is None or not p.grad.abs().sum() > 0]
        assert not no_grad, no_grad[:5]
        optimiser.step()

    assert [n for n, p in trainable.items() if torch.equal(p, before[n])] == []
    assert [n for n, p in model.named_parameters() if n in frozen and not torch.equal(p, frozen[n])] == []
    assert all(torch.equal(model.get_parameter(n), v) for n, v in frozen.items())


@pytest.mark.parametrize("key", ["vit_micro", "swin_micro", "eva02_micro", "eva01", "pe"])
def test_lora_starts_as_the_backbone_and_then_acts(key: str) -> None:
    """B = 0: the backbone's features (to fp32 rounding: the fused-qkv bias is added apart for LoRA); B != 0: not."""
    name, overrides, size = BACKBONES[key]
    model = LavishBackbone(activate_post_norms(create_backbone(name, **overrides)), adapter_config("lora_attn"),
                           modalities="v").eval()
    plain = activate_post_norms(create_backbone(name, **overrides)).eval()
    frames = frames_of(key)
    with torch.no_grad():
        start = model(None, frames).visual
        reference = plain.forward_features(frames)
        open_gates(model)
        moved = model(None, frames).visual
    reference = reference.flatten(1, 2) if reference.ndim == 4 else reference
    torch.testing.assert_close(start, reference, rtol=0, atol=2e-5)
    assert (moved - reference).abs().max() > 1e-3


# ----- AVS multi-scale maps ---------------------------------------------------------------------------------------

@pytest.mark.parametrize(("name", "dims"), [("lavish_swin_micro_window4_64", [32, 64, 128, 256]),
                                            ("lavish_eva02_micro_patch8_64", [64, 64, 64, 64])])
def test_avs_reads_four_maps_of_swin_and_eva(name: str, dims: list[int]) -> None:
    model = AvsModel(AvsModelConfig(backbone=name, mask_size=(64, 48), decoder_channels=8, tpavi_stages=(1, 3)))
    assert model.backbone.stage_dims() == dims
    with torch.no_grad():
        out = model.backbone(torch.randn(2, 96, 64), torch.randn(2, 3, 64, 64), return_stages=True)
        masks = model(torch.randn(1, 2, 96, 64), torch.randn(1, 2, 3, 64, 64))
    grids = [tuple(s.shape[1:3]) for s in out.visual_stages]
    assert grids == ([(16, 16), (8, 8), (4, 4), (2, 2)] if "swin" in name else [(8, 8)] * 4)
    assert masks.shape == (1, 2, 64, 48) and torch.isfinite(masks).all()
