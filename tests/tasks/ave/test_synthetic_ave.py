"""The synthetic AVE dataset: layout, annotation files, and that pixels and sound follow the annotation."""

from __future__ import annotations

import numpy as np
import pytest

from lavish.tasks.ave.synthetic import CLASSES, HEADER, SYNTHETIC_CLASSES, make_synthetic_ave
from lavish.errors import ConfigError
from lavish.media.decode import decode_clip, probe, read_audio

NUM_CLASSES, NUM_VIDEOS, DURATION = 3, 9, 6


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return make_synthetic_ave(tmp_path_factory.mktemp("syn"), num_videos=NUM_VIDEOS, num_classes=NUM_CLASSES,
                              duration_s=DURATION, size=48, seed=3)


def _rows(path):
    lines = path.read_text(encoding="utf-8").splitlines()
    assert lines[0] == HEADER
    return [line.split("&") for line in lines[1:]]


def test_layout_and_annotation_files(dataset):
    rows = _rows(dataset / "Annotations.txt")
    assert len(rows) == NUM_VIDEOS
    for category, vid, quality, start, end in rows:
        assert category in SYNTHETIC_CLASSES[:NUM_CLASSES] and quality == "good"
        assert len(vid) == 11 and (dataset / "AVE" / f"{vid}.mp4").is_file()
        assert 0 <= int(start) and int(start) + 2 <= int(end) <= DURATION
    assert len({r[1] for r in rows}) == NUM_VIDEOS
    splits = {name: _rows(dataset / name) for name in ("trainSet.txt", "valSet.txt", "testSet.txt")}
    ids = [r[1] for rows_ in splits.values() for r in rows_]
    assert sorted(ids) == sorted(r[1] for r in rows)  # disjoint and complete
    assert all(row in rows for rows_ in splits.values() for row in rows_)
    for rows_ in splits.values():  # every class in every split
        assert {r[0] for r in rows_} == set(SYNTHETIC_CLASSES[:NUM_CLASSES])


def test_same_seed_same_dataset(dataset, tmp_path):
    again = make_synthetic_ave(tmp_path, num_videos=NUM_VIDEOS, num_classes=NUM_CLASSES, duration_s=DURATION,
                               size=48, seed=3, workers=2)
    assert (again / "Annotations.txt").read_text() == (dataset / "Annotations.txt").read_text()
    assert (again / "testSet.txt").read_text() == (dataset / "testSet.txt").read_text()
    videos = sorted((dataset / "AVE").glob("*.mp4"))  # byte-identical, one process or two worker processes
    assert len(videos) == NUM_VIDEOS
    for video in videos:
        assert (again / "AVE" / video.name).read_bytes() == video.read_bytes(), video.name


def _object_visible(frame: np.ndarray, colour) -> bool:
    close = np.abs(frame.astype(int) - np.array(colour)).max(axis=-1) < 40
    return close.mean() > 0.03


def _tone_energy(second: np.ndarray, freq: float) -> float:
    spectrum = np.abs(np.fft.rfft(second * np.hanning(second.size)))
    hz = np.fft.rfftfreq(second.size, 1 / 16000)
    return spectrum[np.abs(hz - freq) < 10].max() / np.median(spectrum)


def test_pixels_and_sound_follow_the_annotation(dataset):
    kinds = {"event": 0, "visible_silent": 0, "offscreen_sound": 0, "neither": 0}
    for category, vid, _, start, end in _rows(dataset / "Annotations.txt"):
        path = dataset / "AVE" / f"{vid}.mp4"
        info = probe(path)
        assert info.duration == pytest.approx(DURATION, abs=0.1) and (info.width, info.height) == (48, 48)
        cls = CLASSES[SYNTHETIC_CLASSES.index(category)]
        clip = decode_clip(path, num_segments=DURATION, frame_size=(48, 48), frontend="micro")
        wave = read_audio(path)
        for k in range(DURATION):
            visible = _object_visible(clip.frames[k], cls.colour)
            audible = _tone_energy(wave[int((k + 0.15) * 16000) : int((k + 0.85) * 16000)], cls.freq) > 50
            if int(start) <= k < int(end):
                assert visible and audible, (vid, k)
                kinds["event"] += 1
            else:
                assert not (visible and audible), (vid, k)
                kinds[{(True, False): "visible_silent", (False, True): "offscreen_sound", (False, False): "neither"}[
                    (visible, audible)]] += 1
    assert kinds["visible_silent"] > 0 and kinds["offscreen_sound"] > 0


def test_bad_arguments(tmp_path):
    with pytest.raises(ConfigError, match="num_classes"):
        make_synthetic_ave(tmp_path, num_classes=99)
    with pytest.raises(ConfigError, match="size"):
        make_synthetic_ave(tmp_path, size=30)
