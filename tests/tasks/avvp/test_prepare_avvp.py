"""prepare_avvp on a synthetic LLP copy: labels as the csv files say, resume, bad and missing clips, the dataset."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from lavish.data import cache
from lavish.tasks.avvp import layout as llp
from lavish.data.cache import check_manifest
from lavish.tasks.avvp.dataset import AvvpCacheDataset
from lavish.tasks.avvp.prepare import prepare_avvp
from lavish.tasks.avvp.synthetic import make_synthetic_llp
from lavish.errors import DataError
from lavish.media.audio import get_frontend
from lavish.media.decode import decode_clip

FRAME = (64, 64)
MICRO = get_frontend("micro")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_synthetic_llp(tmp_path_factory.mktemp("llp"), num_train=4, num_val=3, num_test=3, num_classes=3,
                              size=48, seed=1)


@pytest.fixture(scope="module")
def prepared(data, tmp_path_factory):
    out = tmp_path_factory.mktemp("cache") / "c"
    report = prepare_avvp(data, out, frame_size=FRAME, frontend=MICRO, progress=False)
    return out, report


def _tree(out):
    return {p.relative_to(out): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}


def _csv(path):
    return [line.split("\t") for line in path.read_text().splitlines()[1:]]


def _expected(data, names):
    """(per-second (n, 2, 10, 25), weak (n, 25)) worked out from the csv text, -1 for train clips."""
    weak = {r[0]: r[1].split(",") for f in llp.SPLIT_FILES.values() for r in _csv(data / f)}
    val_test = {r[0] for f in ("AVVP_val_pd.csv", "AVVP_test_pd.csv") for r in _csv(data / f)}
    rows = {m: _csv(data / f) for m, f in zip(("audio", "visual"), llp.EVAL_FILES)}
    per_second = np.full((len(names), 2, 10, 25), -1)
    video = np.zeros((len(names), 25), dtype=int)
    for i, name in enumerate(names):
        for label in weak[name]:
            video[i, llp.CLASSES.index(label)] = 1
        if name in val_test:
            per_second[i] = 0
            for m, modality in enumerate(("audio", "visual")):
                for filename, onset, offset, label in rows[modality]:
                    if filename == name:
                        for t in range(int(onset), int(offset)):
                            per_second[i, m, t, llp.CLASSES.index(label)] = 1
    return per_second, video


def test_cache_holds_the_csv_labels_and_decoded_clips(data, prepared):
    out, report = prepared
    assert (report.prepared, report.skipped, report.failed, report.videos, report.items) == (10, 0, {}, 10, 10)
    manifest = check_manifest(out, task="avvp", frame_size=FRAME, frontend_name="micro")
    assert manifest["classes"] == list(llp.CLASSES) and manifest["num_segments"] == 10
    assert manifest["splits"] == {"train": [0, 1, 2, 3], "val": [4, 5, 6], "test": [7, 8, 9]}
    items = json.loads((out / "videos.json").read_text())
    names = [r[0] for f in llp.SPLIT_FILES.values() for r in _csv(data / f)]
    assert [it["video_id"] for it in items] == names
    assert [it["split"] for it in items] == ["train"] * 4 + ["val"] * 3 + ["test"] * 3
    labels, weak = np.load(out / "labels.npy"), np.load(out / "video_labels.npy")
    assert labels.dtype == weak.dtype == np.int64 and labels.shape == (10, 2, 10, 25) and weak.shape == (10, 25)
    want_labels, want_weak = _expected(data, names)
    np.testing.assert_array_equal(labels, want_labels)
    np.testing.assert_array_equal(weak, want_weak)
    assert labels[4:].sum() > 0 and (labels[:4] == -1).all()
    for split in ("train", "val", "test"):
        ds = AvvpCacheDataset(out, split)
        for i in range(len(ds)):
            item = ds[i]
            index = item["index"]
            assert item["video_id"] == names[index] and item["has_audio"] is True
            assert item["labels"].dtype.is_floating_point and item["labels"].tolist() == want_weak[index].tolist()
            assert item["audio_labels"].shape == item["visual_labels"].shape == (10, 25)
            assert item["audio_labels"].tolist() == want_labels[index, 0].tolist()
            assert item["visual_labels"].tolist() == want_labels[index, 1].tolist()
    item = AvvpCacheDataset(out, "val")[0]
    clip = decode_clip(data / "LLP_dataset" / "video" / f"{item['video_id']}.mp4", num_segments=10, frame_size=FRAME,
                       frontend=MICRO)
    assert tuple(item["frames"].shape) == (10, 64, 64, 3) and item["frames"].dtype.is_floating_point is False
    np.testing.assert_array_equal(item["frames"].numpy(), clip.frames)
    np.testing.assert_array_equal(item["audio"].numpy(), clip.spectrograms.astype(np.float16).astype(np.float32))


def test_partial_run_resumes_to_the_same_cache(data, prepared, tmp_path):
    """A run stopped after some clips (done markers of the others and the manifest absent, a stale temp file):
    the rerun decodes only the missing clips and leaves the same bytes as the uninterrupted run."""
    out, _ = prepared
    partial = tmp_path / "partial"
    shutil.copytree(out, partial)
    (partial / "manifest.json").unlink()
    (partial / "labels.npy").unlink()
    names = [it["video_id"] for it in json.loads((out / "videos.json").read_text())]
    for name in names[2:7]:
        (partial / "done" / f"{name}.json").unlink()
        (partial / "frames" / f"{name}.npy").unlink()
    stale = partial / "audio" / f".{names[3]}.npy.tmp-99999"
    stale.write_bytes(b"half a file")
    with pytest.raises(DataError, match="prepare did not finish"):
        AvvpCacheDataset(partial, "train")
    # the settings record names the source folder: same folder, same settings
    report = prepare_avvp(data, partial, frame_size=FRAME, frontend=MICRO, progress=False, workers=2)
    assert (report.prepared, report.skipped, report.failed) == (5, 5, {})
    assert not stale.exists()
    assert _tree(partial) == _tree(out)
    report = prepare_avvp(data, partial, frame_size=FRAME, frontend=MICRO, progress=False)
    assert (report.prepared, report.skipped) == (0, 10) and _tree(partial) == _tree(out)


def test_bad_and_missing_clips_are_reported(data, tmp_path):
    root = tmp_path / "llp"
    shutil.copytree(data, root)
    video = root / "LLP_dataset" / "video"
    items = [r[0] for f in llp.SPLIT_FILES.values() for r in _csv(root / f)]
    missing, corrupt, by_id = items[1], items[5], items[8]
    (video / f"{missing}.mp4").unlink()
    (video / f"{corrupt}.mp4").write_text("this is not a video\n")
    (video / f"{by_id}.mp4").rename(video / f"{by_id[:11]}.mp4")  # the release's downloader names clips by id
    out = tmp_path / "cache"
    report = prepare_avvp(root, out, frame_size=FRAME, frontend=MICRO, progress=False, workers=2)
    assert report.prepared == 8 and set(report.failed) == {missing, corrupt}
    assert report.failed[missing] == "file not found"
    rows = (out / "failed.tsv").read_text().splitlines()
    assert rows[0] == "video_id\tpath\treason" and len(rows) == 3
    reasons = {r.split("\t")[0]: r.split("\t") for r in rows[1:]}
    assert reasons[missing][1:] == [str(video / f"{missing}.mp4"), "file not found"]
    assert reasons[corrupt][1] == str(video / f"{corrupt}.mp4") and reasons[corrupt][2]
    manifest = cache.read_manifest(out)
    assert set(manifest["failed"]) == {missing, corrupt}
    kept = [n for n in items if n not in (missing, corrupt)]
    assert [it["video_id"] for it in json.loads((out / "videos.json").read_text())] == kept
    assert manifest["splits"] == {"train": [0, 1, 2], "val": [3, 4], "test": [5, 6, 7]}
    want_labels, want_weak = _expected(root, kept)
    np.testing.assert_array_equal(np.load(out / "labels.npy"), want_labels)
    np.testing.assert_array_equal(np.load(out / "video_labels.npy"), want_weak)
    assert AvvpCacheDataset(out, "test")[1]["video_id"] == by_id
    assert "failed 2 of 10" in report.summary()


def test_no_clip_found_and_wrong_cache(data, prepared, tmp_path):
    root = tmp_path / "llp"
    shutil.copytree(data, root, ignore=shutil.ignore_patterns("*.mp4"))
    (root / "LLP_dataset" / "video" / "unrelated.mp4").write_bytes(b"")
    with pytest.raises(DataError, match=r"video: none of the 10 clips .* is there"):
        prepare_avvp(root, tmp_path / "cache", frame_size=FRAME, frontend=MICRO, progress=False)
    assert not (tmp_path / "cache").exists()
    out, _ = prepared
    other = tmp_path / "other"
    shutil.copytree(out, other)
    manifest = json.loads((other / "manifest.json").read_text())
    manifest["task"] = "ave"
    (other / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(DataError, match="prepared for task 'ave', not 'avvp'"):
        AvvpCacheDataset(other, "val")
    with pytest.raises(DataError, match="other settings.*frame_size"):
        prepare_avvp(data, out, frame_size=(32, 32), frontend=MICRO, progress=False)
