"""LLP csv parser and layout: counts, per-second labels and quirks of the real files, one-line errors."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from lavish.tasks.avvp import layout as llp
from lavish.tasks.avvp.layout import CLASSES, EVAL_FILES, SPLIT_FILES, discover_llp, read_llp
from lavish.errors import DataError


@pytest.fixture(scope="module")
def real(reference_data):
    return read_llp(reference_data / "llp")


def _rows(path):
    lines = path.read_text().splitlines()
    return [line.split("\t") for line in lines[1:]]


def test_classes_are_the_benchmarks_list():
    assert len(CLASSES) == 25 and len(set(CLASSES)) == 25
    assert CLASSES[:6] == ("Speech", "Car", "Cheering", "Dog", "Cat", "Frying_(food)")
    assert CLASSES[22:] == ("Baby_cry_infant_cry", "Blender", "Clapping")


def test_real_files_counts(real, reference_data):
    assert [len(real[s]) for s in ("train", "val", "test")] == [10_000, 649, 1_200]
    assert real["train"].audio is None and real["train"].visual is None
    for name in ("val", "test"):
        split = real[name]
        assert split.audio.shape == split.visual.shape == (len(split), 10, 25) and split.audio.dtype == np.int64
        assert split.video_labels.shape == (len(split), 25)
    # every class name of the split files is one of the 25, and each clip has at least one label
    assert all(real[s].video_labels.sum(axis=1).min() >= 1 for s in ("train", "val", "test"))
    assert real["train"].video_labels.sum(axis=0).min() > 0
    audio, visual = (_rows(reference_data / "llp" / f) for f in EVAL_FILES)
    assert (len(audio), len(visual)) == (4_131, 2_495)
    assert (len({r[0] for r in audio}), len({r[0] for r in visual})) == (1_848, 1_665)
    # rows naming no val/test clip (8 misspelt names) are ignored, as the benchmark's exact-name lookup does
    assert len(real.ignored) == 14 + 11
    assert {i.split(": ")[-1] for i in real.ignored} == {
        "12eWNawPekw_30_40", "17iGUal2M_10_20", "19jWnmYnlD8_30_400", "7X3oSVoA_90_100", "AkAfFL5Q4QA_30_40",
        "CSWQ_HzQ_10_20", "P7x4FV4lg_570_580", "VMTJRpjbE_150_160"}
    assert real.ignored[0].endswith("AVVP_eval_audio.csv:19: AkAfFL5Q4QA_30_40")
    assert real.outside_video_labels == {"audio": 76, "visual": 51}
    assert [e.split("csv:")[1] for e in real.empty] == [
        "48: CaC2xvdLC34_250_260", "100: Gg3pK71kApY_30_40", "129: H5WcJwyjxIg_2_12", "137: Baue01N86wE_10_20",
        "3770: 8DF2PxdT5tE_390_400"]


def _clip(real, filename):
    for name in ("val", "test"):
        if filename in real[name].filenames:
            split = real[name]
            i = split.filenames.index(filename)
            return split.audio[i], split.visual[i], split.video_labels[i]
    raise KeyError(filename)


def _seconds(labels, cls):
    return np.flatnonzero(labels[:, CLASSES.index(cls)]).tolist()


def test_clips_worked_by_hand(real):
    # test: 4YdbENYcIyE_23_33  Baby_cry_infant_cry; audio 0-4, visual 0-10
    a, v, weak = _clip(real, "4YdbENYcIyE_23_33")
    assert _seconds(a, "Baby_cry_infant_cry") == [0, 1, 2, 3] and _seconds(v, "Baby_cry_infant_cry") == list(range(10))
    assert a.sum() == 4 and v.sum() == 10 and np.flatnonzero(weak).tolist() == [CLASSES.index("Baby_cry_infant_cry")]
    # test: KSRjje7GH44_60_70  Blender,Speech; audio Blender 8-10, Speech 0-8; visual Blender 0-10
    a, v, weak = _clip(real, "KSRjje7GH44_60_70")
    assert _seconds(a, "Blender") == [8, 9] and _seconds(a, "Speech") == list(range(8)) and a.sum() == 10
    assert _seconds(v, "Blender") == list(range(10)) and v.sum() == 10
    assert np.flatnonzero(weak).tolist() == [CLASSES.index("Speech"), CLASSES.index("Blender")]
    # val: 8DF2PxdT5tE_390_400: audio Speech 0-2 and 7-10 (two rows), Cheering "9 0" is empty; visual Speech 7-8, 9-10
    a, v, weak = _clip(real, "8DF2PxdT5tE_390_400")
    assert _seconds(a, "Basketball_bounce") == list(range(2, 8)) and _seconds(a, "Speech") == [0, 1, 7, 8, 9]
    assert _seconds(a, "Cheering") == [] and weak[CLASSES.index("Cheering")] == 1
    assert _seconds(v, "Speech") == [7, 9] and _seconds(v, "Basketball_bounce") == list(range(2, 8))
    # test: LcFWKgFphXI_20_30 lists Clapping twice: one label
    assert real["test"].video_labels[real["test"].filenames.index("LcFWKgFphXI_20_30")].tolist() == \
        [int(c == "Clapping") for c in CLASSES]


def test_per_second_labels_equal_the_benchmarks_construction(real, reference_data):
    """main_avvp.eval: per clip of the split, the eval rows with that exact filename, GT[idx, x1:x2] = 1 on (25, 10)."""
    rows = {m: _rows(reference_data / "llp" / f) for m, f in zip(("audio", "visual"), EVAL_FILES)}
    for name in ("val", "test"):
        split = real[name]
        for modality in ("audio", "visual"):
            by_clip: dict[str, list] = {}
            for r in rows[modality]:
                by_clip.setdefault(r[0], []).append(r)
            for i, filename in enumerate(split.filenames):
                gt = np.zeros((25, 10))
                for _, x1, x2, event in by_clip.get(filename, []):
                    gt[CLASSES.index(event), int(x1):int(x2)] = 1
                np.testing.assert_array_equal(getattr(split, modality)[i], gt.T, err_msg=f"{filename} {modality}")
        both = split.segment_labels()
        assert both.shape == (len(split), 2, 10, 25)
        np.testing.assert_array_equal(both[:, 0], split.audio)
        np.testing.assert_array_equal(both[:, 1], split.visual)
    assert (real["train"].segment_labels() == -1).all()


# ------------------------------------------------------------------------------------------------ bad input
def _copy(reference_data, tmp_path):
    out = tmp_path / "csv"
    shutil.copytree(reference_data / "llp", out, ignore=shutil.ignore_patterns("*.md"))
    for p in out.iterdir():
        p.chmod(0o644)
    return out


def _edit(path, line: int, text: str | None):
    lines = path.read_text().splitlines()
    if text is None:
        del lines[line - 1]
    else:
        lines[line - 1] = text
    path.write_text("\n".join(lines) + "\n")


@pytest.mark.parametrize("file, line, text, message", [
    ("AVVP_val_pd.csv", 1, "filename,event_labels", r"AVVP_val_pd.csv:1: expected the tab-separated header"),
    ("AVVP_eval_visual.csv", 1, "filename\tstart\tend\tevent_labels", r"AVVP_eval_visual.csv:1: expected"),
    ("AVVP_train.csv", 3, "7nSYwyaP4QE_50_60\tSinging,Banjos", r"AVVP_train.csv:3: unknown class 'Banjos'"),
    ("AVVP_train.csv", 4, "BjCEufrlXm4_20_30\tDog", r"AVVP_train.csv:4: duplicate filename 'BjCEufrlXm4_20_30', first at line 2"),
    ("AVVP_test_pd.csv", 2, "4YdbENYcIyE_23_33\t", r"AVVP_test_pd.csv:2: empty event label"),
    ("AVVP_test_pd.csv", 3, "KSRjje7GH44_60_70", r"AVVP_test_pd.csv:3: expected 2 tab-separated fields"),
    ("AVVP_eval_audio.csv", 2, "4YdbENYcIyE_23_33\t0\t11\tBaby_cry_infant_cry", r"AVVP_eval_audio.csv:2: onset and offset must lie in \[0, 10\]"),
    ("AVVP_eval_audio.csv", 3, "KSRjje7GH44_60_70\t-1\t10\tBlender", r"AVVP_eval_audio.csv:3: onset and offset must lie"),
    ("AVVP_eval_audio.csv", 4, "KSRjje7GH44_60_70\t0\t8.5\tSpeech", r"AVVP_eval_audio.csv:4: onset/offset must be integer"),
    ("AVVP_eval_visual.csv", 2, "4YdbENYcIyE_23_33\t0\t10\tBaby", r"AVVP_eval_visual.csv:2: unknown class 'Baby'"),
    ("AVVP_eval_visual.csv", 3, "BjCEufrlXm4_20_30\t0\t10\tDog", r"AVVP_eval_visual.csv:3: clip 'BjCEufrlXm4_20_30' is in the train split"),
])
def test_bad_input_is_one_line_naming_file_and_line(reference_data, tmp_path, file, line, text, message):
    csv = _copy(reference_data, tmp_path)
    _edit(csv / file, line, text)
    with pytest.raises(DataError, match=message) as err:
        read_llp(csv)
    assert "\n" not in str(err.value) and str(csv / file) in str(err.value)


def test_missing_file_and_clip_in_two_splits(reference_data, tmp_path):
    csv = _copy(reference_data, tmp_path)
    (csv / "AVVP_eval_visual.csv").unlink()
    with pytest.raises(DataError, match=r"AVVP_eval_visual.csv: file not found"):
        read_llp(csv)
    csv = _copy(reference_data, tmp_path / "b")
    with open(csv / "AVVP_test_pd.csv", "a") as f:
        f.write("4O9rI-FpqLg_10_20\tSpeech\n")  # the first clip of the val file
    with pytest.raises(DataError, match=r"AVVP_test_pd.csv: clip '4O9rI-FpqLg_10_20' \(row 1201\) is also in AVVP_val_pd.csv"):
        read_llp(csv)


# ------------------------------------------------------------------------------------------------ layout
def _touch_video(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")


def test_discover_layout_rules(reference_data, tmp_path):
    root = tmp_path / "LLP"
    shutil.copytree(reference_data / "llp", root / "data", ignore=shutil.ignore_patterns("*.md"))
    with pytest.raises(DataError, match=r"no video files .* in any of .*LLP_dataset/video"):
        discover_llp(root)
    # the release's layout: data/*.csv, data/LLP_dataset/video/<youtube id>.mp4
    _touch_video(root / "data" / "LLP_dataset" / "video" / "4YdbENYcIyE.mp4")
    _touch_video(root / "data" / "LLP_dataset" / "video" / "KSRjje7GH44_60_70.webm")
    layout = discover_llp(root)
    assert layout.csv_dir == root / "data" and layout.video_dir == root / "data" / "LLP_dataset" / "video"
    assert layout.video_path("4YdbENYcIyE_23_33").name == "4YdbENYcIyE.mp4"
    assert layout.video_path("KSRjje7GH44_60_70").name == "KSRjje7GH44_60_70.webm"
    assert layout.video_path("McVcuryKUp4_160_170") == layout.video_dir / "McVcuryKUp4_160_170.mp4"
    # LLP_dataset/video under the root wins over data/LLP_dataset/video; csv files in the root win over data/
    _touch_video(root / "LLP_dataset" / "video" / "McVcuryKUp4_160_170.mp4")
    assert discover_llp(root).video_dir == root / "LLP_dataset" / "video"
    for f in (*SPLIT_FILES.values(), *EVAL_FILES):
        shutil.copy(root / "data" / f, root / f)
    assert discover_llp(root).csv_dir == root
    # a folder of clips given as the root, csv files elsewhere
    clips = tmp_path / "clips"
    _touch_video(clips / "a_0_10.MP4")
    layout = discover_llp(clips, csv_dir=root / "data")
    assert layout.video_dir == clips and layout.video_path("a_0_10").name == "a_0_10.MP4"
    _touch_video(clips / "a_0_10.mkv")
    with pytest.raises(DataError, match=r"clip 'a_0_10' also at"):
        discover_llp(clips, csv_dir=root / "data")
    (root / "data" / "AVVP_test_pd.csv").unlink()
    with pytest.raises(DataError, match=r"data: not an LLP annotation folder, missing AVVP_test_pd.csv"):
        discover_llp(clips, csv_dir=root / "data")
    with pytest.raises(DataError, match="not a directory"):
        discover_llp(tmp_path / "nowhere")
    assert llp.VIDEO_DIRS[-1] == "."
