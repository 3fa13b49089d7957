"""write_video: atomic writes, audio-only files, bad arguments; normalize_frames."""

from __future__ import annotations

import av
import numpy as np
import pytest
import torch

from lavish.errors import MediaError
from lavish.media.decode import probe
from lavish.media.frames import IMAGENET_MEAN, IMAGENET_STD, normalize_frames
from lavish.media.writer import write_video

from media_gen import index_frames, tone


def test_write_is_atomic_and_leaves_no_temp_file(tmp_path):
    path = write_video(tmp_path / "v.mp4", index_frames(6), 6.0, tone(440, 1.0, 16000))
    assert [p.name for p in tmp_path.iterdir()] == ["v.mp4"]
    with pytest.raises(MediaError, match="must be"):
        write_video(tmp_path / "v.mp4", np.zeros((2, 8, 8), np.uint8), 6.0)
    assert [p.name for p in tmp_path.iterdir()] == ["v.mp4"]  # old file intact, temp removed
    assert probe(path).has_audio


def test_unknown_extension_and_channel_count(tmp_path):
    with pytest.raises(MediaError, match="cannot write extension '.gif'"):
        write_video(tmp_path / "v.gif", index_frames(2), 6.0)
    with pytest.raises(MediaError, match="1, 2 or 6 channels"):
        write_video(tmp_path / "v.mp4", index_frames(2), 6.0, np.zeros((3, 100), np.float32))


def test_audio_only_file(tmp_path):
    info = probe(write_video(tmp_path / "a.mkv", np.zeros(0, np.uint8), 25.0, tone(440, 1.0, 22050), 22050,
                             audio_codec="opus"))
    assert not info.has_video and info.has_audio and info.sample_rate == 48000  # opus only takes 48 kHz here


def test_normalize_frames():
    frames = torch.from_numpy(index_frames(3, 8, 10))
    out = normalize_frames(frames)
    assert out.shape == (3, 3, 8, 10) and out.dtype == torch.float32
    pixel = frames[1, 0, 0].float() / 255
    expected = (pixel - torch.tensor(IMAGENET_MEAN)) / torch.tensor(IMAGENET_STD)
    assert torch.allclose(out[1, :, 0, 0], expected)


def test_the_same_frames_give_the_same_file_every_time(tmp_path):
    """A synthetic dataset is reproducible byte for byte: the h264 writer gives the same file for the same frames,
    also after decoding has left freed buffers in the process heap (with x264's mbtree on, as before, this test
    failed: some of these clips came out different between writes)."""
    from lavish.tasks.avvp.synthetic import _render, synthetic_plan

    plan = synthetic_plan(num_train=6, num_val=3, num_test=3, num_classes=4, seed=0)
    clips = [(events, seed) for split in plan.values() for _, events, seed in split]
    assert len(clips) == 12
    for events, seed in clips:
        frames, audio = _render(events, 64, np.random.default_rng(seed))
        digests = set()
        for _ in range(4):
            path = write_video(tmp_path / "clip.mp4", frames, 8, audio, 16000)
            digests.add(path.read_bytes())
            with av.open(str(path)) as container:  # decoding between writes reuses the heap, as a dataset job does
                decoded = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
            assert len(decoded) == 80
        assert len(digests) == 1
