from __future__ import annotations

import shutil

import h5py
import numpy as np
import pytest

from lavish.tasks.ave import layout as ave
from lavish.errors import DataError

HEADER = "Category&VideoID&Quality&StartTime&EndTime"


def test_real_annotations_rebuild_reference_labels(reference_data):
    ann = ave.read_annotations(reference_data / "ave" / "Annotations.txt")
    assert len(ann.records) == 4143
    assert len(ann.classes) == 28 and ann.background == 28 and ann.num_classes == 29
    assert ann.classes[0] == "Church bell" and ann.classes[27] == "Mandolin"
    assert ann.classes[1] == "Male speech, man speaking"
    empty = ann.records[26]  # the one row with an empty event (0&0): all background, class still Church bell
    assert (empty.video_id, empty.start, empty.end, empty.line) == ("VWi2ENBuTbw", 0, 0, 27)
    labels = ann.segment_labels()
    assert labels.shape == (4143, 10) and labels.dtype == np.int64
    with h5py.File(reference_data / "ave" / "labels_closs.h5") as f:
        closs = f["avadataset"][()]
    with h5py.File(reference_data / "ave" / "mil_labels.h5") as f:
        mil = f["avadataset"][()]
    np.testing.assert_array_equal(ave.event_mask(labels, ann.background), closs)
    np.testing.assert_array_equal(ave.one_hot(ann.video_labels(), ann.num_classes), mil)
    # the one-hot of the segment labels is the authors' labels.h5: one 1 per segment
    hot = ave.one_hot(labels, ann.num_classes)
    assert hot.shape == (4143, 10, 29) and (hot.sum(-1) == 1).all()


def test_real_order_files_are_disjoint_and_cover_all_rows(reference_data, tmp_path):
    root = tmp_path / "ave"
    shutil.copytree(reference_data / "ave", root)
    (root / "AVE").mkdir()
    layout = ave.discover_ave(root)
    assert layout.split_source == "h5"
    ann = ave.read_annotations(layout.annotations)
    splits = ave.read_splits(layout, ann)
    assert {k: len(v) for k, v in splits.items()} == {"train": 3339, "val": 402, "test": 402}
    allrows = np.concatenate(list(splits.values()))
    assert np.array_equal(np.sort(allrows), np.arange(4143))


def test_same_video_twice_with_two_categories_is_two_rows(reference_data):
    ann = ave.read_annotations(reference_data / "ave" / "Annotations.txt")
    ids = [r.video_id for r in ann.records]
    assert len(set(ids)) == 4097  # 45 videos listed more than once (one of them three times)


def _write_layout(root, lines, splits):
    (root / "AVE").mkdir(parents=True)
    (root / "Annotations.txt").write_text(HEADER + "\n" + "\n".join(lines))
    for name, file in ave.SPLIT_TEXT_FILES.items():
        (root / file).write_text(HEADER + "\n" + "\n".join(splits[name]) + "\n")


LINES = ["Bark&aaa&good&0&10", "Cat&bbb&good&2&5", "Bark&ccc&good&9&10", "Cat&aaa&good&0&3"]


def test_text_splits_with_header(tmp_path):
    _write_layout(tmp_path, LINES, {"train": LINES[:2], "val": [LINES[2]], "test": [LINES[3]]})
    layout = ave.discover_ave(tmp_path)
    assert layout.split_source == "txt"
    ann = ave.read_annotations(layout.annotations)
    assert ann.classes == ("Bark", "Cat")
    splits = ave.read_splits(layout, ann)
    assert [s.tolist() for s in splits.values()] == [[0, 1], [2], [3]]
    np.testing.assert_array_equal(
        ann.segment_labels()[1], [2, 2, 1, 1, 1, 2, 2, 2, 2, 2]
    )
    assert layout.video_path("aaa") == tmp_path / "AVE" / "aaa.mp4"


@pytest.mark.parametrize(
    "bad, message",
    [
        ("Bark&ddd&good&0", "expected 5"),
        ("Bark&ddd&good&x&3", "integer seconds"),
        ("Bark&ddd&good&5&4", "start <= end"),
        ("Bark&ddd&good&0&11", "start <= end"),
        ("Bark&aaa&good&1&2", "duplicate row"),
    ],
)
def test_malformed_annotation_line_names_file_and_line(tmp_path, bad, message):
    path = tmp_path / "Annotations.txt"
    path.write_text("\n".join(LINES[:2] + [bad]))
    with pytest.raises(DataError, match=message) as err:
        ave.read_annotations(path)
    assert f"{path}:3:" in str(err.value)


def test_split_file_with_unknown_category_or_video(tmp_path):
    _write_layout(tmp_path, LINES, {"train": ["Dog&aaa&good&0&10"], "val": [], "test": []})
    layout = ave.discover_ave(tmp_path)
    ann = ave.read_annotations(layout.annotations)
    with pytest.raises(DataError, match=r"trainSet.txt:2: unknown category 'Dog'"):
        ave.read_splits(layout, ann)
    (tmp_path / "trainSet.txt").write_text(HEADER + "\nBark&zzz&good&0&10\n")
    with pytest.raises(DataError, match="video 'zzz'"):
        ave.read_splits(layout, ann)


def test_overlapping_splits_refused(tmp_path):
    _write_layout(tmp_path, LINES, {"train": LINES[:2], "val": LINES[1:3], "test": []})
    layout = ave.discover_ave(tmp_path)
    with pytest.raises(DataError, match="both the train and the val split"):
        ave.read_splits(layout, ave.read_annotations(layout.annotations))


def test_discovery_says_what_is_missing(tmp_path):
    (tmp_path / "Annotations.txt").write_text(LINES[0])
    with pytest.raises(DataError) as err:
        ave.discover_ave(tmp_path)
    assert "AVE/" in str(err.value) and "trainSet.txt" in str(err.value) and "Annotations" not in str(err.value).split("missing")[1]


def test_order_file_out_of_range(tmp_path):
    path = tmp_path / "train_order.h5"
    with h5py.File(path, "w") as f:
        f["order"] = np.array([0, 7])
    with pytest.raises(DataError, match="row index 7"):
        ave.read_order_file(path, 4)
