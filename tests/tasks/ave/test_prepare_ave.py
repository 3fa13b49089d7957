from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from lavish.data import cache
from lavish.data.cache import AveCacheDataset, check_manifest
from lavish.tasks.ave.prepare import prepare_ave
from lavish.errors import DataError
from lavish.media.audio import get_frontend
from lavish.media.decode import decode_clip

from ave_layout import ROWS, make_layout, write_mp4

FRAME = (64, 64)


@pytest.fixture(scope="module")
def layout(tmp_path_factory):
    return make_layout(tmp_path_factory.mktemp("ave"))


@pytest.fixture(scope="module")
def prepared(layout, tmp_path_factory):
    out = tmp_path_factory.mktemp("cache") / "c"
    report = prepare_ave(layout, out, frame_size=FRAME, frontend=get_frontend("micro"), progress=False)
    return out, report


def _tree(out):
    return {p.relative_to(out): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}


def test_cache_round_trips_decode_clip(layout, prepared):
    out, report = prepared
    assert (report.prepared, report.skipped, report.failed, report.videos) == (5, 0, {}, 5)
    assert report.items == 6
    frontend = get_frontend("micro")
    manifest = check_manifest(out, task="ave", frame_size=FRAME, frontend_name="micro")
    assert manifest["classes"] == ["Bark", "Cat"] and manifest["background"] == 2
    assert manifest["splits"] == {"train": [0, 1, 2, 3], "val": [4], "test": [5]}
    ds = AveCacheDataset(out, "train")
    assert len(ds) == 4
    for i in range(len(ds)):
        item = ds[i]
        clip = decode_clip(layout / "AVE" / f"{item['video_id']}.mp4", num_segments=10, frame_size=FRAME,
                           frontend=frontend)
        assert item["frames"].dtype.is_floating_point is False and tuple(item["frames"].shape) == (10, 64, 64, 3)
        np.testing.assert_array_equal(item["frames"].numpy(), clip.frames)
        np.testing.assert_array_equal(item["audio"].numpy(), clip.spectrograms.astype(np.float16).astype(np.float32))
        assert item["audio"].shape == clip.spectrograms.shape and item["has_audio"]
        _, vid, start, end = ROWS[i]
        want = np.full(10, 2)
        want[start:end] = ["Bark", "Cat"].index(ROWS[i][0])
        assert item["video_id"] == vid and item["labels"].tolist() == want.tolist() and item["index"] == i
    # the twice-listed video is stored once, with both rows' labels
    assert ds[1]["video_id"] == ds[3]["video_id"] == "vid_b"
    assert ds[1]["labels"].tolist() != ds[3]["labels"].tolist()


def test_second_run_skips_everything_and_is_identical(layout, prepared, tmp_path):
    out, _ = prepared
    before = _tree(out)
    report = prepare_ave(layout, out, frame_size=FRAME, frontend=get_frontend("micro"), progress=False)
    assert (report.prepared, report.skipped, len(report.failed)) == (0, 5, 0)
    assert _tree(out) == before


def test_refuses_cache_of_other_settings(layout, prepared):
    out, _ = prepared
    with pytest.raises(DataError, match=r"frame_size \[64, 64\] \(cache\) vs \[192, 192\] \(needed\)"):
        check_manifest(out, task="ave", frame_size=(192, 192), frontend_name="micro")
    with pytest.raises(DataError, match="audio front-end 'micro' \\(cache\\) vs 'ave' \\(needed\\)"):
        check_manifest(out, task="ave", frame_size=FRAME, frontend_name="ave")
    with pytest.raises(DataError, match="other settings.*frame_size"):
        prepare_ave(layout, out, frame_size=(32, 32), frontend=get_frontend("micro"), progress=False)
    with pytest.raises(DataError, match="num_mel_bins"):
        prepare_ave(layout, out, frame_size=FRAME, frontend=get_frontend("ave"), progress=False)


def test_bad_and_missing_videos_are_reported_not_fatal(tmp_path):
    root = make_layout(tmp_path / "ave", skip_videos=("vid_c",))
    (root / "AVE" / "vid_d.mp4").write_text("this is not a video\n")
    out = tmp_path / "cache"
    report = prepare_ave(root, out, frame_size=FRAME, frontend=get_frontend("micro"), workers=2, progress=False)
    assert report.prepared == 3 and set(report.failed) == {"vid_c", "vid_d"}
    assert report.failed["vid_c"] == "file not found"
    rows = (out / "failed.tsv").read_text().splitlines()
    assert rows[0] == "video_id\tpath\treason"
    assert rows[1].startswith(f"vid_c\t{root / 'AVE' / 'vid_c.mp4'}\tfile not found")
    assert rows[2].startswith("vid_d\t") and len(rows[2].split("\t")) == 3
    manifest = cache.read_manifest(out)
    assert set(manifest["failed"]) == {"vid_c", "vid_d"}
    # rows of failed videos leave the splits: train keeps vid_a, vid_b, vid_b; val (vid_d) is empty
    assert [it["video_id"] for it in (cache.read_json(out / "videos.json"))] == ["vid_a", "vid_b", "vid_b", "vid_e"]
    assert manifest["splits"] == {"train": [0, 1, 2], "val": [], "test": [3]}
    assert "failed 2 of 5" in report.summary()
    # fixing the files and rerunning prepares only those two
    write_mp4(root / "AVE" / "vid_c.mp4", 2)
    write_mp4(root / "AVE" / "vid_d.mp4", 3)
    report = prepare_ave(root, out, frame_size=FRAME, frontend=get_frontend("micro"), progress=False)
    assert (report.prepared, report.skipped, report.failed) == (2, 3, {})
    assert cache.read_manifest(out)["splits"]["val"] == [4]


def test_malformed_annotation_is_a_clear_error(tmp_path):
    root = make_layout(tmp_path / "ave", rows=ROWS[:1], splits={"train": [0], "val": [], "test": []})
    (root / "Annotations.txt").write_text("Bark&vid_a&good&0&10\nBark&vid_x&good&zero&10")
    with pytest.raises(DataError, match=r"Annotations.txt:2: start/end must be integer"):
        prepare_ave(root, tmp_path / "cache", frame_size=FRAME, frontend=get_frontend("micro"), progress=False)


def test_video_without_audio_is_prepared_silent(tmp_path):
    root = make_layout(tmp_path / "ave", rows=ROWS[:1], splits={"train": [0], "val": [], "test": []}, audio=False)
    report = prepare_ave(root, tmp_path / "cache", frame_size=FRAME, frontend=get_frontend("micro"), progress=False)
    assert report.prepared == 1 and report.without_audio == 1
    item = AveCacheDataset(tmp_path / "cache", "train")[0]
    assert item["has_audio"] is False


def test_incomplete_cache_is_refused(prepared, tmp_path):
    out, _ = prepared
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(out, broken)
    (broken / "frames" / "vid_a.npy").unlink()
    with pytest.raises(DataError, match="incomplete.*frames/vid_a.npy"):
        AveCacheDataset(broken, "train")
    (broken / "manifest.json").unlink()
    with pytest.raises(DataError, match="prepare did not finish"):
        AveCacheDataset(broken, "train")


def test_killed_run_resumes_to_identical_cache(layout, prepared, tmp_path):
    """kill -9 a prepare run in the middle, plant a stale temp file, rerun: same bytes as an uninterrupted run."""
    out = tmp_path / "cache"
    script = textwrap.dedent(f"""
        import sys
        from lavish.tasks.ave.prepare import prepare_ave
        from lavish.media.audio import get_frontend
        prepare_ave({str(layout)!r}, {str(out)!r}, frame_size=(64, 64), frontend=get_frontend("micro"), progress=False)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script])
    deadline = time.monotonic() + 120
    # a finished video's marker, not the hidden temp file it is written through (".vid_a.json.tmp-<pid>-<hex>.json"
    # matches "*.json" too: killing on it left no video done, and the test failed now and then)
    while time.monotonic() < deadline and proc.poll() is None and not [
            p for p in out.glob("done/*.json") if not p.name.startswith(".")]:
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert not (out / "manifest.json").exists()
    with pytest.raises(DataError, match="prepare did not finish"):
        check_manifest(out, task="ave", frame_size=FRAME, frontend_name="micro")
    (out / "audio").mkdir(exist_ok=True)
    stale = out / "audio" / ".vid_e.npy.tmp-99999"
    stale.write_bytes(b"half a file")
    report = prepare_ave(layout, out, frame_size=FRAME, frontend=get_frontend("micro"), progress=False)
    assert report.prepared + report.skipped == 5 and report.skipped >= 1 and report.prepared >= 1 and not report.failed
    assert not stale.exists()
    reference, _ = prepared
    a, b = _tree(reference), _tree(out)
    assert a.keys() == b.keys()
    for key in a:
        if key.name not in ("manifest.json", "settings.json", "failed.tsv"):
            assert a[key] == b[key], key
