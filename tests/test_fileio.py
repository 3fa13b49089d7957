"""lavish.fileio: whole files or the previous ones, made durable (the file and its folder are fsync-ed before and
after the rename), a failed write named in one line with the old file intact and no temp file left."""

from __future__ import annotations

import errno
import json
import os
import stat

import numpy as np
import pytest

from lavish import fileio
from lavish.errors import LavishError, WriteError


def test_writes_round_trip_and_leave_no_temp_file(tmp_path):
    fileio.write_json(tmp_path / "a" / "b.json", {"x": [1, 2.5, None]})
    fileio.save_npy(tmp_path / "c.npy", np.arange(6, dtype=np.int16).reshape(2, 3)[:, ::2])
    fileio.write_text(tmp_path / "d.txt", "é\n")
    assert json.loads((tmp_path / "a" / "b.json").read_text()) == {"x": [1, 2.5, None]}
    np.testing.assert_array_equal(np.load(tmp_path / "c.npy", allow_pickle=False), [[0, 2], [3, 5]])
    assert (tmp_path / "d.txt").read_bytes() == "é\n".encode()
    assert not [p for p in tmp_path.rglob("*") if fileio.TEMP_MARK in p.name]


def test_file_and_folder_are_fsynced_before_and_after_the_rename(tmp_path, monkeypatch):
    events = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        mode = os.fstat(fd).st_mode
        events.append(("fsync", "folder" if stat.S_ISDIR(mode) else "file"))
        real_fsync(fd)

    def replace(src, dst):
        events.append(("rename", os.path.basename(dst)))
        real_replace(src, dst)

    monkeypatch.setattr(fileio.os, "fsync", fsync)
    monkeypatch.setattr(fileio.os, "replace", replace)
    fileio.write_bytes(tmp_path / "f.bin", b"abc")
    assert events == [("fsync", "file"), ("rename", "f.bin"), ("fsync", "folder")]


def test_a_full_disk_keeps_the_previous_file_and_says_so(tmp_path, monkeypatch):
    path = tmp_path / "results.json"
    fileio.write_json(path, {"old": 1})

    def full(tmp, target):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(fileio, "_commit", full)
    with pytest.raises(WriteError) as info:
        fileio.write_json(path, {"new": 2})
    assert isinstance(info.value, LavishError)
    message = str(info.value)
    assert str(path) in message and "No space left on device" in message and "intact" in message
    assert "\n" not in message
    assert json.loads(path.read_text()) == {"old": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results.json"]


def test_a_library_failing_midway_leaves_nothing_behind(tmp_path):
    path = tmp_path / "plot.png"
    path.write_bytes(b"previous")
    with pytest.raises(RuntimeError, match="boom"):
        with fileio.atomic_path(path) as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("boom")
    assert path.read_bytes() == b"previous" and sorted(p.name for p in tmp_path.iterdir()) == ["plot.png"]


def test_an_unwritable_place_is_one_line(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(WriteError, match=r"cannot write .*file/out\.json"):
        fileio.write_json(tmp_path / "file" / "out.json", {})


def test_temp_names_keep_the_suffix_and_stale_ones_are_removed(tmp_path):
    tmp = fileio.temp_path(tmp_path / "timeline.png")
    assert tmp.parent == tmp_path and tmp.name.startswith(".timeline.png" + fileio.TEMP_MARK) and tmp.suffix == ".png"
    assert fileio.temp_path(tmp_path / "timeline.png") != tmp
    tmp.write_bytes(b"left by a killed process")
    (tmp_path / "keep.png").write_bytes(b"x")
    assert fileio.remove_stale_temp_files(tmp_path, tmp_path / "missing") == 1
    assert [p.name for p in tmp_path.iterdir()] == ["keep.png"]
