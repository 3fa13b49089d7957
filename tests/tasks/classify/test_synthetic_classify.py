"""The synthetic classify sets: the files of each layout, and that pixels and sound are what the labels say.

Everything is measured from the written files (csv module, decoded frames, an FFT of the decoded audio), so a test
fails if the generator draws the wrong object, plays the wrong chord or writes a row that does not match a clip.
"""

from __future__ import annotations

import csv
import math
import re
from collections import Counter, defaultdict

import numpy as np
import pytest

from lavish.data.synthetic import CLASSES, ID_ALPHABET
from lavish.errors import ConfigError
from lavish.media.decode import decode_clip, probe, read_audio
from lavish.tasks.classify.synthetic import (GRID, LAYOUTS, OBJECT_NAMES, SOUNDS, class_names, class_pairs,
                                             make_synthetic_classify, synthetic_plan)

SIZE, DURATION = 32, 2.0
SPLITS = ("train", "val", "test")
ARGS = {  # layout -> (num_classes, num_videos): a few tiny clips each
    "folder": (4, 12),
    "csv": (3, 9),
    "vggsound": (3, 8),
    "audioset": (4, 10),
}
SEGMENTS_ROW = re.compile(r'[A-Za-z0-9_-]{11}, \d+\.\d{3}, \d+\.\d{3}, "/m/syn\d+(,/m/syn\d+)?"')


def _make(root, layout, seed=3):
    num_classes, num_videos = ARGS[layout]
    return make_synthetic_classify(root, layout=layout, num_videos=num_videos, num_classes=num_classes,
                                   duration_s=DURATION, size=SIZE, seed=seed, progress=False)


@pytest.fixture(scope="module")
def sets(tmp_path_factory):
    """layout -> root of a written set."""
    return {layout: _make(tmp_path_factory.mktemp(layout), layout) for layout in LAYOUTS}


def _files(root):
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


def _csv_rows(path):
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.reader(f))


def _seen_object(frames: np.ndarray) -> int | None:
    """Index into OBJECT_NAMES of the colour that covers the most pixels (None: no object colour anywhere)."""
    cover = [(np.abs(frames.astype(int) - np.array(c.colour)).max(axis=-1) < 40).mean() for c in CLASSES]
    return int(np.argmax(cover)) if max(cover) > 0.03 else None


def _heard_sound(wave: np.ndarray) -> int | None:
    """Index into SOUNDS of the loudest frequency when it stands far above the noise floor (None: no tone)."""
    wave = wave[len(wave) // 8 : -len(wave) // 8]
    spectrum = np.abs(np.fft.rfft(wave * np.hanning(wave.size)))
    hz = np.fft.rfftfreq(wave.size, 1 / 16000)
    peak = int(np.argmax(spectrum))
    if spectrum[peak] < 100 * np.median(spectrum):
        return None
    nearest = int(np.argmin([abs(hz[peak] - f) for f in SOUNDS]))
    assert abs(hz[peak] - SOUNDS[nearest]) < 3, f"a tone at {hz[peak]:.1f} Hz is no synthetic sound"
    return nearest


def _measure(path):
    clip = decode_clip(path, num_segments=4, frame_size=(SIZE, SIZE), frontend="micro")
    return _seen_object(clip.frames), _heard_sound(read_audio(path))


def test_class_grid_needs_both_streams():
    assert class_pairs(4) == [(0, 0), (1, 1), (0, 1), (1, 0)]
    for n in range(2, GRID**2 + 1):
        pairs = class_pairs(n)
        g = math.ceil(math.sqrt(n))
        assert len(set(pairs)) == n and all(o < g and s < g for o, s in pairs)
        per_object, per_sound = Counter(o for o, _ in pairs), Counter(s for _, s in pairs)
        assert len(per_object) == len(per_sound) == g  # vision-only and audio-only ceilings: g / n
        assert max(per_object.values()) - min(per_object.values()) <= 1
        assert max(per_sound.values()) - min(per_sound.values()) <= 1
        if n == 4 or n >= 6:
            assert min(per_object.values()) >= 2 and min(per_sound.values()) >= 2, n
    names = class_names("folder", GRID**2)
    assert names[:3] == ("Red square + 440 Hz", "Green circle + 880 Hz", "Blue triangle + 550 Hz")
    assert len(set(names)) == len(names) and all(re.fullmatch(r"[A-Za-z0-9 +]+", n) for n in names)
    assert class_names("audioset", 5) == ("Red square", "Green circle", "Blue triangle", "440 Hz chord",
                                          "880 Hz chord")


def test_plan_splits_per_class():
    clips = synthetic_plan("folder", num_videos=100, num_classes=4, seed=1)
    assert [c.labels for c in clips] == [(i % 4,) for i in range(100)]
    for c in range(4):
        count = Counter(clip.split for clip in clips if clip.labels == (c,))
        assert count == {"train": 15, "val": 5, "test": 5}
    clips = synthetic_plan("vggsound", num_videos=100, num_classes=4, seed=1)
    assert Counter(c.split for c in clips) == {"train": 80, "test": 20}
    lengths = {c.duration for c in clips}
    assert len(lengths) > 5 and all(3.0 <= d <= 5.0 and d * 8 == int(d * 8) for d in lengths)


def test_folder_layout(sets):
    root, names = sets["folder"], class_names("folder", 4)
    files = _files(root)
    assert len(files) == 12
    for split in SPLITS:  # 3 clips a class: one in each split
        folders = Counter(f.split("/")[1] for f in files if f.split("/")[0] == split)
        assert folders == {name: 1 for name in names}, split
    assert all(re.fullmatch(r"(train|val|test)/[^/]+/[A-Za-z0-9_-]{11}\.mp4", f) for f in files)


def test_csv_layout(sets):
    root, names = sets["csv"], class_names("csv", 3)
    rows = _csv_rows(root / "labels.csv")
    assert rows[0] == ["path", "label", "split"] and len(rows) == 1 + 9
    assert sorted(path for path, _, _ in rows[1:]) == [f for f in _files(root) if f != "labels.csv"]
    assert all(re.fullmatch(r"clips/[A-Za-z0-9_-]{11}\.mp4", path) for path, _, _ in rows[1:])
    assert Counter((label, split) for _, label, split in rows[1:]) == {(n, s): 1 for n in names for s in SPLITS}


def test_vggsound_layout(sets):
    root, names = sets["vggsound"], class_names("vggsound", 3)
    rows = _csv_rows(root / "vggsound.csv")
    assert len(rows) == 8 and all(len(row) == 4 for row in rows)  # no header
    for ytid, start, label, split in rows:
        assert len(ytid) == 11 and set(ytid) <= set(ID_ALPHABET) and re.fullmatch(r"\d+", start)
        assert (root / "video" / f"{ytid}_{int(start):06d}.mp4").is_file()
        assert label in names and split in ("train", "test")
    assert len(_files(root)) == 1 + 8
    for name in names:  # 3, 3 and 2 clips: two or one to train on, one to test on
        count = Counter(split for *_, label, split in rows if label == name)
        assert count["test"] == 1 and count["train"] >= 1


def test_audioset_layout_in_the_distributed_form(sets):
    root = sets["audioset"]
    lines = (root / "class_labels_indices.csv").read_text(encoding="utf-8").splitlines()
    assert lines[0] == "index,mid,display_name"
    assert lines[1] == '0,/m/syn0,"Red square"' and lines[3] == '2,/m/syn2,"440 Hz chord"'
    indices = _csv_rows(root / "class_labels_indices.csv")[1:]
    assert indices == [[str(k), f"/m/syn{k}", name] for k, name in enumerate(class_names("audioset", 4))]
    display = {mid: name for _, mid, name in indices}
    seen = {}
    for file in ("balanced_train_segments.csv", "eval_segments.csv"):
        lines = (root / file).read_text(encoding="utf-8").splitlines()
        assert [line[0] for line in lines[:3]] == ["#"] * 3 and lines[2] == \
            "# YTID, start_seconds, end_seconds, positive_labels"
        rows = list(csv.reader(lines[3:], skipinitialspace=True))
        assert all(SEGMENTS_ROW.fullmatch(line) for line in lines[3:]), file
        positives = [mid for row in rows for mid in row[3].split(",")]
        assert lines[1] == (f"# num_ytids={len(rows)}, num_segs={len(rows)}, num_unique_labels={len(set(positives))}"
                            f", num_positive_labels={len(positives)}")
        assert set(positives) == set(display)  # every class has positives in both files
        for ytid, start, end, labels in rows:
            path = root / f"{ytid}_{int(float(start)):06d}.mp4"
            assert probe(path).duration == pytest.approx(float(end) - float(start), abs=0.05)
            labels = [display[mid] for mid in labels.split(",")]
            assert 1 <= len(labels) <= 2 and sum(name in OBJECT_NAMES for name in labels) <= 1
            seen[path.name] = labels
    assert len(seen) == 10 and sorted(seen) == [f for f in _files(root) if f.endswith(".mp4")]
    assert Counter(len(labels) for labels in seen.values()).keys() == {1, 2}


@pytest.mark.parametrize("layout", LAYOUTS)
def test_clips_decode_with_frames_and_audio(sets, layout):
    videos = sorted(sets[layout].rglob("*.mp4"))
    durations = set()
    for path in videos:
        info = probe(path)
        assert info.has_video and info.has_audio and (info.width, info.height, info.fps) == (SIZE, SIZE, 8)
        assert 0.75 * DURATION - 0.05 <= info.duration <= 1.25 * DURATION + 0.05
        durations.add(round(info.duration * 8) / 8)
        clip = decode_clip(path, frame_size=(SIZE, SIZE), frontend="micro")  # one segment per second
        seconds = math.floor(info.duration + 0.1)
        assert clip.has_audio and clip.frames.shape == (seconds, SIZE, SIZE, 3)
        assert clip.spectrograms.shape == (seconds, 96, 64) and np.isfinite(clip.spectrograms).all()
    assert len(durations) >= 3  # lengths vary


def test_the_class_needs_both_streams(sets):
    """Folder layout: the colour names the object, the FFT peak the sound, and only the pair names the class."""
    root = sets["folder"]
    measured = defaultdict(set)
    moved = 0
    for path in sorted(root.rglob("*.mp4")):
        obj, sound = _measure(path)
        assert obj is not None and sound is not None, path
        name, freq = re.fullmatch(r"(.+) \+ (\d+) Hz", path.parent.name).groups()
        assert (OBJECT_NAMES[obj], SOUNDS[sound]) == (name, float(freq)), path
        measured[path.parent.name].add((obj, sound))
        frames = decode_clip(path, num_segments=2, frame_size=(SIZE, SIZE), frontend="micro").frames
        where = [np.argwhere(np.abs(f.astype(int) - CLASSES[obj].colour).max(-1) < 40).mean(0) for f in frames]
        moved += np.abs(where[1] - where[0]).max() >= 2
    assert moved >= 6  # the objects move
    assert all(len(pairs) == 1 for pairs in measured.values())  # every clip of a class: the same object and sound
    pairs = [next(iter(p)) for p in measured.values()]
    assert len(set(pairs)) == len(pairs) == 4
    by_object, by_sound = defaultdict(set), defaultdict(set)
    for obj, sound in pairs:
        by_object[obj].add(sound)
        by_sound[sound].add(obj)
    # the classes that share an object differ in sound, and the other way round: neither stream suffices
    assert all(len(sounds) == 2 for sounds in by_object.values()) and len(by_object) == 2
    assert all(len(objects) == 2 for objects in by_sound.values()) and len(by_sound) == 2


def test_audioset_clips_show_and_play_what_their_labels_say(sets):
    root = sets["audioset"]
    display = {mid: name for _, mid, name in _csv_rows(root / "class_labels_indices.csv")[1:]}
    kinds = Counter()
    for file in ("balanced_train_segments.csv", "eval_segments.csv"):
        for ytid, start, _, labels in csv.reader((root / file).read_text().splitlines()[3:], skipinitialspace=True):
            obj, sound = _measure(root / f"{ytid}_{int(float(start)):06d}.mp4")
            shown = {OBJECT_NAMES[obj]} if obj is not None else set()
            heard = {f"{SOUNDS[sound]:g} Hz chord"} if sound is not None else set()
            assert shown | heard == {display[mid] for mid in labels.split(",")}, ytid
            kinds[bool(shown), bool(heard)] += 1
    assert set(kinds) == {(True, True), (True, False), (False, True)}, kinds  # both, silent object, sound alone


def test_same_seed_same_set(sets, tmp_path):
    first = sets["csv"]
    again = _make(tmp_path / "again", "csv")
    assert (again / "labels.csv").read_bytes() == (first / "labels.csv").read_bytes()
    for path, _, _ in _csv_rows(first / "labels.csv")[1:]:
        assert (again / path).read_bytes() == (first / path).read_bytes(), path
    path = _csv_rows(first / "labels.csv")[1][0]
    frame = [decode_clip(r / path, num_segments=1, frame_size=(SIZE, SIZE), frontend="micro").frames[0]
             for r in (first, again)]
    np.testing.assert_array_equal(frame[0], frame[1])
    _make(again, "csv")  # the same call again over its own files: replaced, not refused
    other = _make(tmp_path / "other", "csv", seed=4)
    assert (other / "labels.csv").read_bytes() != (first / "labels.csv").read_bytes()


@pytest.mark.parametrize("kwargs, message", [
    ({"layout": "imagenet"}, "unknown synthetic classify layout 'imagenet'; known: folder, csv, vggsound, audioset"),
    ({"num_classes": 1}, "num_classes must be in 2..64 for the folder layout, got 1"),
    ({"num_classes": 65, "num_videos": 200}, "num_classes must be in 2..64 for the folder layout, got 65"),
    ({"layout": "audioset", "num_classes": 17, "num_videos": 40}, "must be in 2..16 for the audioset layout"),
    ({"num_classes": 4, "num_videos": 7}, "num_videos (7) must be at least 2 x num_classes (8)"),
    ({"duration_s": 1.0}, "duration_s must be in 1.5..600 seconds"),
    ({"duration_s": float("nan")}, "duration_s must be in 1.5..600 seconds"),
    ({"size": 30}, "size must be a multiple of 4 and >= 16, got 30"),
    ({"workers": 0}, "workers must be >= 1, got 0"),
])
def test_bad_arguments_are_refused_in_one_line(tmp_path, kwargs, message):
    with pytest.raises(ConfigError) as err:
        make_synthetic_classify(tmp_path / "set", **{"progress": False, **kwargs})
    assert message in str(err.value) and "\n" not in str(err.value)
    assert not (tmp_path / "set").exists()


def test_a_folder_with_other_files_is_refused(tmp_path):
    (tmp_path / "train" / "cats").mkdir(parents=True)
    (tmp_path / "train" / "cats" / "tom.mp4").write_bytes(b"not ours")
    with pytest.raises(ConfigError, match=r"holds train/cats/tom\.mp4, which this synthetic set would not write"):
        _make(tmp_path, "folder")
    assert _files(tmp_path) == ["train/cats/tom.mp4"]  # nothing written
