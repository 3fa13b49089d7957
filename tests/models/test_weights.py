"""Adapter-only weight files (lavish.models.weights): round trip, what is in them, and refusals in one line."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

from backbone_helpers import activate_post_norms, open_gates
from lavish.errors import CheckpointError
from lavish.fileio import TEMP_MARK
from lavish.models.adapters import adapter_config
from lavish.tasks.ave.model import AveModel, AveModelConfig
from lavish.models.weights import FROZEN_PREFIX, load_adapter_into, read_adapter, save_adapter

SWIN_MICRO = "lavish_swinv2_micro_window4_64"
VIT_MICRO = "lavish_vit_micro_patch8_64"


def trained_model(config: AveModelConfig, seed: int = 0) -> AveModel:
    """A model whose adapters, head and BN statistics differ from a fresh one (stands in for training)."""
    torch.manual_seed(seed)
    model = AveModel(config)
    activate_post_norms(model)
    open_gates(model)
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(torch.randn_like(p) * 0.05)
    model.train()
    with torch.no_grad():
        model(*segments())  # moves BN running statistics
    return model.eval()


def segments(seed: int = 3):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(1, 2, 64, 64, generator=gen), torch.randn(1, 2, 3, 64, 64, generator=gen)


def fresh(config: AveModelConfig) -> AveModel:
    torch.manual_seed(123)  # adapters and head initialised differently from the saved ones
    return activate_post_norms(AveModel(config)).eval()


@pytest.mark.parametrize(
    "adapter", [adapter_config("lavish"), adapter_config("lavish", formulation="paper"), adapter_config("lora"),
                adapter_config("lora_attn"), adapter_config("norm")], ids=["lavish", "paper", "lora", "lora_attn", "norm"],
)
def test_saved_adapter_reloads_to_identical_outputs(tmp_path, adapter) -> None:
    config = AveModelConfig(backbone=SWIN_MICRO, adapter=adapter)
    model = trained_model(config)
    path = save_adapter(model, tmp_path / "run" / "adapter.safetensors", config.to_dict(), {"task": "ave"})
    with torch.no_grad():
        expected = model(*segments())

    other = fresh(config)
    with torch.no_grad():
        assert not torch.equal(other(*segments()), expected)
    if adapter.kind == "norm":  # the trained LayerNorms live in the backbone; the fresh one has its own
        activate_post_norms(other, seed=9)
    meta = load_adapter_into(other, path, config.to_dict())
    with torch.no_grad():
        assert torch.equal(other(*segments()), expected)
    assert meta == {"task": "ave"}
    assert not list(tmp_path.joinpath("run").glob(f".*{TEMP_MARK}*"))


def test_file_holds_adapters_head_and_trainable_tensors_only(tmp_path) -> None:
    config = AveModelConfig(backbone=SWIN_MICRO)
    model = trained_model(config)
    path = save_adapter(model, tmp_path / "a.safetensors", config.to_dict())
    saved_config, _, tensors = read_adapter(path)
    assert saved_config == config.to_dict()
    assert not any(k.startswith(FROZEN_PREFIX) for k in tensors)
    assert all(k.startswith(("backbone.slots.", "head.")) for k in tensors)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable <= set(tensors)
    assert any(k.endswith("running_mean") for k in tensors)  # adapter BN statistics travel too
    stored = sum(t.numel() for t in tensors.values())
    backbone = sum(p.numel() for p in model.backbone.backbone.parameters())
    assert stored < backbone / 2

    norms = AveModelConfig(backbone=SWIN_MICRO, adapter=adapter_config("norm"))
    norm_model = trained_model(norms)
    _, _, norm_tensors = read_adapter(save_adapter(norm_model, tmp_path / "n.safetensors", norms.to_dict()))
    in_backbone = {k for k in norm_tensors if k.startswith(FROZEN_PREFIX)}
    assert in_backbone and all("norm" in k for k in in_backbone)
    assert in_backbone == {n for n, p in norm_model.named_parameters() if p.requires_grad and n.startswith(FROZEN_PREFIX)}


@pytest.mark.parametrize(
    "other",
    [AveModelConfig(backbone=VIT_MICRO), AveModelConfig(backbone=SWIN_MICRO, adapter=adapter_config("lavish", num_latents=4)),
     AveModelConfig(backbone=SWIN_MICRO, adapter=adapter_config("avish")), AveModelConfig(backbone=SWIN_MICRO, modalities="v")],
    ids=["other-backbone", "other-latents", "other-adapter", "other-modalities"],
)
def test_file_for_another_model_is_refused_naming_it(tmp_path, other: AveModelConfig) -> None:
    config = AveModelConfig(backbone=SWIN_MICRO)
    path = save_adapter(trained_model(config), tmp_path / "swin_lavish.safetensors", config.to_dict())
    target = AveModel(other)
    with pytest.raises(CheckpointError) as info:
        load_adapter_into(target, path, other.to_dict())
    message = str(info.value)
    assert str(path) in message and "\n" not in message


def test_tensors_that_do_not_fit_are_refused(tmp_path) -> None:
    config = AveModelConfig(backbone=SWIN_MICRO)
    model = trained_model(config)
    path = tmp_path / "hacked.safetensors"
    state = {k: v.contiguous() for k, v in model.state_dict().items() if k.startswith(("backbone.slots.", "head."))}
    state.pop("head.mlp_class.bias")
    save_file(state, str(path), metadata={"lavish.config": __import__("json").dumps(config.to_dict(), sort_keys=True)})
    with pytest.raises(CheckpointError, match="hacked.safetensors.*missing head.mlp_class.bias"):
        load_adapter_into(AveModel(config), path, config.to_dict())


@pytest.mark.parametrize("damage", ["random", "truncated", "empty", "no-metadata", "missing"])
def test_corrupt_files_are_checkpoint_errors(tmp_path, damage: str) -> None:
    config = AveModelConfig(backbone=SWIN_MICRO)
    good = save_adapter(trained_model(config), tmp_path / "good.safetensors", config.to_dict())
    path = tmp_path / f"{damage}.safetensors"
    if damage == "random":
        path.write_bytes(torch.randint(0, 256, (4096,), dtype=torch.uint8).numpy().tobytes())
    elif damage == "truncated":
        path.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    elif damage == "empty":
        path.write_bytes(b"")
    elif damage == "no-metadata":
        save_file({"x": torch.zeros(3)}, str(path))
    with pytest.raises(CheckpointError) as info:
        load_adapter_into(AveModel(config), path, config.to_dict())
    assert str(path) in str(info.value) and "\n" not in str(info.value)
