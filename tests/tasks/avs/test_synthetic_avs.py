"""Synthetic AVSBench-S4 data: layout readable by read_avs, only the sounding object masked; prepare_avs on it,
with broken clips reported one line each while the rest is prepared, and a resumed run skipping done clips."""

from __future__ import annotations

import json
import wave

import numpy as np
from PIL import Image

from lavish.tasks.avs.layout import load_mask, read_avs
from lavish.tasks.avs.prepare import prepare_avs
from lavish.data.synthetic import CLASSES
from lavish.tasks.avs.synthetic import make_synthetic_avs, render_clip
from lavish.media.audio import get_frontend


def test_only_the_sounding_object_is_masked():
    rng = np.random.default_rng(0)
    frames, masks, audio = render_clip([0, 1], 1, 64, rng)
    assert frames.shape == (5, 64, 64, 3) and masks.shape == (5, 64, 64) and audio.shape == (80000,)
    for f, m in zip(frames, masks):
        assert m.any()
        assert (f[m] == CLASSES[1].colour).all()  # mask = the sounding object's pixels
        assert (f[~m] == CLASSES[0].colour).all(-1).sum() > 20  # the silent one is on screen, unmasked
    spectrum = np.abs(np.fft.rfft(audio))
    assert abs(np.argmax(spectrum) / 5.0 - CLASSES[1].freq) < 1  # its chord is what plays


def test_layout_and_prepare_with_broken_clips(tmp_path):
    root = make_synthetic_avs(tmp_path / "s4", num_videos=6, num_classes=2, size=32)
    records = read_avs(root, "s4")
    assert len(records) == 6 and {r.split for r in records} == {"train", "val", "test"}
    for r in records:
        assert r.annotated == ((0,) if r.split == "train" else (0, 1, 2, 3, 4))
        assert load_mask(r.masks[0], (32, 32)).any()
    # break three clips: missing mask, non-binary mask, 3-s wav
    evaluated = [r for r in records if r.split != "train"]
    evaluated[0].masks[2].unlink()
    Image.fromarray(np.arange(32 * 32, dtype=np.uint8).reshape(32, 32)).save(evaluated[1].masks[1])
    with wave.open(str(evaluated[2].audio), "wb") as w:
        w.setnchannels(1), w.setsampwidth(2), w.setframerate(16000)
        w.writeframes(np.zeros(48000, "<i2").tobytes())
    out = tmp_path / "cache"
    report = prepare_avs(root, out, frame_size=(64, 64), frontend=get_frontend("micro"), progress=False)
    assert report.prepared == 3 and len(report.failed) == 3
    reasons = dict(line.split("\t")[::2] for line in (out / "failed.tsv").read_text().splitlines()[1:])
    assert "missing file" in reasons[evaluated[0].name] and str(evaluated[0].masks[2]) in reasons[evaluated[0].name]
    assert "not binary" in reasons[evaluated[1].name] and evaluated[1].masks[1].name in reasons[evaluated[1].name]
    assert "3.00 s long" in reasons[evaluated[2].name] and evaluated[2].audio.name in reasons[evaluated[2].name]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["task"] == "avs" and manifest["num_items"] == 3
    assert json.loads((out / "avs.json").read_text()) == {"subset": "s4", "mask_size": [32, 32]}
    items = json.loads((out / "videos.json").read_text())
    labels = np.load(out / "labels.npy")
    for item, flags in zip(items, labels):
        masks = np.load(out / "masks" / f"{item['video_id']}.npy")
        assert masks.shape == (5, 32, 32) and set(np.unique(masks)) <= {0, 1}
        assert flags.tolist() == ([1, 0, 0, 0, 0] if item["split"] == "train" else [1] * 5)
        assert np.load(out / "frames" / f"{item['video_id']}.npy").shape == (5, 64, 64, 3)
        assert np.load(out / "audio" / f"{item['video_id']}.npy").shape == (5, 96, 64)
    again = prepare_avs(root, out, frame_size=(64, 64), frontend=get_frontend("micro"), progress=False)
    assert again.skipped == 3 and again.prepared == 0 and len(again.failed) == 3


def test_several_sounding_objects_are_all_masked_and_heard():
    rng = np.random.default_rng(1)
    frames, masks, audio = render_clip([0, 4, 2], [0, 2], 64, rng)  # chords 440/660 and 880/1320 Hz; 550 silent
    for f, m in zip(frames, masks):
        colours = {tuple(c) for c in f[m].tolist()}
        assert colours == {CLASSES[0].colour, CLASSES[2].colour}  # the union of the two sounding objects
        assert (f[~m] == CLASSES[4].colour).all(-1).sum() > 20  # the silent one stays unmasked
    spectrum = np.abs(np.fft.rfft(audio))
    freqs = np.fft.rfftfreq(audio.size, 1 / 16000)
    loud = {round(float(f)) for f in freqs[spectrum > 0.2 * spectrum.max()]}
    assert {round(CLASSES[0].freq), round(CLASSES[2].freq)} <= loud and round(CLASSES[4].freq) not in loud


def test_ms3_layout_and_prepare(tmp_path):
    root = make_synthetic_avs(tmp_path / "ms3", num_videos=9, num_classes=3, objects_per_clip=3, size=32,
                              subset="ms3")
    assert (root / "ms3_meta_data.csv").read_text().splitlines()[0] == "name,split"
    assert not (root / "s4_meta_data.csv").exists()
    records = read_avs(root, "ms3")
    assert len(records) == 9 and {r.split for r in records} == {"train", "val", "test"}
    sources = []
    for r in records:
        assert r.category == "" and r.annotated == (0, 1, 2, 3, 4)  # every frame of every split, train too
        assert r.frames[0] == root / "ms3_data" / "visual_frames" / r.name / f"{r.name}.mp4_1.png"
        assert r.masks[4] == root / "ms3_data" / "gt_masks" / r.split / r.name / f"{r.name}_5.png"
        assert r.audio == root / "ms3_data" / "audio_wav" / r.split / f"{r.name}.wav"
        frame = np.asarray(Image.open(r.frames[0]).convert("RGB"))
        mask = load_mask(r.masks[0], (32, 32))
        sources.append(len({tuple(c) for c in frame[mask].tolist()}))
    assert min(sources) >= 1 and max(sources) >= 2  # several sounding objects in some clips
    out = tmp_path / "cache"
    report = prepare_avs(root, out, frame_size=(64, 64), frontend=get_frontend("micro"), progress=False)
    assert report.prepared == 9 and not report.failed
    assert json.loads((out / "avs.json").read_text()) == {"subset": "ms3", "mask_size": [32, 32]}
    assert np.load(out / "labels.npy").tolist() == [[1] * 5] * 9
    assert json.loads((out / "manifest.json").read_text())["classes"] == []
