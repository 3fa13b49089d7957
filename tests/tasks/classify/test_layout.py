"""Classify layouts: the four readers on generated trees and real annotation files, every bad input, carving, ids.

Generated clips are empty files: the reader lists folders and reads annotations, it never decodes a video.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import zlib
from pathlib import Path

import numpy as np
import pytest

from lavish.data.cache import check_video_id
from lavish.errors import ConfigError, DataError
from lavish.tasks.classify.layout import SPLITS, ClipRecord, read_layout

pytestmark = pytest.mark.filterwarnings("error")


def touch(root: Path, *names: str) -> list[Path]:
    out = []
    for name in names:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"")
        out.append(path)
    return out


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def sha8(text: str) -> str:
    return hashlib.sha1(text.encode()).hexdigest()[:8]


def by_id(layout) -> dict[str, ClipRecord]:
    return {clip.clip_id: clip for clip in layout.clips}


def split_sizes(layout, name: str) -> dict[str, int]:
    return {s: sum(c.split == s and c.labels[0] == name for c in layout.clips) for s in SPLITS}


@pytest.fixture
def audioset_root(reference_data, tmp_path):
    def copy(form: str) -> Path:
        root = tmp_path / form
        shutil.copytree(reference_data / "classify" / "audioset" / form, root)
        return root
    return copy


@pytest.fixture
def vggsound_root(reference_data, tmp_path) -> Path:
    root = tmp_path / "vggsound"
    root.mkdir()
    shutil.copy(reference_data / "classify" / "vggsound" / "vggsound.csv", root)
    return root


# ---------------------------------------------------------------------------------------------------- folder layout


def test_folder_classes_clips_ids_and_carved_splits(tmp_path):
    root = tmp_path / "set"
    touch(root, *[f"dog/d{i:02d}.mp4" for i in range(10)], *[f"cat/sub/c{i}.MKV" for i in range(5)],
          "bird/b0.webm", ".hidden/x.mp4", "dog/.x.mp4", "cat/.cache/y.mp4", "cat/notes.txt", "readme.md")
    layout = read_layout(root)
    assert layout.kind == "folder" and not layout.multi_label
    assert layout.classes == ["bird", "cat", "dog"]
    assert len(layout.clips) == 16 and layout.rejected == []
    clip = by_id(layout)["cat__sub__c3"]
    assert clip.path == root / "cat/sub/c3.MKV" and clip.labels == ("cat",) and clip.where == str(clip.path)
    assert {c.clip_id for c in layout.clips} >= {"dog__d00", "dog__d09", "bird__b0"}
    # 10 dogs: val round(1.0) = 1, test 1; 5 cats: round_half_up(0.5) = 1 each; 1 bird: stays in train
    assert split_sizes(layout, "dog") == {"train": 8, "val": 1, "test": 1}
    assert split_sizes(layout, "cat") == {"train": 3, "val": 1, "test": 1}
    assert split_sizes(layout, "bird") == {"train": 1, "val": 0, "test": 0}
    assert layout.notes == [
        f"2 non-video files ignored (first: {root / 'cat' / 'notes.txt'})",
        "val carved from train: 2 clips (val_fraction 0.1, seed 0, per class)",
        "test carved from train: 2 clips (test_fraction 0.1, seed 0, per class)",
    ]
    labels = layout.label_array()
    assert labels.dtype == np.int64 and labels.shape == (16,)
    assert [layout.classes[k] for k in labels] == [c.labels[0] for c in layout.clips]
    splits = layout.splits()
    assert sorted(i for s in SPLITS for i in splits[s]) == list(range(16))
    assert all(layout.clips[i].split == s for s in SPLITS for i in splits[s])


def test_a_small_set_still_gets_one_val_and_one_test_clip(tmp_path):
    """3 clips a class at 0.1: round_half_up(0.3) = 0 for every class, so each empty split takes one clip from the
    class with the most to spare (ties: the first class), leaving every class a training clip."""
    root = tmp_path / "set"
    touch(root, *[f"{c}/{c}{i}.mp4" for c in ("a", "b", "c") for i in range(3)])
    layout = read_layout(root)
    sizes = {name: split_sizes(layout, name) for name in layout.classes}
    # val: a, b, c spare 2 each -> the first class, a; test: a spares 1 now, b 2 -> b
    assert sizes["a"] == {"train": 2, "val": 1, "test": 0}
    assert sizes["b"] == {"train": 2, "val": 0, "test": 1}
    assert sizes["c"] == {"train": 3, "val": 0, "test": 0}
    none = read_layout(root, val_fraction=0.0, test_fraction=0.1)
    assert sum(c.split == "val" for c in none.clips) == 0  # a fraction of 0 carves nothing
    assert sum(c.split == "test" for c in none.clips) == 1


def test_folder_split_layout_keeps_given_splits_and_carves_the_missing_one(tmp_path):
    root = tmp_path / "set"
    touch(root, *[f"train/a/a{i}.mp4" for i in range(10)], *[f"train/b/b{i}.mp4" for i in range(4)],
          "val/a/va.mp4", "val/b/vb.mp4", "train/loose.mp4", "extras/a/e.mp4", "val/notes.txt")
    (root / "val" / "c").mkdir()
    layout = read_layout(root)
    assert layout.classes == ["a", "b"]
    assert by_id(layout)["val__a__va"].split == "val" and by_id(layout)["val__b__vb"].split == "val"
    assert layout.rejected == [
        (str(root / "extras"), "not a split folder (train, val, test): left out"),
        (str(root / "train" / "loose.mp4"), "video file outside a class folder: left out"),
        (str(root / "val" / "c"), "class folder with no video file: left out"),
    ]
    # no test folder: test is carved from train (10 a: 1, 4 b: round_half_up(0.4) = 0), val stays as given
    assert split_sizes(layout, "a") == {"train": 9, "val": 1, "test": 1}
    assert split_sizes(layout, "b") == {"train": 4, "val": 1, "test": 0}
    assert layout.notes == [f"1 non-video files ignored (first: {root / 'val' / 'notes.txt'})",
                            "test carved from train: 1 clips (test_fraction 0.1, seed 0, per class)"]


def test_folder_all_three_splits_given_nothing_carved(tmp_path):
    root = tmp_path / "set"
    touch(root, "train/a/1.mp4", "train/b/2.mp4", "val/a/3.mp4", "test/b/4.mp4")
    layout = read_layout(root, layout="folder")
    assert [(c.clip_id, c.split) for c in layout.clips] == [
        ("train__a__1", "train"), ("train__b__2", "train"), ("val__a__3", "val"), ("test__b__4", "test")]
    assert layout.notes == []


def test_folder_empty_class_folder_is_left_out_and_the_rest_goes_on(tmp_path):
    root = tmp_path / "set"
    touch(root, "dog/a.mp4", "cat/only.txt", "outside.mp4")
    (root / "fish" / "deep").mkdir(parents=True)
    layout = read_layout(root)
    assert layout.classes == ["dog"] and [c.clip_id for c in layout.clips] == ["dog__a"]
    assert layout.rejected == [
        (str(root / "cat"), "class folder with no video file: left out"),
        (str(root / "fish"), "class folder with no video file: left out"),
        (str(root / "outside.mp4"), "video file outside a class folder: left out"),
    ]


def test_folder_structural_errors(tmp_path):
    touch(tmp_path, "flat/a.mp4", "empty/cls/notes.txt")
    with pytest.raises(DataError, match=r"flat: no class folder \(expected ROOT/<class>/<clip>\.<ext>"):
        read_layout(tmp_path / "flat")
    message = (f"{tmp_path / 'empty'}: no clip (1 rows or files left out; first left out: "
               f"{tmp_path / 'empty' / 'cls'}: class folder with no video file: left out)")
    with pytest.raises(DataError) as err:
        read_layout(tmp_path / "empty")
    assert str(err.value) == message
    with pytest.raises(DataError, match="nowhere: not a folder or a .csv file"):
        read_layout(tmp_path / "nowhere")
    with pytest.raises(DataError, match="a.mp4: not a folder"):
        read_layout(tmp_path / "flat" / "a.mp4", layout="folder")


def test_clip_ids_are_safe_unique_and_stable(tmp_path):
    root = tmp_path / "set"
    names = ["dog/a.mp4", "cat/a.mp4", "dog/clip one.mp4", "chat/café.mp4", "Dog/x.mp4", "dog/x.mp4",
             "dog/x.webm", "a/b__c.mp4", "a__b/c.mp4", "dog/" + "n" * 200 + ".mp4", "dog/-lead.mp4"]
    touch(root, *names)
    layout = read_layout(root)
    ids = {c.path.relative_to(root).as_posix(): c.clip_id for c in layout.clips}
    assert ids["dog/a.mp4"] == "dog__a" and ids["cat/a.mp4"] == "cat__a"  # same name, two classes
    assert ids["dog/-lead.mp4"] == "dog__-lead"
    assert ids["dog/clip one.mp4"] == f"dog__clip_one-{sha8('dog/clip one.mp4')}"  # sanitised: hash added
    assert ids["chat/café.mp4"] == f"chat__caf_-{sha8('chat/café.mp4')}"
    # equal ignoring case (one file on macOS/Windows), same stem with two extensions, "__" collisions: all hashed
    for name in ("Dog/x.mp4", "dog/x.mp4", "dog/x.webm", "a/b__c.mp4", "a__b/c.mp4"):
        assert ids[name] == f"{Path(name).with_suffix('').as_posix().replace('/', '__')}-{sha8(name)}"
    long_id = ids["dog/" + "n" * 200 + ".mp4"]
    assert long_id == "dog__" + "n" * 91 + "-" + sha8("dog/" + "n" * 200 + ".mp4")
    assert len(set(ids.values())) == len(names) == len(layout.clips)
    for clip_id in ids.values():
        check_video_id(clip_id)
    assert [c.clip_id for c in read_layout(root).clips] == [c.clip_id for c in layout.clips]


def test_undecodable_file_names(tmp_path):
    root = tmp_path / "set"
    folder = bytes(root) + b"/caf\xe9"
    os.makedirs(folder)
    for i in range(10):
        open(folder + b"/clip\xff%d.mp4" % i, "wb").close()
    layout = read_layout(root)
    assert layout.classes == ["caf\udce9"] and len(layout.clips) == 10
    assert split_sizes(layout, "caf\udce9") == {"train": 8, "val": 1, "test": 1}
    for clip in layout.clips:
        check_video_id(clip.clip_id)
        assert clip.clip_id.startswith("caf___clip_") and clip.path.is_file()


# ------------------------------------------------------------------------------------------------------- csv layout


def test_csv_with_header_relative_absolute_and_quoted_paths(tmp_path):
    outside = touch(tmp_path, "elsewhere/far.mp4")[0]
    csv = write(tmp_path / "data" / "labels.csv",
                "path,label,split\n"
                "videos/a.mp4,dog,train\n"
                "\n"
                f"{outside},cat,train\n"
                '"videos/with, comma.mp4", "big cat" ,val\n'
                "videos/c.mp4,dog,test\n"
                "../up.mp4,cat,test\n")
    layout = read_layout(tmp_path / "data")
    assert layout.kind == "csv" and not layout.multi_label and layout.rejected == []
    assert layout.classes == ["big cat", "cat", "dog"]
    assert layout.notes == ["1 classes with no training clip: 'big cat'"]  # every split given: nothing carved
    rows = [(c.path, c.labels, c.split, c.where) for c in layout.clips]
    assert rows == [
        (tmp_path / "data/videos/a.mp4", ("dog",), "train", f"{csv}:2"),
        (outside, ("cat",), "train", f"{csv}:4"),
        (tmp_path / "data/videos/with, comma.mp4", ("big cat",), "val", f"{csv}:5"),
        (tmp_path / "data/videos/c.mp4", ("dog",), "test", f"{csv}:6"),
        (tmp_path / "data/../up.mp4", ("cat",), "test", f"{csv}:7"),
    ]
    ids = [c.clip_id for c in layout.clips]
    assert ids[0] == "videos__a" and ids[2] == f"videos__with__comma-{sha8('videos/with, comma.mp4')}"
    assert ids[4] == f"_.__up-{sha8('../up.mp4')}"
    for clip_id in ids:
        check_video_id(clip_id)
    assert layout.label_array().tolist() == [2, 1, 0, 2, 1]


def test_csv_multi_label_without_header_and_carving(tmp_path):
    rows = [f"v{i}.mp4,dog;bark" for i in range(10)] + [f"c{i}.mp4,cat; meow ;cat" for i in range(10)]
    csv = write(tmp_path / "mine.csv", "\n".join(rows) + "\n")
    layout = read_layout(csv)  # ROOT is the .csv file
    assert layout.kind == "csv" and layout.multi_label
    assert layout.classes == ["bark", "cat", "dog", "meow"]
    assert by_id(layout)["c3"].labels == ("cat", "meow")  # stripped, repeat counted once
    labels = layout.label_array()
    assert labels.shape == (20, 4) and labels.dtype == np.uint8
    assert labels[:10].tolist() == [[1, 0, 1, 0]] * 10 and labels[10:].tolist() == [[0, 1, 0, 1]] * 10
    # carved per first label: dog 10 -> 1/1, cat 10 -> 1/1; bark and meow have no clip as a first label
    assert split_sizes(layout, "dog") == split_sizes(layout, "cat") == {"train": 8, "val": 1, "test": 1}


def test_csv_multi_label_option(tmp_path):
    csv = write(tmp_path / "l.csv", "a.mp4,dog\nb.mp4,cat\nc.mp4,dog;cat\n")
    forced = read_layout(csv, multi_label=True, val_fraction=0, test_fraction=0)
    assert forced.multi_label and forced.label_array().tolist() == [[0, 1], [1, 0], [1, 1]]
    single = read_layout(csv, multi_label=False)
    assert not single.multi_label and [c.clip_id for c in single.clips] == ["a", "b"]
    assert single.rejected == [(f"{csv}:3", "2 labels in a single-label set (multi_label=False)")]
    only_one = write(tmp_path / "one.csv", "a.mp4,dog\nb.mp4,cat\n")
    assert read_layout(only_one, multi_label=True).label_array().shape == (2, 2)
    assert read_layout(only_one).label_array().shape == (2,)


def test_csv_every_bad_row_is_left_out_with_its_line_and_the_rest_goes_on(tmp_path):
    classes = write(tmp_path / "classes.txt", "dog\n\ncat\nbird\n")
    csv = write(tmp_path / "labels.csv",
                "path,label,split\n"      # 1
                "a.mp4,dog,train\n"       # 2
                "b.mp4,,train\n"          # 3 no label
                "c.mp4, ; ,train\n"       # 4 no label (only separators)
                "d.mp4,horse,train\n"     # 5 not in the class list
                "e.mp4,dog;unicorn,val\n"  # 6 one label not in the list
                "f.mp4,cat,validation\n"  # 7 bad split
                "./a.mp4,cat,test\n"      # 8 the same file as line 2
                "sub/../a.mp4,cat,test\n"  # 9 again
                "g.mp4,cat\n"             # 10 two fields under a three-field header
                ",cat,train\n"            # 11 no path
                "h.mp4,cat,test,extra\n"  # 12 four fields
                "i.mp4,cat,test\n"        # 13
                "j\0k.mp4,cat,train\n")   # 14 NUL in the path
    layout = read_layout(tmp_path, classes_file=classes)
    assert [c.clip_id for c in layout.clips] == ["a", "i"]
    assert layout.rejected == [
        (f"{csv}:3", "no label"),
        (f"{csv}:4", "no label"),
        (f"{csv}:5", f"label 'horse' not in the class list ({classes})"),
        (f"{csv}:6", f"label 'unicorn' not in the class list ({classes})"),
        (f"{csv}:7", "split 'validation' is not one of train, val, test"),
        (f"{csv}:8", f"duplicate: the same file as {csv}:2"),
        (f"{csv}:9", f"duplicate: the same file as {csv}:2"),
        (f"{csv}:10", "expected path,label,split, got 2 fields"),
        (f"{csv}:11", "no path"),
        (f"{csv}:12", "expected path,label,split, got 4 fields"),
        (f"{csv}:14", "path 'j\\x00k.mp4' holds a NUL character"),
    ]
    assert layout.classes == ["dog", "cat", "bird"]  # the class file's order, unused classes kept
    assert layout.label_array().tolist() == [0, 1]
    assert "2 classes with no training clip: 'cat', 'bird'" in layout.notes


def test_csv_duplicate_through_a_symlink_and_absolute_path(tmp_path):
    real = touch(tmp_path, "media/a.mp4")[0]
    (tmp_path / "link").symlink_to(tmp_path / "media")
    csv = write(tmp_path / "labels.csv", f"media/a.mp4,dog\nlink/a.mp4,dog\n{real},dog\nmedia/b.mp4,dog\n")
    layout = read_layout(tmp_path)
    assert [c.clip_id for c in layout.clips] == ["media__a", "media__b"]
    assert layout.rejected == [(f"{csv}:2", f"duplicate: the same file as {csv}:1"),
                               (f"{csv}:3", f"duplicate: the same file as {csv}:1")]


def test_csv_some_splits_given_the_missing_ones_are_carved_from_train(tmp_path):
    rows = [f"t{i}.mp4,dog,train" for i in range(6)] + [f"u{i}.mp4,dog" for i in range(4)] + ["x.mp4,dog,test"]
    layout = read_layout(write(tmp_path / "l.csv", "\n".join(rows)))
    # the pool: 6 train + 4 without a split = 10 -> val 1; test given (1 clip), not carved
    assert split_sizes(layout, "dog") == {"train": 9, "val": 1, "test": 1}
    assert by_id(layout)["x"].split == "test"
    assert layout.notes == ["4 clips without a split joined the train pool",
                            "val carved from train: 1 clips (val_fraction 0.1, seed 0, per class)"]


def test_csv_structural_errors(tmp_path):
    with pytest.raises(DataError, match=r"labels\.csv: no such CSV file"):
        read_layout(tmp_path, layout="csv")
    bad_header = write(tmp_path / "h.csv", "path,class\na.mp4,dog\n")
    with pytest.raises(DataError) as err:
        read_layout(bad_header)
    assert str(err.value) == f"{bad_header}:1: expected the header path,label or path,label,split, got 'path,class'"
    only_bad = write(tmp_path / "b.csv", "path,label\n\na.mp4,\n")
    with pytest.raises(DataError) as err:
        read_layout(only_bad)
    assert str(err.value) == f"{only_bad}: no clip (1 rows or files left out; first left out: {only_bad}:3: no label)"
    with pytest.raises(DataError, match=r"b\.csv: no clip \(0 rows"):
        write(only_bad, "path,label\n")
        read_layout(only_bad)
    twice = write(tmp_path / "classes.txt", "dog\ncat\n\ndog\n")
    with pytest.raises(DataError) as err:
        read_layout(bad_header, csv=write(tmp_path / "ok.csv", "a.mp4,dog\n"), classes_file=twice)
    assert str(err.value) == f"{twice}:4: class 'dog' listed twice (first at line 1)"
    with pytest.raises(DataError, match="no class names"):
        read_layout(tmp_path / "ok.csv", classes_file=write(tmp_path / "empty.txt", "\n \n"))
    with pytest.raises(DataError, match="missing.txt: file not found"):
        read_layout(tmp_path / "ok.csv", classes_file=tmp_path / "missing.txt")
    latin = tmp_path / "latin.csv"
    latin.write_bytes("caf\xe9.mp4,dog\n".encode("latin-1"))
    with pytest.raises(DataError, match=r"latin\.csv: cannot read \('utf-8' codec"):
        read_layout(latin)


def test_csv_argument_points_anywhere(tmp_path):
    csv = write(tmp_path / "annotations" / "my.csv", "clips/a.mp4,dog\n")
    layout = read_layout(tmp_path / "unused", csv=csv)
    assert layout.kind == "csv" and layout.clips[0].path == tmp_path / "annotations/clips/a.mp4"


# -------------------------------------------------------------------------------------------------- VGGSound layout


def test_vggsound_real_excerpt(vggsound_root):
    layout = read_layout(vggsound_root)
    csv = vggsound_root / "vggsound.csv"
    assert layout.kind == "vggsound" and not layout.multi_label and layout.rejected == []
    assert len(layout.clips) == 64 and len(layout.classes) == 54 and layout.classes == sorted(layout.classes)
    first = layout.clips[0]
    assert first == ClipRecord("---g-f_I2yQ_000001", vggsound_root / "---g-f_I2yQ_000001.mp4",
                               ("people marching",), "test", f"{csv}:1")
    quoted = layout.clips[6]
    assert (quoted.clip_id, quoted.labels, quoted.where) == (
        "--9O4XZOge4_000030", ("female speech, woman speaking",), f"{csv}:7")
    assert {"bee, wasp, etc. buzzing", "eletric blender running", "donkey, ass braying"} <= set(layout.classes)
    assert sum(c.split == "test" for c in layout.clips) == 4  # the release's test rows stay test
    assert sum(c.split != "test" for c in layout.clips) == 60
    assert layout.notes[0] == f"64 of 64 clips have no video file in {vggsound_root} (prepare lists them as failed)"
    assert layout.notes[1].startswith("val carved from train: ")
    for clip in layout.clips:
        check_video_id(clip.clip_id)


def test_vggsound_finds_clips_in_video_folder_or_video_dir(vggsound_root, tmp_path):
    found = touch(vggsound_root / "video", "---g-f_I2yQ_000001.mp4", "--0PQM4-hqg_000030.webm",
                  "--0PQM4-hqg_000030.mp4", "--56QUhyDQM_000185.MP4")
    layout = read_layout(vggsound_root)
    paths = {c.clip_id: c.path for c in layout.clips}
    assert paths["---g-f_I2yQ_000001"] == found[0]
    assert paths["--0PQM4-hqg_000030"] == found[2]  # .mp4 sorts before .webm: the first in name order wins
    assert paths["--56QUhyDQM_000185"] == found[3]
    assert paths["--5OkAjCI7g_000040"] == vggsound_root / "video" / "--5OkAjCI7g_000040.mp4"
    assert layout.notes[0].startswith(f"61 of 64 clips have no video file in {vggsound_root / 'video'}")
    other = touch(tmp_path / "elsewhere", "--5OkAjCI7g_000040.mkv")[0]
    layout = read_layout(vggsound_root, video_dir=tmp_path / "elsewhere")
    assert by_id(layout)["--5OkAjCI7g_000040"].path == other
    with pytest.raises(DataError, match="nope: video_dir is not a folder"):
        read_layout(vggsound_root, video_dir=tmp_path / "nope")


def test_vggsound_bad_rows(vggsound_root):
    csv = vggsound_root / "vggsound.csv"
    with csv.open("a") as f:
        f.write("# a comment line\n"                    # 65 skipped
                "abc,10,dog barking\n"                  # 66 three fields
                "bad id!,10,dog barking,train\n"        # 67
                "abcdefghijk,1.5,dog barking,train\n"   # 68
                "abcdefghijk,10,,train\n"               # 69
                "abcdefghijk,10,dog barking,holdout\n"  # 70
                "abcdefghijk,10,dog barking,val\n"      # 71 kept: val is a split
                "abcdefghijk,10,dog growling,train\n"   # 72 same clip as 71
                "---g-f_I2yQ,1,people marching,test\n")  # 73 same clip as line 1
    layout = read_layout(vggsound_root)
    assert len(layout.clips) == 65 and by_id(layout)["abcdefghijk_000010"].split == "val"
    assert layout.rejected == [
        (f"{csv}:66", "expected 4 fields (youtube_id,start_seconds,label,split), got 3"),
        (f"{csv}:67", "youtube id 'bad id!' is not a YouTube id"),
        (f"{csv}:68", "start_seconds '1.5' is not a whole number of seconds"),
        (f"{csv}:69", "no label"),
        (f"{csv}:70", "split 'holdout' is not one of train, val, test"),
        (f"{csv}:72", f"duplicate of {csv}:71 (abcdefghijk_000010)"),
        (f"{csv}:73", f"duplicate of {csv}:1 (---g-f_I2yQ_000001)"),
    ]
    assert not any(n.startswith("val carved") for n in layout.notes)  # val is given now


def test_vggsound_forced_without_its_csv(tmp_path):
    with pytest.raises(DataError) as err:
        read_layout(tmp_path, layout="vggsound")
    assert str(err.value) == f"{tmp_path}: no vggsound.csv (the vggsound layout reads ROOT/vggsound.csv)"


# -------------------------------------------------------------------------------------------------- AudioSet layout


def test_audioset_both_forms_read_the_same(audioset_root):
    root = audioset_root("normalised")
    normalised, distributed = read_layout(root), read_layout(audioset_root("distributed"))
    for layout in (normalised, distributed):
        assert layout.kind == "audioset" and layout.multi_label and layout.rejected == []
        assert len(layout.classes) == 527 and layout.classes[:2] == ["Speech", "Male speech, man speaking"]
        assert len(layout.clips) == 40
        assert sum(c.split == "test" for c in layout.clips) == 20
        assert sum(c.split in ("train", "val") for c in layout.clips) == 20
    strip = [(c.clip_id, c.labels, c.split, c.path.name) for c in normalised.clips]
    assert strip == [(c.clip_id, c.labels, c.split, c.path.name) for c in distributed.clips]
    first = normalised.clips[0]
    assert (first.clip_id, first.labels, first.where) == (
        "--PJHxphWEs_000030", ("Speech", "Gush"), f"{root / 'balanced_train_segments.csv'}:2")
    assert distributed.clips[0].where.endswith("distributed/balanced_train_segments.csv:4")
    flamenco = by_id(normalised)["AE5oZzfu2-E_000239"]  # start 239.800: int() of the start
    assert flamenco.labels == ("Flamenco",) and flamenco.where.endswith("balanced_train_segments.csv:21")
    conversation = by_id(normalised)["Arg6lz6Wryw_000417"]
    assert conversation.labels == ("Conversation",) and conversation.split == "test"
    labels = normalised.label_array()
    assert labels.shape == (40, 527) and labels.dtype == np.uint8
    assert labels[0].nonzero()[0].tolist() == [0, 451]  # /m/09x0r Speech, /t/dd00088 Gush
    assert labels.sum(axis=1).tolist() == [len(c.labels) for c in normalised.clips]


def test_audioset_file_names_in_order(audioset_root):
    root = audioset_root("normalised")
    video = root / "video"
    names = ["--PJHxphWEs_000030.mp4", "--PJHxphWEs_30.000_40.000.mkv", "--PJHxphWEs_30_40.webm",
             "Y--PJHxphWEs.mp4", "--PJHxphWEs.mp4"]
    touch(video, *names, "AE5oZzfu2-E_239.800_249.800.mp4", "Y--ZhevVpy1s.mp4")
    for name in names:  # each name wins while the ones before it are gone
        assert read_layout(root).clips[0].path == video / name
        (video / name).unlink()
    assert read_layout(root).clips[0].path == video / "--PJHxphWEs_000030.mp4"  # none: the expected path
    paths = {c.clip_id: c.path.name for c in read_layout(root).clips}
    assert paths["AE5oZzfu2-E_000239"] == "AE5oZzfu2-E_239.800_249.800.mp4"
    assert paths["--ZhevVpy1s_000050"] == "Y--ZhevVpy1s.mp4"


def test_audioset_bad_rows_duplicates_and_unknown_mids(audioset_root):
    root = audioset_root("distributed")
    unbalanced = write(root / "unbalanced_train_segments.csv",
                       "# Segments csv created Sun Mar  5 10:54:31 2017\n"
                       "# num_ytids=3, num_segs=3, num_unique_labels=2, num_positive_labels=3\n"
                       "# YTID, start_seconds, end_seconds, positive_labels\n"
                       '--PJHxphWEs, 30.000, 40.000, "/m/09x0r"\n'      # 4 also in balanced (line 4)
                       'zzzzzzzzzzz, 0.000, 10.000, "/m/09x0r,/m/nope,/m/gone"\n'  # 5
                       'yyyyyyyyyyy, ten, 10.000, "/m/09x0r"\n'         # 6
                       'xxxxxxxxxxx, 0.000, 10.000, ""\n'               # 7
                       'wwwwwwwwwww, 0.000, 10.000\n'                   # 8
                       'bad/id, 0.000, 10.000, "/m/09x0r"\n'            # 9
                       'vvvvvvvvvvv, 0.000, 10.000, "/m/09x0r"\n')      # 10 kept
    with (root / "eval_segments.csv").open("a") as f:
        f.write('vvvvvvvvvvv, 0.000, 10.000, "/m/09x0r"\n')             # 24 already in unbalanced
    layout = read_layout(root)
    balanced, evaluation = root / "balanced_train_segments.csv", root / "eval_segments.csv"
    assert layout.rejected == [
        (f"{unbalanced}:4", f"duplicate of {balanced}:4 (--PJHxphWEs_000030)"),
        (f"{unbalanced}:5", "unknown label '/m/nope', '/m/gone' (not in class_labels_indices.csv)"),
        (f"{unbalanced}:6", "start_seconds 'ten' and end_seconds '10.000' must be numbers >= 0"),
        (f"{unbalanced}:7", "no label"),
        (f"{unbalanced}:8", "expected 4 fields (YTID, start_seconds, end_seconds, positive_labels), got 3"),
        (f"{unbalanced}:9", "YTID 'bad/id' is not a YouTube id"),
        (f"{evaluation}:24", f"duplicate of {unbalanced}:10 (vvvvvvvvvvv_000000)"),
    ]
    assert by_id(layout)["vvvvvvvvvvv_000000"].split in ("train", "val") and len(layout.clips) == 41


def test_audioset_structural_errors(audioset_root, tmp_path):
    root = audioset_root("normalised")
    segments = root / "eval_segments.csv"
    segments.write_text("id,start,end,labels\n" + "".join(segments.read_text().splitlines(True)[1:]))
    with pytest.raises(DataError) as err:
        read_layout(root)
    assert str(err.value) == (f"{segments}:1: expected the header YTID,start_seconds,end_seconds,positive_labels "
                              "(or the release's '# YTID, start_seconds, end_seconds, positive_labels' line), "
                              "got 'id,start,end,labels'")
    segments.write_text("# only a comment\n")
    with pytest.raises(DataError, match="eval_segments.csv: expected the header .*found no row"):
        read_layout(root)
    index = root / "class_labels_indices.csv"
    lines = index.read_text().splitlines(True)
    index.write_text(lines[0] + lines[1] + lines[3])
    with pytest.raises(DataError, match=r"class_labels_indices\.csv:3: expected index,mid,display_name with index 1"):
        read_layout(root)
    index.write_text(lines[0] + lines[1] + lines[1].replace("0,", "1,", 1))
    with pytest.raises(DataError, match=r":3: mid '/m/09x0r' or name 'Speech' listed twice"):
        read_layout(root)
    index.write_text("idx,mid,name\n")
    with pytest.raises(DataError, match=":1: expected the header index,mid,display_name"):
        read_layout(root)
    only_index = tmp_path / "only_index"
    write(only_index / "class_labels_indices.csv", "".join(lines))
    with pytest.raises(DataError) as err:
        read_layout(only_index)
    assert str(err.value) == (f"{only_index}: not an AudioSet folder, missing balanced_train_segments.csv or "
                              "unbalanced_train_segments.csv or eval_segments.csv")
    with pytest.raises(DataError, match="missing class_labels_indices.csv and balanced"):
        read_layout(tmp_path / "only_index" / "..", layout="audioset")


def test_audioset_without_eval_file_carves_test(audioset_root):
    root = audioset_root("normalised")
    (root / "eval_segments.csv").unlink()
    layout = read_layout(root, val_fraction=0.2, test_fraction=0.2)
    assert len(layout.clips) == 20 and {c.split for c in layout.clips} <= set(SPLITS)
    assert layout.notes[1].startswith("val carved from train") and layout.notes[2].startswith("test carved from train")


# ----------------------------------------------------------------------------------------------- detection, options


def test_auto_detection_order(tmp_path, reference_data):
    both = tmp_path / "both"
    shutil.copytree(reference_data / "classify" / "audioset" / "normalised", both)
    shutil.copy(reference_data / "classify" / "vggsound" / "vggsound.csv", both)
    write(both / "labels.csv", "a.mp4,dog\n")
    touch(both, "dog/a.mp4")
    assert read_layout(both).kind == "audioset"
    (both / "class_labels_indices.csv").unlink()
    assert read_layout(both).kind == "vggsound"
    (both / "vggsound.csv").unlink()
    assert read_layout(both).kind == "csv"
    (both / "labels.csv").unlink()
    assert read_layout(both).kind == "folder"
    assert read_layout(both, csv=write(tmp_path / "x.csv", "a.mp4,dog\n")).kind == "csv"
    assert read_layout(tmp_path / "x.csv").kind == "csv"
    assert read_layout(both, layout="folder").classes == ["dog"]
    with pytest.raises(DataError, match="x.txt: not a folder or a .csv file"):
        read_layout(write(tmp_path / "x.txt", "a.mp4,dog\n"))
    assert read_layout(tmp_path / "x.txt", layout="csv").kind == "csv"  # forced: any file name


def test_options_that_do_not_apply_are_refused(tmp_path, vggsound_root, audioset_root):
    touch(tmp_path / "folder", "dog/a.mp4")
    cases = [
        ({"layout": "nope"}, "layout 'nope': expected one of auto, folder, csv, vggsound, audioset"),
        ({"val_fraction": 1.0}, r"val_fraction must lie in \[0, 1\), got 1.0"),
        ({"test_fraction": -0.1}, r"test_fraction must lie in \[0, 1\), got -0.1"),
        ({"val_fraction": 0.5, "test_fraction": 0.5}, r"val_fraction \+ test_fraction must be below 1, got 0.5 \+ 0.5"),
        ({"classes_file": tmp_path / "c.txt"}, "classes_file does not apply to the folder layout"),
        ({"video_dir": tmp_path}, "video_dir does not apply to the folder layout"),
        ({"multi_label": True}, "the folder layout is single-label: multi_label=True does not apply"),
        ({"seed": -1}, "seed must be >= 0, got -1"),
    ]
    for kwargs, message in cases:
        with pytest.raises(ConfigError, match=message):
            read_layout(tmp_path / "folder", **kwargs)
    with pytest.raises(ConfigError, match="csv does not apply to the folder layout"):
        read_layout(tmp_path / "folder", layout="folder", csv=tmp_path / "x.csv")
    with pytest.raises(ConfigError, match="video_dir does not apply to the csv layout"):
        read_layout(write(tmp_path / "l.csv", "a.mp4,dog\n"), video_dir=tmp_path)
    with pytest.raises(ConfigError, match="the vggsound layout is single-label: multi_label=True"):
        read_layout(vggsound_root, multi_label=True)
    with pytest.raises(ConfigError, match="classes_file does not apply to the vggsound layout"):
        read_layout(vggsound_root, classes_file=tmp_path / "c.txt")
    with pytest.raises(ConfigError, match="the audioset layout is multi-label: multi_label=False does not apply"):
        read_layout(audioset_root("normalised"), multi_label=False)
    assert read_layout(vggsound_root, multi_label=False).kind == "vggsound"  # agreeing is fine


# ---------------------------------------------------------------------------------------------------------- carving


def sized_csv(path: Path, sizes: dict[str, int], reverse: bool = False) -> Path:
    rows = [f"{name}/{i:03d}.mp4,{name}" for name, n in sizes.items() for i in range(n)]
    return write(path, "\n".join(rows[::-1] if reverse else rows) + "\n")


@pytest.mark.parametrize(("val", "test", "expected"), [
    # class size -> (val, test), worked by hand: round_half_up(fraction * n), at least one clip left in train
    (0.1, 0.1, {1: (0, 0), 2: (0, 0), 5: (1, 1), 10: (1, 1), 15: (2, 2), 25: (3, 3)}),
    (0.3, 0.3, {1: (0, 0), 2: (1, 0), 3: (1, 1), 5: (2, 2), 10: (3, 3)}),
    (0.45, 0.45, {4: (2, 1), 2: (1, 0), 20: (9, 9)}),
    (0.58, 0.0, {25: (15, 0), 2: (1, 0)}),  # 0.58 * 25 + 0.5 is 14.999... in floats: the rule is exact
    (0.0, 0.2, {10: (0, 2), 3: (0, 1)}),
])
def test_carving_proportions(tmp_path, val, test, expected):
    sizes = {f"c{n:02d}": n for n in expected}
    layout = read_layout(sized_csv(tmp_path / "l.csv", sizes), val_fraction=val, test_fraction=test)
    for n, (n_val, n_test) in expected.items():
        assert split_sizes(layout, f"c{n:02d}") == {"train": n - n_val - n_test, "val": n_val, "test": n_test}


def test_carving_is_deterministic_per_seed_and_independent_of_row_order_and_other_classes(tmp_path):
    sizes = {"dog": 20, "cat": 30}
    base = read_layout(sized_csv(tmp_path / "a.csv", sizes), val_fraction=0.2, test_fraction=0.2)
    again = read_layout(sized_csv(tmp_path / "a.csv", sizes), val_fraction=0.2, test_fraction=0.2)
    reversed_rows = read_layout(sized_csv(tmp_path / "b.csv", sizes, reverse=True), val_fraction=0.2, test_fraction=0.2)
    more = read_layout(sized_csv(tmp_path / "c.csv", {"ant": 7, **sizes}), val_fraction=0.2, test_fraction=0.2)
    other_seed = read_layout(sized_csv(tmp_path / "a.csv", sizes), val_fraction=0.2, test_fraction=0.2, seed=1)

    def assignment(layout):
        return {c.clip_id: c.split for c in layout.clips if c.labels[0] != "ant"}

    assert assignment(base) == assignment(again) == assignment(reversed_rows) == assignment(more)
    assert assignment(other_seed) != assignment(base)
    for layout in (base, other_seed):
        assert split_sizes(layout, "dog") == {"train": 12, "val": 4, "test": 4}
        assert split_sizes(layout, "cat") == {"train": 18, "val": 6, "test": 6}
    # the val clips are not always the first ones: the shuffle is real
    assert {i for i, c in enumerate(base.clips) if c.split == "val" and c.labels[0] == "dog"} != set(range(4))


def test_carving_follows_the_documented_shuffle(tmp_path):
    """The module docstring's rule, step by step: ids sorted, permuted by default_rng([seed, crc32(name)]),
    val first, then test."""
    sizes = {"dog": 20, "cat": 9}
    for seed in (0, 7):
        layout = read_layout(sized_csv(tmp_path / "l.csv", sizes), val_fraction=0.2, test_fraction=0.1, seed=seed)
        for name, n in sizes.items():
            ids = sorted(f"{name}__{i:03d}" for i in range(n))
            order = [ids[j] for j in np.random.default_rng([seed, zlib.crc32(name.encode())]).permutation(n)]
            n_val, n_test = {20: (4, 2), 9: (2, 1)}[n]
            got = {c.clip_id: c.split for c in layout.clips if c.labels[0] == name}
            assert [got[i] for i in order] == ["val"] * n_val + ["test"] * n_test + ["train"] * (n - n_val - n_test)
