"""Table 8 (+VGGish) end to end on real generated media: the per-second features travel with the prepared cache,
so training, its final test evaluation, ``lavish eval`` and ``lavish predict`` (given the video's features) all
run; a model trained without them refuses them, one trained with them asks for them in one line."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest

from lavish.cli.main import main
from lavish.tasks.ave import layout as ave

MICRO = "lavish_vit_micro_patch8_64"
FLAGS = ["--backbone", MICRO, "--no-pretrained", "--lr", "1e-3", "--lr-head", "1e-3", "--no-progress"]
WIDTH = 128


def _features(layout, path):
    """(rows, 10, 128) 'VGGish' features of the layout: a per-row constant plus the second, so they differ."""
    rows = len(ave.read_annotations(layout / "Annotations.txt").records)
    rng = np.random.default_rng(0)
    data = rng.standard_normal((rows, 10, WIDTH)).astype(np.float32)
    with h5py.File(path, "w") as f:
        f.create_dataset("avadataset", data=data)
    return data


@pytest.fixture(scope="module")
def table8(ave_layout, tmp_path_factory):
    root = tmp_path_factory.mktemp("table8")
    features = _features(ave_layout, root / "audio_feature.h5")
    cache, run = root / "cache", root / "run"
    assert main(["prepare", "ave", "--root", str(ave_layout), "--out", str(cache), "--backbone", MICRO,
                 "--extra-audio-features", str(root / "audio_feature.h5"), "--no-progress"]) == 0
    assert main(["train", "ave", "--data", str(cache), "--out", str(run), *FLAGS, "--epochs", "2",
                 "--batch-size", "4", "--extra-audio-features"]) == 0
    return root, cache, run, features


def test_prepare_stores_the_features_per_cache_item(table8):
    root, cache, _, features = table8
    items = json.loads((cache / "videos.json").read_text())
    stored = np.load(cache / "extra_audio.npy")
    assert stored.shape == (len(items), 10, WIDTH)
    np.testing.assert_array_equal(stored, features[[it["row"] for it in items]])


def test_train_evaluates_and_eval_reads_the_cache(table8, capsys):
    _, cache, run, _ = table8
    results = json.loads((run / "results.json").read_text())
    assert results["epochs_run"] == 2 and results["test_acc"] is not None  # the final test evaluation ran
    assert json.loads((run / "run.json").read_text())["model"]["extra_audio_dim"] == WIDTH
    capsys.readouterr()
    assert main(["eval", "ave", "--checkpoint", str(run / "best.safetensors"), "--data", str(cache), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["accuracy"] == results["test_acc"]


def test_predict_needs_the_features_and_uses_them(table8, ave_layout, tmp_path, capsys):
    _, _, run, features = table8
    video = ave_layout / "AVE" / "vid_a.mp4"
    capsys.readouterr()
    assert main(["predict", str(video), "--checkpoint", str(run / "best.safetensors")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--extra-features" in err[0] and "vid_a.mp4" in err[0]
    npy = tmp_path / "vid_a.npy"
    np.save(npy, features[0])
    assert main(["predict", str(video), "--checkpoint", str(run / "best.safetensors"), "--extra-features", str(npy),
                 "--json"]) == 0
    first = json.loads(capsys.readouterr().out)[0]
    assert len(first["seconds"]) == 10
    np.save(npy, -5 * features[0])  # other features, other probabilities: they reach the head
    assert main(["predict", str(video), "--checkpoint", str(run / "best.safetensors"), "--extra-features", str(npy),
                 "--json"]) == 0
    second = json.loads(capsys.readouterr().out)[0]
    assert [s["probability"] for s in first["seconds"]] != [s["probability"] for s in second["seconds"]]
    np.save(npy, features[0][:4])
    assert main(["predict", str(video), "--checkpoint", str(run / "best.safetensors"), "--extra-features",
                 str(npy)]) == 2
    assert "(10, 128)" in capsys.readouterr().err


def test_refusals(table8, ave_run, ave_cache, ave_layout, tmp_path, capsys):
    root, cache, run, _ = table8
    capsys.readouterr()
    # training with the features on a cache that has none
    assert main(["train", "ave", "--data", str(ave_cache), "--out", str(tmp_path / "r"), *FLAGS,
                 "--extra-audio-features"]) == 2
    assert "--extra-audio-features FILE.h5" in capsys.readouterr().err
    # a model without them: --extra-features does not apply
    npy = tmp_path / "f.npy"
    np.save(npy, np.zeros((10, WIDTH), np.float32))
    assert main(["predict", str(ave_layout / "AVE" / "vid_a.mp4"), "--checkpoint",
                 str(ave_run / "best.safetensors"), "--extra-features", str(npy)]) == 2
    assert "does not apply" in capsys.readouterr().err
    # a features file of the wrong shape is refused before any video is decoded
    with h5py.File(root / "bad.h5", "w") as f:
        f.create_dataset("avadataset", data=np.zeros((2, 10, 8), np.float32))
    assert main(["prepare", "ave", "--root", str(ave_layout), "--out", str(tmp_path / "c"), "--backbone", MICRO,
                 "--extra-audio-features", str(root / "bad.h5"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "bad.h5" in err and "(2, 10, 8)" in err and not (tmp_path / "c").exists()
