"""VideoStream: the segments of decode_clip, a few at a time, on real generated files (codecs, containers, no audio,
shorter than a window, T spread segments, streams stored far apart, a file cut in the middle)."""

from __future__ import annotations

import numpy as np
import pytest

from lavish.errors import ConfigError, MediaError
from lavish.media.decode import decode_clip
from lavish.media.stream import VideoStream
from lavish.media.writer import write_generated_video, write_video
from media_gen import timecode_frames, tone

SR = 16000


def _joined(stream: VideoStream, size: int):
    windows = list(stream.windows(size))
    firsts = [w.first for w in windows]
    assert firsts == list(range(0, stream.num_segments, size))
    assert all(len(w) == size for w in windows[:-1]) and 1 <= len(windows[-1]) <= size
    return (np.concatenate([w.frames for w in windows]), np.concatenate([w.spectrograms for w in windows]),
            np.concatenate([w.times for w in windows]))


def _ramp(seconds: float) -> np.ndarray:
    """A tone whose loudness and offset change over the file, so that every window's audio image differs and the
    whole-file mean matters."""
    n = int(round(seconds * SR))
    return (tone(440, seconds, SR) * np.linspace(0.1, 1.0, n) + 0.05).astype(np.float32)


CASES = [  # (seconds, fps, audio codec or None, video codec, extension)
    (25.3, 10, "aac", "h264", ".mp4"),
    (3.0, 24, "aac", "h264", ".mp4"),
    (0.8, 24, "aac", "h264", ".mp4"),  # shorter than a window: every segment hears the whole file
    (12.0, 5, None, "h264", ".mp4"),  # no audio stream: silence
    (21.0, 12, "mp3", "mpeg4", ".avi"),
    (14.0, 8, "opus", "vp9", ".webm"),  # 48 kHz audio, resampled
]


@pytest.mark.parametrize("seconds,fps,audio,codec,ext", CASES)
@pytest.mark.parametrize("frontend,segments", [("micro", None), ("avqa", 10), ("ave", None)])
@pytest.mark.parametrize("size", [1, 3, 10])
def test_windows_equal_decode_clip(tmp_path_factory, seconds, fps, audio, codec, ext, frontend, segments, size):
    folder = tmp_path_factory.getbasetemp() / "stream_cases"
    folder.mkdir(exist_ok=True)
    path = folder / f"v{seconds}_{codec}{ext}"
    if not path.exists():
        write_video(path, timecode_frames(int(seconds * fps), 48, 96), fps, _ramp(seconds) if audio else None,
                    video_codec=codec, audio_codec=audio or "aac")
    with pytest.warns(UserWarning, match="no audio stream") if not audio else _nothing():
        ref = decode_clip(path, num_segments=segments, frame_size=(64, 64), frontend=frontend)
    with pytest.warns(UserWarning, match="no audio stream") if not audio else _nothing():
        stream = VideoStream(path, frame_size=(64, 64), frontend=frontend, num_segments=segments)
    frames, spectrograms, times = _joined(stream, size)
    np.testing.assert_array_equal(frames, ref.frames)
    np.testing.assert_array_equal(times, ref.times)
    np.testing.assert_allclose(spectrograms, ref.spectrograms, rtol=0, atol=1e-5)
    assert (stream.duration, stream.has_audio) == (ref.duration, ref.has_audio)


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def test_streams_stored_apart(tmp_path):
    """write_video muxes all the video before the audio: the two handles still pair each window's frames with its
    audio exactly, without holding the file."""
    path = write_video(tmp_path / "apart.mp4", timecode_frames(300, 48, 96), 10, _ramp(30.0))
    ref = decode_clip(path, num_segments=None, frame_size=(48, 96), frontend="ave")
    frames, spectrograms, _ = _joined(VideoStream(path, frame_size=(48, 96), frontend="ave"), 4)
    np.testing.assert_array_equal(frames, ref.frames)
    np.testing.assert_allclose(spectrograms, ref.spectrograms, rtol=0, atol=1e-5)


def test_long_interleaved_file(tmp_path):
    """A file written second by second (as a camera does): every frame is the one shown at its window's centre."""
    seconds, fps = 90, 8
    frames = timecode_frames(seconds * fps, 48, 96)
    path = write_generated_video(tmp_path / "long.mp4", seconds, fps, lambda i: frames[i],
                                 lambda s: _ramp(seconds)[s * SR:(s + 1) * SR])
    from media_gen import decoded_timecode

    stream = VideoStream(path, frame_size=(48, 96), frontend="micro")
    got, _, times = _joined(stream, 10)
    assert len(got) == seconds
    np.testing.assert_array_equal(decoded_timecode(got), np.floor(times * fps + 1e-6).astype(int))


def test_video_that_stops_in_the_middle_keeps_the_windows_before(tmp_path):
    """Pictures for 20 s, sound for 40 s: the windows of the first 20 s come out, then one MediaError naming the
    file (decode_clip refuses the whole file with the same message)."""
    path = write_video(tmp_path / "stops.mp4", timecode_frames(200, 48, 96), 10, _ramp(40.0))
    with pytest.raises(MediaError, match="stops.mp4: truncated"):
        decode_clip(path, num_segments=None, frame_size=(32, 32), frontend="micro")
    got = []
    with pytest.raises(MediaError, match="stops.mp4: truncated: video frames stop at 20"):
        for window in VideoStream(path, frame_size=(32, 32), frontend="micro").windows(5):
            got.append(window)
    assert [w.first for w in got] == [0, 5, 10, 15]


def test_cut_matroska_reads_as_decode_clip(tmp_path):
    """A Matroska file cut in half (a copy stopped mid-way) still opens: the same segments as decode_clip."""
    frames = timecode_frames(400, 48, 96)
    path = write_generated_video(tmp_path / "whole.mkv", 40, 10, lambda i: frames[i],
                                 lambda s: tone(300 + 10 * s, 1.0, SR))
    data = path.read_bytes()
    cut = tmp_path / "cut.mkv"
    cut.write_bytes(data[: len(data) // 2])
    ref = decode_clip(cut, num_segments=None, frame_size=(32, 32), frontend="micro")
    got, spectrograms, _ = _joined(VideoStream(cut, frame_size=(32, 32), frontend="micro"), 7)
    np.testing.assert_array_equal(got, ref.frames)
    np.testing.assert_allclose(spectrograms, ref.spectrograms, rtol=0, atol=1e-5)


def test_bad_window_size(tmp_path):
    path = write_video(tmp_path / "v.mp4", timecode_frames(20, 48, 96), 10, _ramp(2.0))
    stream = VideoStream(path, frame_size=(32, 32), frontend="micro")
    for bad in (0, -1, 2.5, True):
        with pytest.raises(ConfigError, match="window size"):
            next(stream.windows(bad))


def test_not_media(tmp_path):
    path = tmp_path / "notes.mp4"
    path.write_text("not a video")
    with pytest.raises(MediaError, match="notes.mp4"):
        VideoStream(path, frame_size=(32, 32), frontend="micro")
