"""`prepare avqa` stores each segment's frame at the centre of its audio window, the instants `ask` decodes at."""

from __future__ import annotations

import json

import numpy as np

from lavish.data.cache import frames_path
from lavish.media.audio import get_frontend, window_centres
from lavish.media.decode import decode_clip, read_audio, read_frames

from avqa_layout import make_avqa_layout, prepare_avqa_cache


def test_cached_frames_are_taken_at_the_window_centres(tmp_path):
    layout = make_avqa_layout(tmp_path / "data", num_videos=5)
    cache = prepare_avqa_cache(layout, tmp_path / "cache")
    manifest = json.loads((cache / "manifest.json").read_text())
    frontend = get_frontend(manifest["frontend"]["name"])
    size = tuple(manifest["frame_size"])
    items = json.loads((cache / "videos.json").read_text())
    assert len(items) == 5
    for item in items:
        video = layout / "videos" / f"{item['video_id']}.mp4"
        cached = np.load(frames_path(cache, item["video_id"]))
        centres = window_centres(read_audio(video).size, 10, frontend.window_s)
        assert centres[0] == frontend.window_s / 2 and np.all(np.diff(centres) > 0)
        np.testing.assert_array_equal(cached, read_frames(video, centres, size))
        # `lavish ask` decodes with the checkpoint's front-end, frame size and segment count: the same frames
        clip = decode_clip(video, num_segments=manifest["num_segments"], frame_size=size, frontend=frontend.name)
        np.testing.assert_array_equal(clip.frames, cached)
        assert clip.times.tolist() == centres.tolist()


def test_a_cache_from_before_the_alignment_is_refused(tmp_path):
    """Version-1 caches hold frames at the segment middles: reading or resuming one says to prepare again."""
    import pytest

    from lavish.data.cache import read_manifest
    from lavish.tasks.avqa.prepare import prepare_avqa
    from lavish.errors import DataError

    layout = make_avqa_layout(tmp_path / "data", num_videos=5)
    cache = prepare_avqa_cache(layout, tmp_path / "cache")
    for name in ("manifest.json", "settings.json"):
        record = json.loads((cache / name).read_text())
        (cache / name).write_text(json.dumps({**record, "format_version": 1}))
    with pytest.raises(DataError, match=r"cache format version 1, this lavish reads 2; prepare it again"):
        read_manifest(cache)
    with pytest.raises(DataError, match=r"format_version 1 \(cache\) vs 2 \(requested\)"):
        prepare_avqa(layout, cache, frame_size=(64, 64), frontend=get_frontend("micro"), progress=False)
