"""Clip classification end to end through the real command line, on each of the four layouts: a generated set
(lavish.tasks.classify.synthetic: a folder per class, a CSV of one's own, VGGSound's csv, AudioSet's distributed
csvs) -> `lavish prepare classify` -> `lavish train classify` (micro ViT, 2 epochs) -> `lavish eval classify` (equal
to the metrics fed by hand from the loaded model) -> `lavish predict` (top-k, --json, --plot, a folder of videos);
bad input in one line each."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import lavish
from lavish.cli.main import main
from lavish.data.cache import CacheDataset
from lavish.media.frames import normalize_frames
from lavish.media.writer import write_video
from lavish.tasks.classify.metrics import multilabel_stats, single_label_metrics
from lavish.tasks.classify.synthetic import make_synthetic_classify

MICRO = "lavish_vit_micro_patch8_64"
LAYOUTS = ("folder", "csv", "vggsound", "audioset")


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Micro models run tiny ops, where a second intra-op thread costs more than it gives."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """layout -> (data, cache, run, prepare's output), each prepared and trained once."""
    made = {}

    def get(layout: str, capsys=None):
        if layout not in made:
            root = tmp_path_factory.mktemp(layout)
            data = make_synthetic_classify(root / "data", layout=layout, num_videos=16, num_classes=4,
                                           duration_s=2.0, size=32, seed=1, progress=False)
            cache, run = root / "cache", root / "run"
            assert main(["prepare", "classify", "--root", str(data), "--out", str(cache), "--backbone", MICRO,
                         "--segments", "2", "--val-fraction", "0.3", "--no-progress"]) == 0
            assert main(["train", "classify", "--data", str(cache), "--out", str(run), "--backbone", MICRO,
                         "--no-pretrained", "--epochs", "2", "--batch-size", "4", "--lr", "1e-3", "--lr-head", "1e-3",
                         "--no-progress"]) == 0
            made[layout] = (data, cache, run)
        return made[layout]

    return get


def _scores(run, cache, split="test"):
    """(scores (N, K), labels) of the loaded model on a split, fed by hand."""
    trained = lavish.load(run / "best.safetensors")
    ds = CacheDataset(cache, split)
    scores, labels = [], []
    with torch.no_grad():
        for i in range(len(ds)):
            item = ds[i]
            scores.append(trained.model(item["audio"][None], normalize_frames(item["frames"][None]))[0])
            labels.append(item["labels"])
    return torch.stack(scores).numpy(), torch.stack(labels).numpy(), trained


@pytest.mark.parametrize("layout", LAYOUTS)
def test_prepare_train_eval_predict_on_each_layout(layout, runs, capsys, tmp_path):
    data, cache, run = runs(layout)
    multi = layout == "audioset"
    manifest = json.loads((cache / "manifest.json").read_text())
    assert manifest["task"] == "classify" and manifest["num_segments"] == 2
    assert all(manifest["splits"][s] for s in ("train", "val", "test"))
    labels = np.load(cache / "labels.npy")
    assert labels.ndim == (2 if multi else 1) and len(labels) == manifest["num_items"] == 16
    assert labels.dtype == (np.uint8 if multi else np.int64)  # a multi-label set's flags: one byte each

    results = json.loads((run / "results.json").read_text())
    monitor = "mAP" if multi else "top1"
    assert set(results) == {"best_epoch", f"best_val_{monitor}", "test", "epochs_run", "seconds"}
    assert results["epochs_run"] == 2 and 0 <= results[f"best_val_{monitor}"] <= 1

    capsys.readouterr()
    assert main(["eval", "classify", "--checkpoint", str(run / "best.safetensors"), "--data", str(cache),
                 "--split", "test", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    scores, truth, trained = _scores(run, cache)
    classes = manifest["classes"]
    expected = multilabel_stats(scores, truth, classes) if multi else single_label_metrics(scores, truth, classes)
    keys = ("mAP", "mAUC", "d_prime") if multi else ("top1", "top5", "mean_class_accuracy")
    for key in keys:
        assert result[key] == pytest.approx(expected[key], abs=1e-6), key
    assert result["split"] == "test" and result["clips"] == len(truth) and result["multi_label"] == multi
    assert results["test"][keys[0]] == pytest.approx(result[keys[0]], abs=1e-6)
    if not multi:  # the confusion matrix: rows truth, columns the argmax; its diagonal gives top-1
        cm = np.array(result["confusion"])
        assert cm.sum() == len(truth) and np.trace(cm) / cm.sum() == pytest.approx(result["top1"])
        png = tmp_path / "confusion.png"
        assert main(["eval", "classify", "--checkpoint", str(run / "best.safetensors"), "--data", str(cache),
                     "--confusion", str(png)]) == 0
        assert f"confusion matrix: {png}" in capsys.readouterr().out and png.stat().st_size > 1000
    else:
        assert main(["eval", "classify", "--checkpoint", str(run / "best.safetensors"), "--data", str(cache),
                     "--confusion", str(tmp_path / "c.png")]) == 2
        assert "multi-label" in capsys.readouterr().err

    # predict: top-k with probabilities, as the loaded model computes them on a clip of the test split
    video = next(p for p in sorted(data.rglob("*.mp4")))
    png = tmp_path / "bars.png"
    assert main(["predict", str(video), "--checkpoint", str(run / "best.safetensors"), "--json", "--top-k", "3",
                 "--plot", str(png)]) == 0
    [pred] = json.loads(capsys.readouterr().out)
    assert [t["label"] for t in pred["top_k"]] == [t["label"] for t in trained.predict(video, top_k=3)["top_k"]]
    probs = [t["probability"] for t in pred["top_k"]]
    assert len(probs) == 3 and probs == sorted(probs, reverse=True) and pred["segments"] == 2
    assert pred["multi_label"] == multi and png.stat().st_size > 1000
    if not multi:  # softmax: the top 3 of 4 classes hold most of the mass, all 4 sum to 1
        assert 0 < sum(probs) <= 1 + 1e-3
    assert main(["predict", str(video), "--checkpoint", str(run / "best.safetensors")]) == 0
    text = capsys.readouterr().out
    assert f"{probs[0]:.3f}" in text and pred["top_k"][0]["label"] in text


def test_predict_many_videos_into_a_results_file(runs, tmp_path, capsys):
    data, cache, run = runs("folder")
    out = tmp_path / "results.jsonl"
    assert main(["predict", str(data / "test"), "--checkpoint", str(run / "best.safetensors"), "--out", str(out),
                 "--no-progress"]) == 0
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(lines) == len(list((data / "test").rglob("*.mp4"))) and all(len(r["top_k"]) == 4 for r in lines)


def test_predict_reads_a_long_video_as_the_segments_spread_over_it(runs, tmp_path, capsys):
    """A 30-s video: T = 2 segments spread over it (frames at 7.5 s and 22.5 s), in bounded memory."""
    _, _, run = runs("folder")
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 255, (30 * 4, 32, 32, 3), dtype=np.uint8)
    audio = (0.1 * rng.standard_normal(30 * 16000)).astype(np.float32)
    video = write_video(tmp_path / "long.mp4", frames, 4, audio)
    trained = lavish.load(run / "best.safetensors")
    result = trained.predict(video, arrays=True)
    assert result["segments"] == 2 and result["duration"] == pytest.approx(30, abs=0.3)
    assert result["probabilities"].shape == (4,) and result["probabilities"].sum() == pytest.approx(1, abs=1e-5)


def test_window_seconds_labels_a_long_recording_in_parts(runs, tmp_path, capsys):
    """--window-seconds 10 on a 25-s video: windows of seconds 0-10, 10-20, 20-25, each the model on its one-second
    segments (checked against the whole-video decode), the video's labels their mean weighted by seconds."""
    from lavish.media.decode import decode_clip

    _, _, run = runs("folder")
    rng = np.random.default_rng(1)
    video = write_video(tmp_path / "long.mp4", rng.integers(0, 255, (25 * 4, 32, 32, 3), dtype=np.uint8), 4,
                        (0.1 * rng.standard_normal(25 * 16000)).astype(np.float32))
    trained = lavish.load(run / "best.safetensors")
    result = trained.predict(video, window_seconds=10, arrays=True, top_k=2)
    assert [(w["start"], w["end"]) for w in result["windows"]] == [(0, 10), (10, 20), (20, 25)]
    clip = decode_clip(video, num_segments=None, frame_size=tuple(trained.meta["frame_size"]),
                       frontend=trained.meta["frontend"])
    audio, frames = torch.from_numpy(clip.spectrograms), torch.from_numpy(clip.frames)
    model = trained.model
    with torch.no_grad():
        expected = np.stack([model.probabilities(model(audio[None, a:b], normalize_frames(frames[None, a:b])))[0]
                             for a, b in ((0, 10), (10, 20), (20, 25))])
    np.testing.assert_allclose(result["window_probabilities"], expected, atol=1e-5)
    np.testing.assert_allclose(result["probabilities"], (expected * [[10], [10], [5]]).sum(0) / 25, atol=1e-5)
    assert [len(w["top_k"]) for w in result["windows"]] == [2, 2, 2] and result["segments"] == 25
    assert main(["predict", str(video), "--checkpoint", str(run / "best.safetensors"), "--window-seconds", "10"]) == 0
    assert "20-25 s" in capsys.readouterr().out
    assert main(["predict", str(video), "--checkpoint", str(run / "best.safetensors"), "--window-seconds", "0"]) == 2
    assert "window_seconds=0 is not valid" in capsys.readouterr().err


def test_info_counts_the_head(capsys):
    assert main(["info", "--task", "classify", "--backbone", MICRO, "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["task"] == "classify" and info["head_params"] > 0
    assert info["trainable_params"] == info["adapter_params"] + info["head_params"] + info.get("norm_params", 0)
    f = 2 * 96  # [visual, audio] of the micro ViT
    assert info["head_params"] == 2 * f + (f + 1) * 2  # LayerNorm + Linear over the 2 classes info assumes
    root = Path(__file__).resolve().parents[2]
    assert main(["info", "--task", "classify", "--config", str(root / "configs" / "classify" / "custom_folder.yaml"),
                 "--backbone", MICRO, "--json"]) == 0
    mlp = json.loads(capsys.readouterr().out)["head_params"]
    assert mlp == 2 * f + (f * 512 + 512) + (512 * 2 + 2)  # LayerNorm, Linear(F, 512), Linear(512, 2)


# ------------------------------------------------------------------------------------------------ bad input
def _clip(path, seconds: float, *, audio: bool = True, seed: int = 0):
    rng = np.random.default_rng(seed)
    frames = rng.integers(0, 255, (max(1, int(seconds * 8)), 32, 32, 3), dtype=np.uint8)
    sound = (0.1 * rng.standard_normal(int(seconds * 16000))).astype(np.float32) if audio else None
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_video(path, frames, 8, sound)


def test_bad_rows_and_bad_clips_are_one_line_each_and_the_rest_is_prepared(tmp_path, capsys):
    root = tmp_path / "set"
    for i in range(4):
        _clip(root / "clips" / f"dog{i}.mp4", 2, seed=i)
        _clip(root / "clips" / f"cat{i}.mp4", 2, seed=10 + i)
    _clip(root / "clips" / "silent.mp4", 2, audio=False)
    _clip(root / "clips" / "short.mp4", 0.5)
    (root / "clips" / "text.mp4").write_text("not a video")
    rows = ["path,label,split", *(f"clips/dog{i}.mp4,dog,{s}" for i, s in enumerate(["train", "train", "val", "test"])),
            *(f"clips/cat{i}.mp4,cat,{s}" for i, s in enumerate(["train", "train", "val", "test"])),
            "clips/silent.mp4,dog,train", "clips/short.mp4,cat,train", "clips/text.mp4,cat,train",
            "clips/missing.mp4,cat,train",
            "clips/dog0.mp4,cat,train",          # line 14: the same file again
            "clips/dog1.mp4,,train",             # line 15: no label
            "clips/cat1.mp4,cat,holdout"]        # line 16: not a split
    (root / "labels.csv").write_text("\n".join(rows) + "\n")
    cache = tmp_path / "cache"
    code = main(["prepare", "classify", "--root", str(root), "--out", str(cache), "--backbone", MICRO,
                 "--segments", "2", "--no-progress"])
    out, err = capsys.readouterr()
    assert code == 0, err
    csv_path = root / "labels.csv"
    left_out = [line for line in out.splitlines() if line.startswith("left out ")]
    assert [line.split(": ", 1)[0] for line in left_out] == [f"left out {csv_path}:{n}" for n in (14, 15, 16)]
    assert "duplicate" in left_out[0] and "no label" in left_out[1] and "'holdout'" in left_out[2]
    failed = dict(line.split("\t")[:3:2] for line in (cache / "failed.tsv").read_text().splitlines()[1:])
    assert set(failed) == {"clips__short", "clips__text", "clips__missing"}
    assert "shorter than 1 s" in failed["clips__short"] and failed["clips__missing"] == "file not found"
    assert f"{root / 'clips' / 'silent.mp4'}: no audio stream; its audio images are silence" in out
    assert "Traceback" not in err and "Warning" not in err
    rejected = (cache / "rejected.tsv").read_text().splitlines()
    assert rejected[0] == "where\treason" and len(rejected) == 4
    manifest = json.loads((cache / "manifest.json").read_text())
    assert manifest["num_items"] == 9 and manifest["classes"] == ["cat", "dog"]
    items = json.loads((cache / "videos.json").read_text())
    assert [i["has_audio"] for i in items if i["video_id"] == "clips__silent"] == [False]


@pytest.mark.parametrize("make, message", [
    (lambda root: (root / "dog").mkdir(parents=True), "no clip"),
    (lambda root: (root.mkdir(parents=True), (root / "labels.csv").write_text("path,tag\nx.mp4,dog\n")), "header"),
    (lambda root: (root.mkdir(parents=True), (root / "vggsound.csv").write_text("")), "vggsound.csv"),
])
def test_a_set_that_cannot_be_read_is_one_line_and_nothing_is_written(make, message, tmp_path, capsys):
    root, cache = tmp_path / "set", tmp_path / "cache"
    make(root)
    code = main(["prepare", "classify", "--root", str(root), "--out", str(cache), "--backbone", MICRO,
                 "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: ") and err.count("\n") == 1 and message in err, err
    assert not cache.exists()


def test_a_multi_label_set_whose_validation_scores_no_class_is_refused_before_training(tmp_path, capsys):
    data = make_synthetic_classify(tmp_path / "data", layout="audioset", num_videos=8, num_classes=4,
                                   duration_s=2.0, size=32, seed=2, progress=False)
    cache = tmp_path / "cache"
    assert main(["prepare", "classify", "--root", str(data), "--out", str(cache), "--backbone", MICRO,
                 "--segments", "1", "--no-progress"]) == 0  # one validation clip: every class is all 0 or all 1
    capsys.readouterr()
    code = main(["train", "classify", "--data", str(cache), "--out", str(tmp_path / "run"), "--backbone", MICRO,
                 "--no-pretrained", "--epochs", "1", "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and "no class has both a positive and a negative clip" in err and err.count("\n") == 1


def test_options_that_do_not_apply_are_refused(runs, tmp_path, capsys):
    data, cache, run = runs("folder")
    code = main(["prepare", "classify", "--root", str(data), "--out", str(tmp_path / "c"), "--backbone", MICRO,
                 "--video-dir", str(data), "--no-progress"])
    assert code == 2 and "video" in capsys.readouterr().err
    code = main(["train", "classify", "--data", str(cache), "--out", str(tmp_path / "r"), "--backbone", MICRO,
                 "--no-pretrained", "--head-hidden", "64", "--no-progress"])
    assert code == 2 and "MLP head" in capsys.readouterr().err
    video = next(data.rglob("*.mp4"))
    code = main(["predict", str(video), "--checkpoint", str(run / "best.safetensors"), "--top-k", "0"])
    assert code != 0 and "top_k=0 is not valid" in capsys.readouterr().err


def test_demo_shows_audio_visual_above_both_single_streams(tmp_path, capsys):
    """`lavish demo classify` as a user runs it (its defaults): a class is an (object, sound) pair, so only the
    audio-visual model can tell all four apart."""
    out = tmp_path / "demo"
    assert main(["demo", "classify", "--out", str(out), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    rows = json.loads((out / "results.json").read_text())
    av, v, a = (rows[name]["test_top1"] for name in ("audio-visual (LAVISH)", "vision only", "audio only"))
    assert av > v and av > a, rows
    assert "lavish serve --checkpoint" in printed and (out / "top_k.png").stat().st_size > 1000


def test_every_command_docs_classify_md_shows_parses_with_the_real_parser():
    """The commands of docs/classify.md's blocks use flags and choices that exist (they run end to end above)."""
    import re
    import shlex

    from lavish.cli.main import build_parser

    text = (Path(__file__).resolve().parents[2] / "docs" / "classify.md").read_text()
    commands = [line.split("#")[0].strip() for block in re.findall(r"```\n(.*?)```", text, flags=re.S)
                for line in block.splitlines() if line.startswith("lavish ")]
    assert len(commands) >= 10
    parser = build_parser()
    for command in commands:
        args = parser.parse_args(shlex.split(command.replace("[", "").replace("]", ""))[1:])  # [--json]: optional
        assert args.func is not None, command
