"""The synthetic LLP dataset: layout and csv files, determinism, and that pixels and sound follow the eval rows."""

from __future__ import annotations

import numpy as np
import pytest

from lavish.tasks.avvp import layout as llp
from lavish.tasks.avvp.synthetic import KINDS, SIGNATURES, make_synthetic_llp, synthetic_plan
from lavish.errors import ConfigError
from lavish.media.decode import decode_clip, probe, read_audio

SIZE = (3, 3, 4)  # train, val, test
CLASSES = 3


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return make_synthetic_llp(tmp_path_factory.mktemp("syn"), num_train=SIZE[0], num_val=SIZE[1], num_test=SIZE[2],
                              num_classes=CLASSES, size=48, seed=5)


def test_layout_and_csv_files(dataset, reference_data):
    for file in (*llp.SPLIT_FILES.values(), *llp.EVAL_FILES):  # the real files' header lines
        real = (reference_data / "llp" / file).read_text().splitlines()[0]
        assert (dataset / file).read_text().splitlines()[0] == real
    layout = llp.discover_llp(dataset)
    assert layout.csv_dir == dataset and layout.video_dir == dataset / "LLP_dataset" / "video"
    ann = llp.read_llp(layout.csv_dir)
    assert [len(ann[s]) for s in llp.SPLITS] == list(SIZE)
    assert not ann.ignored and not ann.empty and ann.outside_video_labels == {"audio": 0, "visual": 0}
    for split in llp.SPLITS:
        for name in ann[split].filenames:
            assert layout.video_path(name).is_file() and len(name.split("_")[0]) >= 1
            start, end = (int(v) for v in name.rsplit("_", 2)[1:])
            assert end - start == 10
        assert ann[split].video_labels[:, CLASSES:].sum() == 0  # only the first classes, in the 25-class space
    for split in ("val", "test"):  # each weak label has its events, each event a weak label
        s = ann[split]
        heard_or_seen = np.maximum(s.audio.max(axis=1), s.visual.max(axis=1))
        np.testing.assert_array_equal(heard_or_seen, s.video_labels)


def test_three_kinds_of_events_in_every_split():
    plan = synthetic_plan(num_train=3, num_val=3, num_test=3, num_classes=4, seed=0)
    for clips in plan.values():
        assert [events[0].kind for _, events, _ in clips] == list(KINDS)
        for _, events, _ in clips:
            assert len({e.label for e in events}) == len(events) <= 2
            assert all(0 <= e.onset and e.onset + 2 <= e.offset <= 10 for e in events)
    kinds = [e.kind for clips in synthetic_plan(num_train=60, num_val=15, num_test=15, num_classes=4, seed=0).values()
             for _, events, _ in clips for e in events]
    assert all(kinds.count(k) >= 20 for k in KINDS) and any(len(ev) == 2 for _, ev, _ in plan["train"])


def test_same_seed_same_dataset(dataset, tmp_path):
    """Same csv files and byte-identical mp4 files, written by one process or by two worker processes (the demo's
    numbers repeat run to run only if its clips do: tests/media/test_media_writer.py)."""
    again = make_synthetic_llp(tmp_path, num_train=SIZE[0], num_val=SIZE[1], num_test=SIZE[2], num_classes=CLASSES,
                               size=48, seed=5, workers=2)
    for file in (*llp.SPLIT_FILES.values(), *llp.EVAL_FILES):
        assert (again / file).read_text() == (dataset / file).read_text()
    videos = sorted((dataset / "LLP_dataset" / "video").glob("*.mp4"))
    assert len(videos) == sum(SIZE)
    for video in videos:
        assert (again / "LLP_dataset" / "video" / video.name).read_bytes() == video.read_bytes(), video.name
    other = make_synthetic_llp(tmp_path / "other", num_train=1, num_val=1, num_test=1, num_classes=CLASSES,
                               size=48, seed=6)
    assert (other / "AVVP_val_pd.csv").read_text() != (dataset / "AVVP_val_pd.csv").read_text()


def _object_visible(frame: np.ndarray, colour) -> bool:
    close = np.abs(frame.astype(int) - np.array(colour)).max(axis=-1) < 40
    return close.mean() > 0.02


def _tone_energy(second: np.ndarray, freq: float) -> float:
    spectrum = np.abs(np.fft.rfft(second * np.hanning(second.size)))
    hz = np.fft.rfftfreq(second.size, 1 / 16000)
    return spectrum[np.abs(hz - freq) < 10].max() / np.median(spectrum)


def test_pixels_and_sound_follow_the_eval_rows(dataset):
    """Every second of every val/test clip: object k on screen iff a visual row covers it, tone k iff an audio row."""
    ann = llp.read_llp(dataset)
    counts = {"heard only": 0, "seen only": 0, "both": 0}
    for split in ("val", "test"):
        s = ann[split]
        for i, name in enumerate(s.filenames):
            path = dataset / "LLP_dataset" / "video" / f"{name}.mp4"
            info = probe(path)
            assert info.duration == pytest.approx(10, abs=0.1) and (info.width, info.height) == (48, 48)
            clip = decode_clip(path, num_segments=10, frame_size=(48, 48), frontend="micro")
            wave = read_audio(path)
            for k, sig in enumerate(SIGNATURES[:CLASSES]):
                for t in range(10):
                    seen = _object_visible(clip.frames[t], sig.colour)
                    heard = _tone_energy(wave[int((t + 0.15) * 16000): int((t + 0.85) * 16000)], sig.freq) > 50
                    assert (seen, heard) == (bool(s.visual[i, t, k]), bool(s.audio[i, t, k])), (name, k, t)
                    if seen or heard:
                        counts[{(False, True): "heard only", (True, False): "seen only", (True, True): "both"}[
                            (seen, heard)]] += 1
    assert min(counts.values()) > 0, counts


def test_bad_arguments(tmp_path):
    with pytest.raises(ConfigError, match="num_classes"):
        make_synthetic_llp(tmp_path, num_classes=99)
    with pytest.raises(ConfigError, match="size"):
        make_synthetic_llp(tmp_path, size=30)
    with pytest.raises(ConfigError, match="at least one clip"):
        make_synthetic_llp(tmp_path, num_val=0)
