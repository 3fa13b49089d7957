from __future__ import annotations

import wave

import numpy as np
import pytest
from PIL import Image

from lavish.tasks.avs import layout as avs
from lavish.errors import DataError


def _wav(path, seconds):
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(16000 * seconds)) / 16000
    pcm = (0.3 * np.sin(2 * np.pi * 440 * t) * 32767).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(pcm.tobytes())


def _png(path, array):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def _mask(size=(24, 24)):
    m = np.zeros(size, np.uint8)
    m[4:12, 6:18] = 255
    return m


CLIPS = [("clipA", "0", "dog", "train"), ("clipB", "3", "guitar", "test")]


def make_s4(root, clips=CLIPS, seconds=5.0):
    data = root / "s4_data"
    rows = ["name,start_time,category,split"] + [",".join(c) for c in clips]
    root.mkdir(parents=True, exist_ok=True)
    (root / "s4_meta_data.csv").write_text("\n".join(rows) + "\n")
    rng = np.random.default_rng(0)
    for name, _, cat, split in clips:
        for k in range(1, 6):
            _png(data / "visual_frames" / split / cat / name / f"{name}_{k}.png",
                 rng.integers(0, 255, (24, 24, 3), dtype=np.uint8))
            if split != "train" or k == 1:
                _png(data / "gt_masks" / split / cat / name / f"{name}_{k}.png", _mask())
        _wav(data / "audio_wav" / split / cat / f"{name}.wav", seconds)
    return root


def test_s4_layout_records_and_annotated_frames(tmp_path):
    root = make_s4(tmp_path / "s4")
    recs = avs.read_avs(root, "s4")
    assert [(r.name, r.category, r.split, r.line) for r in recs] == [("clipA", "dog", "train", 2), ("clipB", "guitar", "test", 3)]
    assert recs[0].annotated == (0,) and recs[1].annotated == (0, 1, 2, 3, 4)
    assert recs[0].frames[4].name == "clipA_5.png" and recs[0].audio.name == "clipA.wav"
    for r in recs:
        avs.check_record(r)
    mask = avs.load_mask(recs[1].masks[2], (24, 24))
    assert mask.dtype == bool and mask.sum() == 8 * 12


def test_ms3_layout(tmp_path):
    root = tmp_path / "ms3"
    data = root / "ms3_data"
    root.mkdir()
    (root / "ms3_meta_data.csv").write_text("video_id,split\nmix1,val\n")
    for k in range(1, 6):
        _png(data / "visual_frames" / "mix1" / f"mix1.mp4_{k}.png", np.zeros((24, 24, 3), np.uint8))
        _png(data / "gt_masks" / "val" / "mix1" / f"mix1_{k}.png", _mask())
    _wav(data / "audio_wav" / "val" / "mix1.wav", 5.0)
    (rec,) = avs.read_avs(root, "ms3")
    assert rec.category == "" and rec.annotated == (0, 1, 2, 3, 4)
    avs.check_record(rec)


def test_missing_file_named_with_csv_line(tmp_path):
    root = make_s4(tmp_path / "s4")
    gone = root / "s4_data" / "visual_frames" / "test" / "guitar" / "clipB" / "clipB_4.png"
    gone.unlink()
    with pytest.raises(DataError, match=rf"s4_meta_data.csv:3: video 'clipB' \(test\): missing file {gone}"):
        avs.read_avs(root, "s4")
    _png(gone, np.zeros((24, 24, 3), np.uint8))
    gone = root / "s4_data" / "gt_masks" / "test" / "guitar" / "clipB" / "clipB_2.png"
    gone.unlink()
    with pytest.raises(DataError, match="missing file .*clipB_2.png"):
        avs.read_avs(root, "s4")


def test_bad_masks_and_short_audio(tmp_path):
    root = make_s4(tmp_path / "s4", clips=CLIPS[1:], seconds=4.0)
    (rec,) = avs.read_avs(root, "s4")
    with pytest.raises(DataError, match=r"clipB.wav: audio is 4.00 s long, needs at least 5 s"):
        avs.check_record(rec)
    _wav(rec.audio, 5.0)
    _png(rec.masks[3], _mask((20, 24)))
    with pytest.raises(DataError, match=r"clipB_4.png: mask is 24x20, its frame is 24x24"):
        avs.check_record(rec)
    grey = _mask()
    grey[0, 0] = 128
    _png(rec.masks[3], grey)
    with pytest.raises(DataError, match=r"clipB_4.png: mask is not binary \(values 0, 128, 255\)"):
        avs.check_record(rec)


def test_bad_csv(tmp_path):
    root = make_s4(tmp_path / "s4")
    (root / "s4_meta_data.csv").write_text("name,start_time,category,split\nclipA,0,dog,training\n")
    with pytest.raises(DataError, match=r"s4_meta_data.csv:2: split 'training'"):
        avs.read_avs(root, "s4")
    (root / "s4_meta_data.csv").write_text("name,start_time,split\nclipA,0,train\n")
    with pytest.raises(DataError, match=r"s4_meta_data.csv:1: header lacks column\(s\) category"):
        avs.read_avs(root, "s4")
    with pytest.raises(DataError, match="missing ms3_meta_data.csv"):
        avs.read_avs(root, "ms3")
