"""Prediction window by window (lavish.engine.predict): the same numbers as the whole-video computation it
replaced, events as time ranges, pages of a long timeline, and the folder runner's results file."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from lavish.engine.predict import (PAGE_SECONDS, Inputs, ResultsFile, expand_inputs, merge_events, predict_many,
                                   predict_video)
from lavish.engine.registry import get_task
from lavish.errors import ConfigError, DataError, WriteError
from lavish.media.decode import decode_clip
from lavish.media.frames import normalize_frames
from lavish.media.writer import write_generated_video, write_video

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "media"))
from media_gen import tone  # noqa: E402

MICRO = "lavish_vit_micro_patch8_64"
SWIN_MICRO = "lavish_swinv2_micro_window4_64"
META = {"frame_size": [64, 64], "frontend": "micro"}


def _video(path: Path, seconds: int, fps: int = 4, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)
    return write_generated_video(path, seconds, fps, lambda i: np.roll(base, 5 * i, axis=1),
                                 lambda s: tone(200 + 40 * (s % 7), 1.0, 16000))


def _model(task_name: str, backbone: str, **fields):
    torch.manual_seed(0)
    task = get_task(task_name)
    config = task.model_config_cls(backbone=backbone, **fields)
    return task, task.build_model(config, pretrained=False).eval()


def _chunks(n: int, size: int):
    return [(s, min(s + size, n)) for s in range(0, n, size)]


@torch.no_grad()
def test_ave_equals_the_whole_video_computation(tmp_path):
    """The computation predict did before (decode the whole clip, run 20-s chunks) gives the same labels and
    probabilities as window by window, whatever the batch size."""
    task, model = _model("ave", MICRO, num_classes=3)
    meta = {**META, "classes": ["Bark", "Cat", "background"]}
    video = _video(tmp_path / "v.mp4", 47)
    clip = decode_clip(video, num_segments=None, frame_size=(64, 64), frontend="micro")
    frames, audio = torch.from_numpy(clip.frames), torch.from_numpy(clip.spectrograms)
    probs = torch.cat([model(audio[a:b][None], normalize_frames(frames[a:b])[None], None)[0].softmax(-1)
                       for a, b in _chunks(len(frames), 20)])
    best, idx = probs.max(-1)
    expected = [{"second": i, "label": meta["classes"][int(k)], "probability": round(float(p), 4)}
                for i, (k, p) in enumerate(zip(idx, best))]
    for batch_size in (1, 3):
        res = predict_video(task, model, meta, video, batch_size=batch_size, arrays=True)
        assert res["seconds"] == expected
        np.testing.assert_allclose(res["probabilities"], probs.numpy(), atol=1e-6)
        np.testing.assert_array_equal(res["frames"], clip.frames)
        assert res["duration"] == clip.duration and res["has_audio"]
    # events: runs of one label other than background, merged across windows
    labels = [s["label"] for s in expected]
    events = res["events"]
    assert sum(e["end"] - e["start"] for e in events) == sum(lab != "background" for lab in labels)
    for e in events:
        run = labels[int(e["start"]):int(e["end"])]
        assert set(run) == {e["label"]}
        assert e["probability"] == pytest.approx(np.mean([s["probability"] for s in
                                                           expected[int(e["start"]):int(e["end"])]]), abs=1e-4)


@torch.no_grad()
def test_avvp_equals_the_whole_video_computation(tmp_path):
    from lavish.tasks.avvp.metrics import clip_predictions, extract_events

    task, model = _model("avvp", MICRO, num_classes=4, han_dim=32, han_ff_dim=32)
    meta = {**META, "classes": ["Speech", "Dog", "Car", "Music"]}
    video = _video(tmp_path / "v.mp4", 33, seed=1)
    clip = decode_clip(video, num_segments=None, frame_size=(64, 64), frontend="micro")
    frames, audio = torch.from_numpy(clip.frames), torch.from_numpy(clip.spectrograms)
    heard, seen, probs_a = [], [], []
    for a, b in _chunks(len(frames), 10):
        out = model(audio[a:b][None], normalize_frames(frames[a:b])[None])
        h, v = clip_predictions(out.audio_prob[0], out.visual_prob[0], out.global_prob[0])
        heard.append(h), seen.append(v), probs_a.append(out.audio_prob[0].numpy())
    heard, seen = np.concatenate(heard).astype(bool), np.concatenate(seen).astype(bool)
    res = predict_video(task, model, meta, video, batch_size=2, arrays=True)
    assert [s["heard"] for s in res["seconds"]] == [[meta["classes"][k] for k in np.flatnonzero(r)] for r in heard]
    assert [s["seen"] for s in res["seconds"]] == [[meta["classes"][k] for k in np.flatnonzero(r)] for r in seen]
    np.testing.assert_allclose(res["audio_probabilities"], np.concatenate(probs_a), atol=1e-6)
    assert [w["start"] for w in res["windows"]] == [0, 10, 20, 30]
    expected = [(meta["classes"][k], m, a, b) for m, grid in (("audio", heard), ("visual", seen))
                for k in range(4) for a, b in extract_events(grid[:, k])]
    assert [(e["label"], e["modality"], e["onset"], e["offset"]) for e in res["events"]] == expected
    for e in res["events"]:
        assert e["start"] == e["onset"] and e["end"] == min(e["offset"], res["duration"])


@torch.no_grad()
def test_avs_equals_the_whole_video_computation(tmp_path):
    task, model = _model("avs", SWIN_MICRO, mask_size=(16, 16), decoder_channels=16)
    video = _video(tmp_path / "clip.mp4", 12, seed=2)
    clip = decode_clip(video, num_segments=None, frame_size=(64, 64), frontend="micro")
    frames, audio = torch.from_numpy(clip.frames), torch.from_numpy(clip.spectrograms)
    masks = torch.cat([torch.sigmoid(model(audio[a:b][None], normalize_frames(frames[a:b])[None])[0])
                       for a, b in _chunks(len(frames), 5)]) > 0.5
    out = tmp_path / "masks"
    res = predict_video(task, model, META, video, out=out, arrays=True)
    np.testing.assert_array_equal(res["mask_array"], masks.numpy())
    assert res["coverage"] == [round(float(m.float().mean()), 4) for m in masks]
    assert res["masks"] == [str(out / f"clip_{k}.png") for k in range(1, 13)]
    assert Path(res["sheet"]).name == "clip_sheet.png" and "sheets" not in res


def test_merge_events_by_hand():
    labels = ["bg", "a", "a", "b", "bg", "a", "a", "a"]
    probs = [0.9, 0.5, 0.7, 0.6, 0.8, 0.2, 0.4, 0.6]
    assert merge_events(labels, probs, 7.5, skip="bg") == [
        {"label": "a", "start": 1.0, "end": 2.0 + 1, "probability": 0.6},
        {"label": "b", "start": 3.0, "end": 4.0, "probability": 0.6},
        {"label": "a", "start": 5.0, "end": 7.5, "probability": 0.4},  # cut to the duration
    ]
    assert [e["start"] for e in merge_events(labels, probs, 8, skip="bg", min_duration=2)] == [1.0, 5.0]
    assert merge_events([], [], 0.0) == []


@torch.no_grad()
def test_a_long_timeline_is_drawn_a_page_a_minute(tmp_path):
    task, model = _model("ave", MICRO, num_classes=2)
    video = _video(tmp_path / "long.mp4", 2 * PAGE_SECONDS + 5, fps=1)
    res = predict_video(task, model, {**META, "classes": ["Cat", "background"]}, video, plot=tmp_path / "t.png")
    assert res["plots"] == [str(tmp_path / f"t-{k:03d}.png") for k in (1, 2, 3)] and res["plot"] == res["plots"][0]
    for page in res["plots"]:
        assert Path(page).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not (tmp_path / "t.png").exists()


def test_expand_inputs(tmp_path):
    folder = tmp_path / "videos"
    (folder / "sub").mkdir(parents=True)
    for name in ("b.mp4", "a.MKV", "sub/c.webm", "notes.txt", "sub/cover.jpg"):
        (folder / name).write_bytes(b"x")
    listing = tmp_path / "list.txt"
    listing.write_text("# my videos\nvideos/b.mp4\n\nelsewhere/d.avi\n")
    got = expand_inputs([str(folder), f"@{listing}", str(tmp_path / "videos" / "*.mp4")])
    assert got.videos == [str(folder / "a.MKV"), str(folder / "b.mp4"), str(folder / "sub" / "c.webm"),
                          str(tmp_path / "elsewhere" / "d.avi")]
    assert [Path(p).name for p, _ in got.skipped] == ["notes.txt", "cover.jpg"]
    assert all("not a video" in reason for _, reason in got.skipped)
    with pytest.raises(ConfigError, match="no file matches"):
        expand_inputs([str(tmp_path / "*.mov")])
    with pytest.raises(ConfigError, match="missing.txt"):
        expand_inputs([f"@{tmp_path / 'missing.txt'}"])


@pytest.fixture()
def checkpoint(tmp_path) -> Path:
    path = tmp_path / "model.safetensors"
    path.write_bytes(b"pretend adapter bytes")
    return path


def test_results_file_refusals(tmp_path, checkpoint):
    out = tmp_path / "r.jsonl"
    results = ResultsFile(out, checkpoint=checkpoint, resume=False)
    results.append({"video": "a.mp4", "x": np.float32(0.5), "y": np.arange(2)})
    assert json.loads(out.read_text()) == {"video": "a.mp4", "x": 0.5, "y": [0, 1]}
    with pytest.raises(ConfigError, match="resume"):
        ResultsFile(out, checkpoint=checkpoint, resume=False)
    other = tmp_path / "other.safetensors"
    other.write_bytes(b"another model")
    with pytest.raises(ConfigError, match="another checkpoint"):
        ResultsFile(out, checkpoint=other, resume=True)
    # a line cut by a crash is dropped on resume; the whole ones count as done
    with open(out, "ab") as f:
        f.write(b'{"video": "b.mp4", "secon')
    resumed = ResultsFile(out, checkpoint=checkpoint, resume=True)
    assert resumed.done == {"a.mp4"} and out.read_text().count("\n") == 1
    out.write_text("not json\n")
    with pytest.raises(DataError, match="line 1"):
        ResultsFile(out, checkpoint=checkpoint, resume=True)


def test_a_failed_write_keeps_the_lines_before(tmp_path, checkpoint):
    """A full disk (here: the process may not grow the file further) fails one append; the file is cut back to
    its whole lines."""
    import resource

    out = tmp_path / "r.jsonl"
    results = ResultsFile(out, checkpoint=checkpoint, resume=False)
    results.append({"video": "a.mp4"})
    size = out.stat().st_size
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (size + 10, hard))
    try:
        with pytest.raises(WriteError, match="r.jsonl"):
            results.append({"video": "b.mp4", "padding": "x" * 100})
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    assert out.read_text() == '{"video": "a.mp4"}\n'


@torch.no_grad()
@pytest.mark.parametrize("workers", [0, 2])
def test_predict_many(tmp_path, checkpoint, workers):
    task, model = _model("ave", MICRO, num_classes=2)
    meta = {**META, "classes": ["Cat", "background"]}
    videos = [_video(tmp_path / f"v{k}.mp4", 6 + 3 * k, seed=k) for k in range(4)]
    bad = tmp_path / "bad.mp4"
    bad.write_text("not a video")
    stops = write_video(tmp_path / "stops.mp4", np.zeros((120, 48, 64, 3), np.uint8), 4,
                        tone(300, 50.0, 16000))  # pictures for 30 s, sound for 50 s: the first 20-s window works
    inputs = Inputs([str(v) for v in (videos[0], bad, videos[1], stops, videos[2], videos[3])],
                    [("notes.txt", "not a video file (extension .txt): skipped")])
    out = tmp_path / "r.jsonl"
    summary = predict_many(task, model, meta, inputs, ResultsFile(out, checkpoint=checkpoint, resume=False),
                           workers=workers, progress=False)
    lines = {json.loads(line)["video"]: json.loads(line) for line in out.read_text().splitlines()}
    assert set(lines) == {str(v) for v in videos} | {str(stops)}
    for v in videos:
        assert lines[str(v)] == json.loads(json.dumps(predict_video(task, model, meta, v)))
    assert "truncated" in lines[str(stops)]["error"] and len(lines[str(stops)]["seconds"]) == 20
    failed = [line.split("\t") for line in (tmp_path / "failed.tsv").read_text().splitlines()]
    assert sorted(p for p, _ in failed) == sorted(["notes.txt", str(bad), str(stops)])
    assert summary.done == 4 and len(summary.failed) == 2 and not summary.ok and summary.skipped
