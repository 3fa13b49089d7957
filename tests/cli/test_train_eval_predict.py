"""``lavish train/eval/predict ave`` end to end on a tiny real cache, and every refusal: exit code 2, one
``error:`` line naming the culprit, and nothing of an existing run touched.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml
from safetensors import safe_open
from safetensors.torch import save_file

from lavish.cli.main import main
from lavish.media.writer import write_video

MICRO = "lavish_vit_micro_patch8_64"
FLAGS = ["--backbone", MICRO, "--no-pretrained", "--lr", "1e-3", "--lr-head", "1e-3", "--no-progress"]


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _refused(capsys, argv: list[str], *names: str) -> str:
    """Run the CLI, expect exit 2 and exactly one stderr line ``error: ...`` containing every name."""
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    for name in names:
        assert str(name) in lines[0], (name, lines[0])
    return lines[0]


def _clip(path: Path, seconds: float, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    fps = 4
    frames = rng.integers(0, 255, size=(int(seconds * fps), 40, 56, 3), dtype=np.uint8)
    audio = (0.2 * rng.standard_normal(int(seconds * 22050))).astype(np.float32)
    write_video(path, frames, fps, audio=audio, sample_rate=22050)
    return path


def test_eval_and_predict_a_trained_run(ave_run, ave_cache, ave_layout, tmp_path, capsys):
    capsys.readouterr()
    png = tmp_path / "cm.png"
    assert main(["eval", "ave", "--checkpoint", str(ave_run / "best.safetensors"), "--data", str(ave_cache),
                 "--confusion", str(png), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert 0.0 <= result["accuracy"] <= 1.0 and result["segments"] == 10  # the test split: one 10 s video
    assert result["classes"] == ["Bark", "Cat", "background"] and np.array(result["confusion"]).sum() == 10
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    videos = [ave_layout / "AVE" / "vid_a.mp4", _clip(tmp_path / "short.mp4", 3.6)]
    plot = tmp_path / "timeline.png"
    assert main(["predict", *map(str, videos), "--checkpoint", str(ave_run / "best.safetensors"), "--json",
                 "--plot", str(plot)]) == 0
    out = json.loads(capsys.readouterr().out)
    assert isinstance(out, list) and [r["video"] for r in out] == list(map(str, videos))
    for res, n in zip(out, (10, 3)):
        assert [s["second"] for s in res["seconds"]] == list(range(n))
        for s in res["seconds"]:
            assert s["label"] in ("Bark", "Cat", "background") and 0.0 < s["probability"] <= 1.0
        assert Path(res["plot"]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert len({r["plot"] for r in out}) == 2  # one timeline per video

    # one video, --plot used as given
    assert main(["predict", str(videos[1]), "--checkpoint", str(ave_run / "best.safetensors"), "--json",
                 "--plot", str(plot)]) == 0
    assert len(json.loads(capsys.readouterr().out)[0]["seconds"]) == 3 and plot.is_file()


def test_train_refusals_leave_an_existing_run_untouched(ave_run, ave_cache, tmp_path, capsys):
    best = ave_run / "best.safetensors"
    before = {p: _digest(p) for p in (best, ave_run / "checkpoints" / "last.ckpt", ave_run / "run.json")}
    capsys.readouterr()

    def train(out, *extra):
        return ["train", "ave", "--data", str(ave_cache), "--out", str(out), *FLAGS, "--epochs", "1", *extra]

    _refused(capsys, train(ave_run), str(ave_run), "--resume")  # existing run without --resume
    _refused(capsys, train(ave_run, "--batch-size", "0"), "batch-size=0")
    _refused(capsys, train(ave_run, "--lr", "0"), "lr=0")
    _refused(capsys, train(ave_run, "--lr", "5"), "lr=5")
    _refused(capsys, train(ave_run, "--lr-head", "-1"), "lr-head=-1")
    _refused(capsys, train(tmp_path / "fresh", "--resume"), "nothing to resume")
    assert not (tmp_path / "fresh" / "best.safetensors").exists()
    with pytest.raises(SystemExit) as exit_info:
        main(train(ave_run, "--adapter", "no_such_adapter"))
    assert exit_info.value.code == 2 and "no_such_adapter" in capsys.readouterr().err
    assert {p: _digest(p) for p in before} == before


def test_train_refuses_bad_caches(ave_cache, tmp_path, capsys):
    out = tmp_path / "run"
    missing = tmp_path / "no_cache_here"
    _refused(capsys, ["train", "ave", "--data", str(missing), "--out", str(out), *FLAGS], str(missing))

    partial = tmp_path / "partial"
    shutil.copytree(ave_cache, partial)
    (partial / "manifest.json").unlink()
    _refused(capsys, ["train", "ave", "--data", str(partial), "--out", str(out), *FLAGS], str(partial),
             "incomplete")

    other = ["train", "ave", "--data", str(ave_cache), "--out", str(out), "--backbone", "vit_tiny_patch16_224",
             "--no-pretrained", "--no-progress"]
    _refused(capsys, other, str(ave_cache), "frame_size")
    assert not (out / "best.safetensors").exists() and not (out / "checkpoints").exists()


def _rewrite_adapter(src: Path, dst: Path, edit) -> None:
    """Copy an adapter file, passing its config and meta (dicts) through ``edit``."""
    with safe_open(src, "pt") as f:
        meta = dict(f.metadata())
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    decoded = {k: json.loads(v) for k, v in meta.items() if k.startswith("lavish.")}
    edit(decoded)
    meta.update({k: json.dumps(v) for k, v in decoded.items()})
    save_file(tensors, str(dst), metadata=meta)


def test_eval_and_predict_refuse_bad_checkpoints_and_videos(ave_run, ave_cache, tmp_path, capsys):
    best = ave_run / "best.safetensors"
    digest = _digest(best)
    with safe_open(best, "pt") as f:
        keys = sorted(f.metadata())
    assert "lavish.config" in keys, keys
    capsys.readouterr()

    def evaluate(ckpt):
        return ["eval", "ave", "--checkpoint", str(ckpt), "--data", str(ave_cache), "--confusion",
                str(tmp_path / "cm.png"), "--json"]

    corrupt = tmp_path / "corrupt.safetensors"
    corrupt.write_bytes(np.random.default_rng(0).bytes(4096))
    _refused(capsys, evaluate(corrupt), str(corrupt))
    _refused(capsys, evaluate(tmp_path / "absent.safetensors"), "absent.safetensors")

    if "lavish.meta" in keys:
        other_task = tmp_path / "other_task.safetensors"
        _rewrite_adapter(best, other_task, lambda d: d["lavish.meta"].update(task="avqa"))
        _refused(capsys, evaluate(other_task), str(other_task), "avqa")

    # same file, but its config claims a wider bottleneck: the tensors no longer fit
    def widen(d):
        d["lavish.config"]["adapter"]["reduction"] = 1 + int(d["lavish.config"]["adapter"].get("reduction") or 1)

    other_model = tmp_path / "other_model.safetensors"
    _rewrite_adapter(best, other_model, widen)
    _refused(capsys, evaluate(other_model), str(other_model))

    # an adapter file that save_adapter wrote for another model
    from lavish.tasks.ave.model import AveModel, AveModelConfig
    from lavish.models.weights import save_adapter

    cfg = json.loads((ave_run / "run.json").read_text())["model"]
    cfg["num_classes"] = 5  # a model trained on another label set
    foreign = tmp_path / "foreign.safetensors"
    model = AveModel(AveModelConfig.from_dict(cfg))
    save_adapter(model, foreign, model.config.to_dict(), {"task": "ave", "classes": list("abcde"),
                                                             "frontend": "micro", "frame_size": [64, 64]})
    _refused(capsys, evaluate(foreign), "classes")

    fake = tmp_path / "not_a_video.mp4"
    fake.write_text("this is text, not an mp4\n")
    _refused(capsys, ["predict", str(fake), "--checkpoint", str(best), "--json"], str(fake))
    assert _digest(best) == digest


def test_config_file_is_applied_and_unknown_keys_refused(ave_cache, tmp_path, capsys):
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump({"backbone": MICRO, "adapter": "avish", "epochs": 3, "batch_size": 4,
                                      "lr": 1e-3, "lr_head": 1e-3, "seed": 5}))
    out = tmp_path / "run"
    assert main(["train", "ave", "--config", str(config), "--data", str(ave_cache), "--out", str(out),
                 "--no-pretrained", "--epochs", "1", "--no-progress"]) == 0  # the command line wins
    run = json.loads((out / "run.json").read_text())
    assert run["model"]["backbone"] == MICRO and run["model"]["adapter"]["kind"] == "avish"
    assert run["train"]["epochs"] == 1 and run["train"]["batch_size"] == 4 and run["train"]["seed"] == 5
    assert json.loads((out / "results.json").read_text())["epochs_run"] == 1

    bad = tmp_path / "bad.yaml"
    bad.write_text("epochs: 1\nlearning_rate: 0.1\n")
    _refused(capsys, ["train", "ave", "--config", str(bad), "--data", str(ave_cache), "--out",
                      str(tmp_path / "run2")], str(bad), "learning_rate")
    assert not (tmp_path / "run2").exists()


def _copy_run(ave_run: Path, dst: Path) -> Path:
    shutil.copytree(ave_run, dst)
    return dst


def _resume(ave_cache, out) -> list[str]:
    """The command that made ``ave_run`` (tests/conftest.py), continued."""
    return ["train", "ave", "--data", str(ave_cache), "--out", str(out), *FLAGS, "--epochs", "3", "--batch-size", "4",
            "--seed", "0", "--resume"]


class _RunsACommand:
    """Unpickling this runs ``touch <marker>``."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        import os

        return os.system, (f"touch '{self.marker}'",)


def test_resume_refuses_a_pickled_checkpoint_without_running_it(ave_run, ave_cache, tmp_path, capsys):
    import torch

    run = _copy_run(ave_run, tmp_path / "shared_run")
    marker = tmp_path / "ran"
    torch.save({"epoch": 2, "state_dict": {}, "payload": _RunsACommand(marker)}, run / "checkpoints" / "last.ckpt")
    capsys.readouterr()
    _refused(capsys, _resume(ave_cache, run), "last.ckpt", "not loaded")
    assert not marker.exists()


def test_resume_without_or_with_a_broken_run_json_is_one_line(ave_run, ave_cache, tmp_path, capsys):
    run = _copy_run(ave_run, tmp_path / "run")
    (run / "run.json").unlink()
    capsys.readouterr()
    _refused(capsys, _resume(ave_cache, run), str(run), "run.json is missing")
    (run / "run.json").write_text('{"model": ')
    _refused(capsys, _resume(ave_cache, run), str(run / "run.json"), "unreadable")


def test_a_precision_the_device_cannot_run_is_refused_up_front(ave_cache, tmp_path, capsys, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # what any machine's CPU runs
    out = tmp_path / "run"
    _refused(capsys, ["train", "ave", "--data", str(ave_cache), "--out", str(out), *FLAGS, "--precision", "16-mixed"],
             "precision='16-mixed'", "the CPU", "32, bf16-mixed")
    assert not out.exists()


def test_adapter_metadata_that_is_not_json_is_one_line(ave_run, ave_cache, tmp_path, capsys):
    best = ave_run / "best.safetensors"
    with safe_open(best, "pt") as f:
        meta = dict(f.metadata())
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    for key, value in (("lavish.config", '{"backbone": "lavish_vit'), ("lavish.meta", "[1, 2]")):
        bad = tmp_path / f"bad_{key}.safetensors"
        save_file(tensors, str(bad), metadata={**meta, key: value})
        capsys.readouterr()
        _refused(capsys, ["predict", str(ave_run.parent / "x.mp4"), "--checkpoint", str(bad)], str(bad), key)
        _refused(capsys, ["eval", "ave", "--checkpoint", str(bad), "--data", str(ave_cache)], str(bad), key)


def test_a_video_without_audio_is_one_warning_line(ave_run, tmp_path, capsys):
    from ave_layout import write_mp4  # tests/tasks/ave, on the path through tests/conftest.py

    video = tmp_path / "silent film.mp4"
    write_mp4(video, 0, seconds=3, audio=False)
    capsys.readouterr()
    assert main(["predict", str(video), "--checkpoint", str(ave_run / "best.safetensors"), "--json"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)[0]["has_audio"] is False
    assert captured.err.splitlines() == [f"warning: {video}: no audio stream; using silence"], captured.err


def test_an_adapter_file_of_an_unknown_task_is_refused_in_one_line(ave_run, ave_cache, ave_layout, tmp_path, capsys):
    """The task named in a file's meta is looked up in the registry, never imported by name."""
    bogus = tmp_path / "bogus.safetensors"
    _rewrite_adapter(ave_run / "best.safetensors", bogus, lambda d: d["lavish.meta"].update(task="os.system"))
    capsys.readouterr()
    video = ave_layout / "AVE" / "vid_a.mp4"
    for argv in (["predict", str(video), "--checkpoint", str(bogus)],
                 ["eval", "ave", "--checkpoint", str(bogus), "--data", str(ave_cache)],
                 ["ask", str(video), "How many?", "--checkpoint", str(bogus)]):
        line = _refused(capsys, argv, str(bogus), "'os.system'")
        assert "ave, avs, avqa" in line
