"""Every promise of docs/api.md, tried as a user who read only docs/api.md and ``help(lavish)`` (issue 24).

One section per numbered point of the issue: 1 the safe default of ``wrap``; 2 checked inputs; 3 mismatch messages
that say which setting differs; 4 one exception family; 5 every command as a function returning plain data; 6 the
caller's terms and no Lightning noise; 7 per-backbone frame statistics, recorded in files, ImageNet's for old files;
8 the docs list every public name; 9 the peft-style methods. Real models (the micro backbones), real mp4 files, real
training steps; the trained AVE run is the session fixture of tests/conftest.py.
"""

from __future__ import annotations

import json
import re
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

import lavish

ROOT = Path(__file__).resolve().parents[1]
MICRO = "lavish_vit_micro_patch8_64"
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)  # OpenAI CLIP's pretraining statistics (timm's OPENAI_CLIP_*)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def _one_line(err: BaseException) -> str:
    message = str(err)
    assert message and "\n" not in message, message
    return message


def _inputs(n: int = 2, size: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.randn(n, 96, 64), torch.randn(n, 3, size, size)


def _video(path: Path, seconds: int = 3, size: int = 48) -> Path:
    from lavish.media.writer import write_video

    rng = np.random.default_rng(0)
    write_video(path, rng.integers(0, 255, (4 * seconds, size, size, 3), dtype=np.uint8), 4,
                audio=(0.1 * rng.standard_normal(seconds * 16000)).astype(np.float32))
    return path


def _offline(monkeypatch) -> None:
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)


# ------------------------------------------------------------------------------------------ 1. the safe default
def test_a_real_name_means_pretrained_weights_and_offline_says_how_out(monkeypatch) -> None:
    _offline(monkeypatch)
    with pytest.raises(lavish.ConfigError) as info:  # the default asked the hub for the pretrained weights
        lavish.wrap("vit_tiny_patch16_224")
    message = _one_line(info.value)
    assert "weights=" in message and "pretrained=False" in message


def test_a_micro_backbone_is_random_without_a_warning_and_refuses_pretrained() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        backbone = lavish.wrap(MICRO)
    assert backbone.pretrained is False
    with pytest.raises(lavish.ConfigError, match="pretrained=False"):
        lavish.wrap(MICRO, pretrained=True)


def test_a_frozen_random_real_backbone_needs_saying_so_and_still_warns() -> None:
    with pytest.warns(UserWarning, match=r"pretrained=False.*random weights"):
        backbone = lavish.wrap("vit_tiny_patch16_224", pretrained=False)
    assert backbone.pretrained is False


def test_random_backbones_by_name_are_seeded_whatever_the_global_seed() -> None:
    torch.manual_seed(1)
    first = lavish.wrap(MICRO).backbone.state_dict()
    torch.manual_seed(2)
    second = lavish.wrap(MICRO).backbone.state_dict()
    assert all(torch.equal(first[k], second[k]) for k in first)


# ------------------------------------------------------------------------------------------ 2. checked inputs
@pytest.fixture(scope="module")
def micro() -> lavish.LavishBackbone:
    return lavish.wrap(MICRO).eval()


@pytest.mark.parametrize(("audio", "frames", "expected"), [
    (torch.randn(2, 3, 64, 64), torch.randn(2, 96, 64), r"streams swapped"),
    (torch.randn(2, 5, 96, 64), torch.randn(2, 5, 3, 64, 64), r"fold time into the batch"),
    (torch.randn(2, 96, 64), torch.randn(2, 3, 224, 224), r"224x224 given to a 64x64 backbone"),
    (torch.randn(2, 96, 64), torch.randn(3, 3, 64, 64), r"batch sizes differ: 2 spectrograms and 3 frames"),
    (torch.randn(2, 96, 64), torch.zeros(2, 3, 64, 64, dtype=torch.uint8), r"floating-point frames, got dtype uint8"),
    (torch.randn(2, 96, 64), torch.randn(2, 64, 64, 3), r"expected frames \(B', 3, 64, 64\), got .*\(2, 64, 64, 3\)"),
    (torch.randn(2, 96, 64), None, r"expected frames .* as a tensor, got NoneType"),
])
def test_bad_inputs_raise_one_shape_error_naming_expected_and_given(micro, audio, frames, expected) -> None:
    with pytest.raises(lavish.ShapeError) as info:
        micro(audio, frames)
    assert re.search(expected, _one_line(info.value)), str(info.value)
    assert isinstance(info.value, ValueError) and isinstance(info.value, lavish.ConfigError)


def test_good_inputs_pass_and_the_checks_change_nothing(micro) -> None:
    audio, frames = _inputs()
    with torch.no_grad():
        out = micro(audio, frames)
    assert out.audio.shape == (2, 1 + 12 * 8, 96) and out.visual.shape == (2, 1 + 8 * 8, 96)  # class token + grid
    visual_only = lavish.wrap(MICRO, modalities="v").eval()
    with torch.no_grad():
        assert visual_only(None, frames).visual.shape == (2, 65, 96)  # the stream that does not run may be None


# ---------------------------------------------------------------------------- 3. mismatch messages that say what
def test_load_adapter_of_another_configuration_names_each_setting(tmp_path) -> None:
    path = tmp_path / "two_latents.safetensors"
    lavish.save_adapter(lavish.wrap(MICRO, num_latents=2), path)
    with pytest.raises(lavish.CheckpointError) as info:
        lavish.load_adapter(lavish.wrap(MICRO, num_latents=4), path)
    message = _one_line(info.value)
    assert "num_latents: file 2, model 4" in message and "None" not in message
    with pytest.raises(lavish.CheckpointError, match="kind: file 'lavish', model 'adapter'"):
        lavish.load_adapter(lavish.wrap(MICRO, "adapter"), path)


def test_load_of_your_own_models_file_says_to_use_load_adapter(tmp_path) -> None:
    path = tmp_path / "mine.safetensors"
    lavish.save_adapter(lavish.wrap(MICRO), path)
    with pytest.raises(lavish.CheckpointError) as info:
        lavish.load(path)
    assert "lavish.load_adapter" in _one_line(info.value)


def test_load_adapter_of_a_task_file_into_your_own_model_says_to_use_load(ave_run) -> None:
    with pytest.raises(lavish.CheckpointError) as info:
        lavish.load_adapter(lavish.wrap(MICRO), ave_run / "best.safetensors")
    assert "lavish.load(path)" in _one_line(info.value)


# ------------------------------------------------------------------------------------ 4. one exception family
def test_every_documented_error_is_exported_and_a_lavish_error() -> None:
    for name in ("ConfigError", "ShapeError", "DataError", "MediaError", "CheckpointError", "WriteError"):
        assert issubclass(getattr(lavish, name), lavish.LavishError), name
        assert name in lavish.__all__ and name in lavish.__doc__


def test_bad_uses_raise_one_line_lavish_errors(ave_run, tmp_path) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("not a video")
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    cases = [
        (lavish.CheckpointError, lambda: lavish.load(ave_run / "best.safetensors", task="avqa")),
        (lavish.ConfigError, lambda: lavish.adapter_config("nope")),
        (lavish.ConfigError, lambda: lavish.wrap(MICRO, modalities="x")),
        (lavish.ConfigError, lambda: lavish.wrap("resnet50")),
        (lavish.MediaError, lambda: lavish.decode_clip(notes)),
        (lavish.DataError, lambda: lavish.evaluate(ave_run / "best.safetensors", tmp_path / "not-a-cache")),
        (lavish.CheckpointError, lambda: lavish.load(notes)),
        (lavish.WriteError, lambda: lavish.save_adapter(lavish.wrap(MICRO), blocker / "x.safetensors")),
        (lavish.ConfigError, lambda: lavish.info("ave", backbone=MICRO, no_such_field=1)),
        (lavish.ConfigError, lambda: lavish.synthetic("ave", tmp_path / "d", no_such_option=1)),
        (lavish.ConfigError, lambda: lavish.bench(no_such_option=1)),
        (lavish.ConfigError, lambda: lavish.prepare("ave", tmp_path, tmp_path / "c", workers=0)),
        (lavish.ShapeError, lambda: lavish.normalize_frames(torch.zeros(2, 3, 8, 8, dtype=torch.uint8))),
    ]
    for error, call in cases:
        with pytest.raises(error) as info:
            call()
        _one_line(info.value)


# --------------------------------------------------------------- 5 and 6. every command a function; quiet, own words
def test_the_commands_as_functions_return_plain_data(ave_cache, tmp_path, capfd) -> None:
    from lavish.cli.main import main

    data = lavish.synthetic("ave", tmp_path / "data", num_videos=4, num_classes=2, duration_s=3)
    assert (data / "AVE").is_dir() or any(data.iterdir())
    report = lavish.prepare("ave", data, tmp_path / "cache", backbone=MICRO)
    assert report["videos"] == 4 and report["usable"] == 4 and report["failed"] == {}
    assert report["frame_size"] == [64, 64] and report["frontend"] == "micro"
    json.dumps(report)  # plain data

    info = lavish.info("ave", backbone=MICRO)
    capfd.readouterr()
    assert main(["info", "--task", "ave", "--backbone", MICRO, "--json"]) == 0
    assert json.loads(capfd.readouterr().out) == json.loads(json.dumps(info))  # one implementation
    assert info["trainable_params"] + info["frozen_params"] == info["total_params"]

    config = lavish.AveModelConfig(backbone=MICRO)
    capfd.readouterr()
    result = lavish.train("ave", ave_cache, tmp_path / "run", config,
                          lavish.AveTrainConfig(epochs=1, batch_size=4, lr=1e-3, lr_head=1e-3), progress=False)
    printed = capfd.readouterr()
    for noise in ("GPU available", "Trainer.fit", "Tip", "TPU", "LOCAL_RANK"):
        assert noise not in printed.out + printed.err, noise
    assert result.adapter.is_file() and set(result.test) >= {"accuracy"}

    metrics = lavish.evaluate(result.adapter, ave_cache, progress=False)
    assert main(["eval", "ave", "--checkpoint", str(result.adapter), "--data", str(ave_cache), "--json"]) == 0
    assert json.loads(capfd.readouterr().out.strip().splitlines()[-1]) == json.loads(json.dumps(metrics))

    with pytest.raises(lavish.ConfigError) as info:  # the run folder is taken: the caller's words first
        lavish.train("ave", ave_cache, tmp_path / "run", config, lavish.AveTrainConfig(epochs=1), progress=False)
    message = _one_line(info.value)
    assert "resume=True" in message and not message.startswith("--")


def test_bench_as_a_function_returns_its_measurements(tmp_path) -> None:
    result = lavish.bench(backbone=MICRO, variants="floor,lavish2", videos=1, repeats=1, memory=False, eval=False,
                          out=str(tmp_path / "bench.json"), plot=str(tmp_path / "bench.png"))
    assert set(result["variants"]) == {"floor", "lavish2"}
    assert json.loads((tmp_path / "bench.json").read_text())["variants"].keys() == result["variants"].keys()


@pytest.mark.slow
def test_demo_as_a_function_returns_its_results(tmp_path) -> None:
    result = lavish.demo("ave", tmp_path / "demo", videos=10, classes=2, epochs=1, workers=1)
    assert result["exit_code"] == 0 and result["task"] == "ave"
    assert all("test_accuracy" in row for row in result["results"].values())


def test_the_avvp_names_are_exported() -> None:
    config = lavish.AvvpModelConfig(backbone=MICRO)
    model = lavish.AvvpModel(config)
    assert isinstance(lavish.AvvpTrainConfig(), lavish.TrainConfig)
    assert lavish.get_task("avvp").model_cls is lavish.AvvpModel and model.config == config


# ----------------------------------------------------------------- 7. each backbone sees what it was trained on
def _clip_backbone() -> torch.nn.Module:
    """A micro ViT whose timm pretrained config says CLIP's statistics, as a CLIP checkpoint's does."""
    import timm

    return timm.create_model(MICRO, num_classes=0, pretrained_cfg_overlay={"mean": CLIP_MEAN, "std": CLIP_STD})


def test_frame_statistics_come_from_timms_pretrained_config() -> None:
    assert lavish.wrap(MICRO).frame_stats == (lavish.IMAGENET_MEAN, lavish.IMAGENET_STD)
    assert lavish.wrap(_clip_backbone()).frame_stats == (CLIP_MEAN, CLIP_STD)
    from lavish.models.backbone import frame_stats

    assert frame_stats("vit_base_patch16_clip_224.openai") == (CLIP_MEAN, CLIP_STD)  # by name, nothing built
    assert frame_stats("eva02_base_patch14_224.mim_in22k")[0] == CLIP_MEAN


def test_load_inputs_normalises_with_the_backbones_own_statistics(tmp_path) -> None:
    video = _video(tmp_path / "v.mp4")
    backbone = lavish.wrap(_clip_backbone())
    spectrograms, frames = lavish.load_inputs(video, backbone)
    assert spectrograms.shape == (3, 96, 64) and frames.shape == (3, 3, 64, 64)
    clip = lavish.decode_clip(video, frame_size=(64, 64), frontend="micro")
    raw = torch.from_numpy(clip.frames)
    assert torch.equal(frames, lavish.normalize_frames(raw, CLIP_MEAN, CLIP_STD))
    assert not torch.allclose(frames, lavish.normalize_frames(raw))
    assert torch.equal(lavish.normalize_frames(raw), lavish.normalize_frames(raw, *lavish.wrap(MICRO).frame_stats))
    with torch.no_grad():
        assert backbone.eval()(spectrograms, frames).visual.shape[0] == 3


def test_adapter_files_record_the_statistics_and_old_files_keep_imagenets(tmp_path) -> None:
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    path = tmp_path / "clip.safetensors"
    lavish.save_adapter(lavish.wrap(_clip_backbone()), path)
    fresh = lavish.wrap(MICRO)
    lavish.load_adapter(fresh, path)
    assert fresh.frame_stats == (CLIP_MEAN, CLIP_STD)
    with safe_open(str(path), "pt") as f:  # an old file: the same without the statistics
        metadata = {k: v for k, v in f.metadata().items() if k != "lavish.frame_stats"}
    old = tmp_path / "old.safetensors"
    save_file(load_file(str(path)), str(old), metadata=metadata)
    clip_model = lavish.wrap(_clip_backbone())
    lavish.load_adapter(clip_model, old)
    assert clip_model.frame_stats == (lavish.IMAGENET_MEAN, lavish.IMAGENET_STD)


def test_task_models_use_the_recorded_statistics_and_old_files_predict_as_before(ave_run, tmp_path) -> None:
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    video = _video(tmp_path / "v.mp4")
    source = ave_run / "best.safetensors"
    tensors = load_file(str(source))
    with safe_open(str(source), "pt") as f:
        metadata = dict(f.metadata())
    assert json.loads(metadata["lavish.frame_stats"]) == {"backbone": {"mean": list(lavish.IMAGENET_MEAN),
                                                                       "std": list(lavish.IMAGENET_STD)}}
    old, clip = tmp_path / "old.safetensors", tmp_path / "clip.safetensors"
    save_file(tensors, str(old), metadata={k: v for k, v in metadata.items() if k != "lavish.frame_stats"})
    save_file(tensors, str(clip), metadata={**metadata, "lavish.frame_stats": json.dumps(
        {"backbone": {"mean": CLIP_MEAN, "std": CLIP_STD}})})
    now = lavish.load(source).predict(video, arrays=True)["probabilities"]
    before = lavish.load(old).predict(video, arrays=True)["probabilities"]
    assert np.array_equal(now, before)  # a file without the field: ImageNet's, bit-identical outputs
    model = lavish.load(clip)
    assert model.model.backbone.frame_stats == (CLIP_MEAN, CLIP_STD)
    got = model.predict(video, arrays=True)["probabilities"]
    meta = model.meta
    decoded = lavish.decode_clip(video, frame_size=tuple(meta["frame_size"]), frontend=meta["frontend"])
    with torch.no_grad():
        expected = model.model(torch.from_numpy(decoded.spectrograms)[None],
                               lavish.normalize_frames(torch.from_numpy(decoded.frames), CLIP_MEAN, CLIP_STD)[None])
    assert np.allclose(got, expected[0].softmax(-1).numpy(), atol=1e-6) and not np.allclose(got, now)


# ------------------------------------------------------------------------------ 8. docs list every public name
def test_every_public_name_is_in_api_md_with_an_example_and_in_help() -> None:
    text = (ROOT / "docs" / "api.md").read_text()
    rows = dict(re.findall(r"^\| `lavish\.(\w+)` \| (.+) \|$", text, flags=re.M))
    assert set(lavish.__all__) <= set(rows), sorted(set(lavish.__all__) - set(rows))
    assert all(rows[name].strip() for name in lavish.__all__)
    for name in lavish.__all__:
        assert re.search(rf"\b{name}\b", lavish.__doc__), name
        getattr(lavish, name)  # and it imports


# ------------------------------------------------------------------------------------ 9. what a peft user reaches for
def _trained(backbone: lavish.LavishBackbone) -> lavish.LavishBackbone:
    with torch.no_grad():
        for p in backbone.trainable_parameters():
            p.add_(0.05 * torch.randn_like(p))
    return backbone.eval()


def test_print_trainable_parameters_as_peft(capsys) -> None:
    backbone = lavish.wrap(MICRO)
    backbone.print_trainable_parameters()
    trainable = sum(p.numel() for p in backbone.trainable_parameters())
    total = sum(p.numel() for p in backbone.parameters())
    assert capsys.readouterr().out.strip() == (f"trainable params: {trainable:,} || all params: {total:,} || "
                                               f"trainable%: {100 * trainable / total:.4f}")


def test_save_pretrained_and_from_pretrained_round_trip(tmp_path) -> None:
    torch.manual_seed(0)
    backbone = _trained(lavish.wrap(MICRO, num_latents=4))
    folder = backbone.save_pretrained(tmp_path / "my-adapters")
    assert sorted(p.name for p in folder.iterdir()) == ["adapter_config.json", "adapter_model.safetensors"]
    config = json.loads((folder / "adapter_config.json").read_text())
    assert config["backbone"] == MICRO and config["adapter"]["kind"] == "lavish"
    assert config["adapter"]["num_latents"] == 4 and config["frame_mean"] == list(lavish.IMAGENET_MEAN)
    again = lavish.LavishBackbone.from_pretrained(folder).eval()
    audio, frames = _inputs()
    with torch.no_grad():
        a, b = backbone(audio, frames), again(audio, frames)
    assert torch.equal(a.audio, b.audio) and torch.equal(a.visual, b.visual)
    import timm

    own = lavish.LavishBackbone.from_pretrained(folder, timm.create_model(MICRO, num_classes=0))
    assert own.adapter_config.num_latents == 4
    with pytest.raises(lavish.CheckpointError):
        lavish.LavishBackbone.from_pretrained(tmp_path)


def test_unwrap_gives_the_users_timm_model_back_untouched() -> None:
    import timm

    for kind in ("lavish", "lora_attn", "bitfit"):
        model = timm.create_model(MICRO, num_classes=0)
        before = {k: v.clone() for k, v in model.state_dict().items()}
        backbone = lavish.wrap(model, kind)
        back = backbone.unwrap()
        assert back is model and set(back.state_dict()) == set(before)
        assert all(torch.equal(before[k], v) for k, v in back.state_dict().items())
        assert all(p.requires_grad for p in back.parameters())


def test_merge_and_unload_folds_lora_and_refuses_cross_modal_adapters() -> None:
    torch.manual_seed(0)
    lora = _trained(lavish.wrap(MICRO, "lora_attn"))
    audio, frames = _inputs()
    with torch.no_grad():
        expected = lora(audio, frames).visual
        merged = lora.merge_and_unload().eval()
        got = merged.forward_features(frames)
    assert type(merged).__name__ == "VisionTransformer"
    assert not any("lora" in name for name, _ in merged.named_modules())
    assert torch.allclose(got, expected, atol=1e-5)
    with pytest.raises(lavish.ConfigError) as info:
        lavish.wrap(MICRO, "lavish").merge_and_unload()
    assert "other stream" in _one_line(info.value)
