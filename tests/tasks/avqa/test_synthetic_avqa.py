"""The synthetic MUSIC-AVQA generator writes the official layout and record format, with answers that hold in
the media (real mp4 files decoded back); prepare_avqa turns it into a cache and reports bad inputs in one line."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from avqa_layout import make_avqa_layout
from lavish.tasks.avqa import layout as avqa
from lavish.tasks.avqa.prepare import discover_avqa, prepare_avqa
from lavish.data.synthetic import CLASSES
from lavish.tasks.avqa.synthetic import INSTRUMENTS, SLOTS
from lavish.errors import DataError
from lavish.media.audio import get_frontend
from lavish.media.decode import decode_clip, read_audio


@pytest.fixture(scope="module")
def layout(tmp_path_factory):
    return make_avqa_layout(tmp_path_factory.mktemp("avqa") / "data")


def test_official_record_format_and_splits(layout):
    raw = json.loads((layout / "avqa-train.json").read_text())
    assert set(raw[0]) == {"video_id", "question_id", "type", "question_content", "templ_values",
                           "question_deleted", "anser"}
    assert isinstance(raw[0]["type"], str) and isinstance(raw[0]["templ_values"], str)
    splits = {s: avqa.read_avqa_json(layout / f"avqa-{s}.json") for s in ("train", "val", "test")}
    videos = {s: {r.video_id for r in recs} for s, recs in splits.items()}
    assert not (videos["train"] & videos["val"]) and not (videos["train"] & videos["test"])
    assert sum(map(len, videos.values())) == 6
    every = [r for recs in splits.values() for r in recs]
    assert {r.major for r in every} == {"Audio", "Visual", "Audio-Visual"}
    for rec in every:  # placeholders and values agree, every question tokenises
        assert len(avqa.tokenize(rec)) >= 4
    jsons, media = discover_avqa(layout)
    assert set(jsons) == {"train", "val", "test"} and set(media) == {r.video_id for r in every}


def test_answers_hold_in_the_media(layout):
    every = [r for s in ("train", "val", "test") for r in avqa.read_avqa_json(layout / f"avqa-{s}.json")]
    checked = 0
    for rec in every:
        path = layout / "videos" / f"{rec.video_id}.mp4"
        if rec.category == "visual_location":  # the instrument's colour is in the answered third of the frame
            frames = decode_clip(path, num_segments=2, frame_size=(32, 32), frontend="micro").frames[0].astype(int)
            colour = np.array(CLASSES[INSTRUMENTS.index(rec.templ_values[0])].colour)
            hit = (np.abs(frames - colour).sum(-1) < 60)
            thirds = [hit[:, i * 32 // 3:(i + 1) * 32 // 3].sum() for i in range(3)]
            assert SLOTS[int(np.argmax(thirds))] == rec.answer
            checked += 1
        if rec.category == "audio_counting":  # number of chord fundamentals present at the end of the clip
            wave = read_audio(path)[-16000:]
            spec = np.abs(np.fft.rfft(wave))
            floor = 20 * np.median(spec)  # an instrument plays when its fundamental AND its fifth are present
            playing = sum(spec[int(c.freq)] > floor and spec[int(1.5 * c.freq)] > floor for c in CLASSES[:4])
            assert ["zero", "one", "two", "three"][playing] == rec.answer
            checked += 1
    assert checked >= 6


def test_prepare_leaves_out_missing_videos_in_one_line(layout, tmp_path):
    root = tmp_path / "data"
    shutil.copytree(layout, root)
    gone = sorted((root / "videos").glob("*.mp4"))[0]
    gone.unlink()
    spec = get_frontend("micro")
    report = prepare_avqa(root, tmp_path / "cache", frame_size=(64, 64), frontend=spec, progress=False)
    assert report.failed == {gone.stem: "file not found"}
    assert gone.stem in (tmp_path / "cache" / "failed.tsv").read_text()
    manifest = json.loads((tmp_path / "cache" / "manifest.json").read_text())
    assert manifest["task"] == "avqa" and manifest["num_items"] == 5
    questions = sum(len(json.loads((root / f"avqa-{s}.json").read_text())) for s in ("train", "val", "test"))
    missing = sum(r["video_id"] == gone.stem for s in ("train", "val", "test")
                  for r in json.loads((root / f"avqa-{s}.json").read_text()))
    assert report.items == questions - missing
    again = prepare_avqa(root, tmp_path / "cache", frame_size=(64, 64), frontend=spec, progress=False)
    assert again.skipped == 5 and again.prepared == 0  # resumable


def test_bad_questions_stop_prepare_naming_file_and_question(layout, tmp_path):
    root = tmp_path / "data"
    shutil.copytree(layout, root)
    path = root / "avqa-val.json"
    records = json.loads(path.read_text())
    records[0]["question_content"] = "Is the <Object> louder than the <Object>?"
    records[0]["templ_values"] = '["piano"]'
    path.write_text(json.dumps(records))
    with pytest.raises(DataError, match=r"avqa-val.json: question \d+: more placeholders than template values"):
        prepare_avqa(root, tmp_path / "cache", frame_size=(64, 64), frontend=get_frontend("micro"), progress=False)
    records[0]["question_content"] = "   "
    path.write_text(json.dumps(records))
    with pytest.raises(DataError, match="empty question"):
        prepare_avqa(root, tmp_path / "cache2", frame_size=(64, 64), frontend=get_frontend("micro"), progress=False)
    (root / "avqa-test.json").unlink()
    shutil.rmtree(root / "videos")
    with pytest.raises(DataError, match="missing avqa-test.json; videos/"):
        discover_avqa(root)
