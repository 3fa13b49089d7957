"""AVVP end to end through the real command line, on the Task interface: a generated dataset in LLP's layout ->
`lavish prepare avvp` -> `lavish train avvp` (micro ViT, 2 epochs) -> `lavish eval avvp` (the benchmark's ten
numbers, checked against the metrics fed directly by the loaded model) -> `lavish predict` (per second heard / seen,
windows of 10 s on a longer video, timeline plot) -> `lavish info --task avvp`; refusals in one line."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import lavish
from lavish.cli.main import main
from lavish.tasks.avvp.dataset import AvvpCacheDataset
from lavish.tasks.avvp.layout import CLASSES
from lavish.tasks.avvp.synthetic import make_synthetic_llp
from lavish.media.frames import normalize_frames
from lavish.media.writer import write_video
from lavish.tasks.avvp.metrics import AvvpF1
from lavish.tasks.avvp.metrics import METRIC_KEYS, AvvpMetrics

MICRO = "lavish_vit_micro_patch8_64"


@pytest.fixture(scope="module")
def avvp_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("avvp")
    data = make_synthetic_llp(root / "llp", num_train=9, num_val=3, num_test=3, num_classes=3, seed=3)
    cache, run = root / "cache", root / "run"
    assert main(["prepare", "avvp", "--root", str(data), "--out", str(cache), "--backbone", MICRO,
                 "--no-progress"]) == 0
    assert main(["train", "avvp", "--data", str(cache), "--out", str(run), "--backbone", MICRO, "--no-pretrained",
                 "--epochs", "2", "--batch-size", "3", "--lr", "1e-3", "--lr-head", "1e-3", "--no-progress"]) == 0
    return data, cache, run


def test_train_writes_the_benchmark_numbers(avvp_run):
    _, _, run = avvp_run
    results = json.loads((run / "results.json").read_text())
    assert set(results) == {"best_epoch", "best_val_seg_type_av", "test", "epochs_run", "seconds"}
    assert results["epochs_run"] == 2 and 0 <= results["best_val_seg_type_av"] <= 100
    assert set(METRIC_KEYS) <= set(results["test"]) and results["test"]["clips"] == 3
    assert lavish.load(run / "best.safetensors").task.name == "avvp"


def test_eval_equals_the_metrics_of_the_loaded_model(avvp_run, capsys):
    _, cache, run = avvp_run
    capsys.readouterr()
    assert main(["eval", "avvp", "--checkpoint", str(run / "best.safetensors"), "--data", str(cache),
                 "--split", "test", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    # the same numbers from the model loaded through the Python API and the metrics fed by hand
    model = lavish.load(run / "best.safetensors")
    ds = AvvpCacheDataset(cache, "test")
    metrics = AvvpMetrics()
    with torch.no_grad():
        for i in range(len(ds)):
            item = ds[i]
            out = model.model(item["audio"][None], normalize_frames(item["frames"][None]))
            metrics.update(out.audio_prob, out.visual_prob, out.global_prob, item["audio_labels"][None],
                           item["visual_labels"][None])
    expected = metrics.compute()
    assert result["clips"] == 3 and result["split"] == "test"
    for key in METRIC_KEYS:
        assert result[key] == pytest.approx(expected[key], abs=1e-9)
    assert main(["eval", "avvp", "--checkpoint", str(run / "best.safetensors"), "--data", str(cache),
                 "--split", "test"]) == 0
    table = capsys.readouterr().out
    assert "Type@AV" in table and "segment" in table and "event" in table


def test_validation_metric_sums_are_exact_over_shards(avvp_run):
    """What DDP's reduction does (sum of the states) on two shards gives the numbers of the whole split."""
    _, cache, run = avvp_run
    model = lavish.load(run / "best.safetensors").model
    ds = AvvpCacheDataset(cache, "test")
    batches = []
    with torch.no_grad():
        for i in range(len(ds)):
            item = ds[i]
            out = model(item["audio"][None], normalize_frames(item["frames"][None]))
            batches.append((out, {k: item[k][None] for k in ("audio_labels", "visual_labels")}))
    whole, first, second = AvvpF1("seg_type_av"), AvvpF1("seg_type_av"), AvvpF1("seg_type_av")
    for j, (out, batch) in enumerate(batches):
        whole.update(out, batch)
        (first if j < 2 else second).update(out, batch)
    first.total += second.total
    first.clips += second.clips
    reference = AvvpMetrics()
    for out, batch in batches:
        reference.update(out.audio_prob, out.visual_prob, out.global_prob, batch["audio_labels"],
                         batch["visual_labels"])
    assert float(whole.compute()) == pytest.approx(reference.compute()["seg_type_av"], abs=1e-4)
    assert float(first.compute()) == float(whole.compute())
    # train clips (weak labels only, -1) are not counted
    weak = {k: torch.full_like(v, -1) for k, v in batches[0][1].items()}
    before = whole.clips.clone()
    whole.update(batches[0][0], weak)
    assert whole.clips == before


def test_predict_parses_each_second_and_windows_a_long_video(avvp_run, tmp_path, capsys):
    data, cache, run = avvp_run
    ds = AvvpCacheDataset(cache, "test")
    clip = data / "LLP_dataset" / "video" / f"{ds.items[ds.indices[0]]['video_id']}.mp4"
    capsys.readouterr()
    assert main(["predict", str(clip), "--checkpoint", str(run / "best.safetensors"), "--json", "--plot",
                 str(tmp_path / "t.png")]) == 0
    [res] = json.loads(capsys.readouterr().out)
    assert [s["second"] for s in res["seconds"]] == list(range(10)) and len(res["windows"]) == 1
    assert all(set(s["heard"]) | set(s["seen"]) <= set(CLASSES) for s in res["seconds"])
    for event in res["events"]:  # events are the runs of the per-second lists
        key = "heard" if event["modality"] == "audio" else "seen"
        inside = [event["label"] in res["seconds"][t][key] for t in range(event["onset"], event["offset"])]
        assert all(inside) and event["offset"] - event["onset"] >= 1
    assert (tmp_path / "t.png").stat().st_size > 1000
    # a 23-s video: three windows (10, 10, 3 s), one entry per second
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 255, (23 * 4, 64, 64, 3), dtype=np.uint8)
    audio = (0.1 * rng.standard_normal(23 * 16000)).astype(np.float32)
    long = tmp_path / "long video.mp4"
    write_video(long, frames, fps=4, audio=audio, sample_rate=16000)
    assert main(["predict", str(long), "--checkpoint", str(run / "best.safetensors"), "--json"]) == 0
    [res] = json.loads(capsys.readouterr().out)
    assert len(res["seconds"]) == 23 and [w["start"] for w in res["windows"]] == [0, 10, 20]
    assert main(["predict", str(long), "--checkpoint", str(run / "best.safetensors")]) == 0
    assert "heard:" in capsys.readouterr().out
    # the Python API gives the same parse, plus the per-second probabilities behind it
    api = lavish.load(run / "best.safetensors").predict(long, arrays=True)
    assert api["seconds"] == res["seconds"] and api["audio_probabilities"].shape == (23, len(CLASSES))
    heard = (api["audio_probabilities"] >= 0.5)
    assert all(set(s["heard"]) <= {CLASSES[k] for k in np.flatnonzero(heard[s["second"]])} for s in res["seconds"])


def test_refusals_are_one_line(avvp_run, tmp_path, capsys):
    data, cache, run = avvp_run
    capsys.readouterr()
    assert main(["eval", "avvp", "--checkpoint", str(run / "best.safetensors"), "--data", str(cache),
                 "--split", "train"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "video-level labels only" in err[0]
    # an AVE-only option is refused for AVVP (argparse: not an option of `train avvp`)
    with pytest.raises(SystemExit):
        main(["train", "avvp", "--data", str(cache), "--out", str(tmp_path / "r"), "--extra-audio-features"])
    assert "unrecognized arguments: --extra-audio-features" in capsys.readouterr().err
    # a dataset folder without the csv files
    assert main(["prepare", "avvp", "--root", str(tmp_path), "--out", str(tmp_path / "c"), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "AVVP_train.csv" in err[0]


def test_info_counts_the_smaller_vision_only_model(capsys, tmp_path):
    assert main(["info", "--task", "avvp", "--backbone", MICRO]) == 0
    av = capsys.readouterr().out
    assert main(["info", "--task", "avvp", "--backbone", MICRO, "--modalities", "v"]) == 0
    v = capsys.readouterr().out

    def trainable(text: str) -> int:
        line = next(line for line in text.splitlines() if line.startswith("trainable params"))
        return int(line.split()[2].replace(",", ""))

    assert 0 < trainable(v) < trainable(av)
    # a HAN setting from a YAML file reaches the counted model: 2 layers add one HAN layer's parameters
    import yaml

    config = tmp_path / "han.yaml"
    config.write_text(yaml.safe_dump({"backbone": MICRO, "han_layers": 2}))
    assert main(["info", "--task", "avvp", "--config", str(config)]) == 0
    two = trainable(capsys.readouterr().out)
    d, ff = 512, 512
    one_layer = 2 * (4 * d * d + 4 * d) + (d * ff + ff + ff * d + d) + 2 * 2 * d  # two attentions, FFN, two LayerNorms
    assert two - trainable(av) == one_layer


def test_no_label_smoothing_reaches_the_model_config(avvp_run, tmp_path):
    _, cache, _ = avvp_run
    run = tmp_path / "hard"
    assert main(["train", "avvp", "--data", str(cache), "--out", str(run), "--backbone", MICRO, "--no-pretrained",
                 "--epochs", "1", "--batch-size", "3", "--no-label-smoothing", "--no-progress"]) == 0
    assert lavish.load(run / "best.safetensors").model.config.label_smoothing is False
