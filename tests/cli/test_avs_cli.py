"""`lavish info/train/eval/predict/prepare avs` through the real command line, on a tiny synthetic dataset."""

from __future__ import annotations

import json

import numpy as np
from PIL import Image

from lavish.cli.main import main
from lavish.tasks.avs.layout import read_avs
from lavish.tasks.avs.synthetic import make_synthetic_avs
from lavish.media.decode import read_audio
from lavish.media.writer import write_video

MICRO = "lavish_swinv2_micro_window4_64"


def test_info_avs_shows_table_2_count(capsys):
    assert main(["info", "--task", "avs", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["trainable_params"] == 37_653_969 and abs(info["trainable_params"] / 37.2e6 - 1) < 0.02
    assert info["adapter_params"] == 17_148_048
    assert round(info["total_params_with_pretrained_head"] / 1e6, 1) == 266.4  # paper Table 2 total


def test_prepare_train_eval_predict(tmp_path, capsys):
    data = make_synthetic_avs(tmp_path / "data", num_videos=6, num_classes=2)
    cache, run = tmp_path / "cache", tmp_path / "run"
    assert main(["prepare", "avs", "--root", str(data), "--out", str(cache), "--backbone", MICRO,
                 "--no-progress"]) == 0
    assert main(["train", "avs", "--data", str(cache), "--out", str(run), "--subset", "ms3"]) == 2
    assert "not --subset ms3" in capsys.readouterr().err
    assert main(["train", "avs", "--data", str(cache), "--out", str(run), "--subset", "s4", "--backbone", MICRO,
                 "--no-pretrained", "--epochs", "1", "--batch-size", "2", "--decoder-channels", "8",
                 "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["eval", "avs", "--checkpoint", str(run / "best.safetensors"), "--data", str(cache),
                 "--split", "test", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert set(result) >= {"miou", "fscore"} and 0 <= result["miou"] <= 1 and 0 <= result["fscore"] <= 1
    rec = next(r for r in read_avs(data, "s4") if r.split == "test")
    frames = np.stack([np.asarray(Image.open(p).convert("RGB")) for p in rec.frames])
    video = write_video(tmp_path / "clip.mp4", np.repeat(frames, 2, axis=0), 2, read_audio(rec.audio))
    out = tmp_path / "pred"
    assert main(["predict", str(video), "--checkpoint", str(run / "best.safetensors"), "--out", str(out),
                 "--json"]) == 0
    pred = json.loads(capsys.readouterr().out)[0]
    assert len(pred["masks"]) == 5
    for path in pred["masks"]:
        assert np.asarray(Image.open(path)).shape == (64, 64)
    assert np.asarray(Image.open(pred["sheet"])).shape == (64, 5 * 64, 3)
    assert main(["predict", str(video), "--checkpoint", str(run / "best.safetensors")]) == 2
    assert "--out" in capsys.readouterr().err
