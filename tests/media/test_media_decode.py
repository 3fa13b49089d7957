"""Decoding real files: frame timing (CFR, VFR, rotation), resampling, missing streams, broken files."""

from __future__ import annotations


import numpy as np
import pytest

from lavish.errors import MediaError
from lavish.media.audio import window_centres
from lavish.media.decode import decode_clip, probe, read_audio, read_frames, segment_times
from lavish.media.writer import write_video

from media_gen import decoded_index, index_frames, tone, write_wav

SR = 16000


@pytest.fixture(scope="module")
def indexed_mp4(tmp_path_factory):
    """10 s, 6 fps, frame i has red level 4 i; 440 Hz stereo 44.1 kHz."""
    path = tmp_path_factory.mktemp("v") / "indexed.mp4"
    audio = tone(440.0, 10.0, 44100)
    return write_video(path, index_frames(60), 6.0, np.stack([audio, audio]), 44100)


def test_probe(indexed_mp4):
    info = probe(indexed_mp4)
    assert (info.has_video, info.has_audio, info.width, info.height) == (True, True, 64, 48)
    assert info.fps == pytest.approx(6.0) and info.rotation == 0
    assert (info.sample_rate, info.channels) == (44100, 2)
    assert info.duration == pytest.approx(10.0, abs=0.1)


def test_read_frames_picks_the_frame_shown_at_each_instant(indexed_mp4):
    times = [0.0, 0.16, 0.17, 0.5, 5.0, 9.99, 3.34, 0.0]
    frames = read_frames(indexed_mp4, times, (24, 32))
    assert frames.shape == (8, 24, 32, 3) and frames.dtype == np.uint8
    assert decoded_index(frames).tolist() == [int(np.floor(t * 6 + 1e-9)) for t in times]


def test_read_frames_variable_frame_rate(tmp_path):
    pts = np.array([0.0, 0.1, 0.15, 1.0, 1.05, 2.5, 2.6, 4.0, 4.9, 4.95])
    path = write_video(tmp_path / "vfr.mkv", index_frames(len(pts)), 10.0, frame_times=pts, video_codec="vp9")
    times = [0.05, 0.12, 0.9, 1.02, 2.0, 2.55, 3.9, 4.0, 4.92, 5.0]
    expected = [np.searchsorted(pts, t, side="right") - 1 for t in times]
    assert decoded_index(read_frames(path, times, (48, 64))).tolist() == expected


@pytest.mark.parametrize(("name", "codec"), [("long.mp4", "h264"), ("long.mkv", "mpeg4")])
def test_read_frames_in_long_videos(tmp_path, name, codec):
    """60 s at 2 fps; mpeg4 puts a keyframe every 12 frames, so only some GOPs are decoded."""
    path = write_video(tmp_path / name, index_frames(120), 2.0, video_codec=codec)
    times = segment_times(60.0, 10)
    assert decoded_index(read_frames(path, times, (48, 64))).tolist() == [int(2 * t) for t in times]
    assert decoded_index(read_frames(path, [59.9, 0.2, 31.0], (48, 64))).tolist() == [119, 0, 62]


@pytest.mark.parametrize("rotation", [90, -90, 180])
def test_rotation_metadata_is_applied(tmp_path, rotation):
    frames = np.zeros((6, 48, 64, 3), np.uint8)
    frames[:, :24, :32, 1] = 255  # green marker in the top-left quarter
    path = write_video(tmp_path / "rot.mp4", frames, 6.0, rotation=rotation)
    assert probe(path).rotation == rotation
    out = read_frames(path, [0.5], (40, 40))[0, :, :, 1] > 128
    quadrant = {(True, True): "tl", (True, False): "tr", (False, True): "bl", (False, False): "br"}
    top, left = out[:20].mean() > 0.5 * out.mean(), out[:, :20].mean() > 0.5 * out.mean()
    # counter-clockwise display rotation: 90 -> marker bottom-left, -90 -> top-right, 180 -> bottom-right
    assert quadrant[(bool(top), bool(left))] == {90: "bl", -90: "tr", 180: "br"}[rotation]
    tall = read_frames(path, [0.5], (64, 48)) if abs(rotation) == 90 else None
    if tall is not None:  # the rotated picture is 48 wide, 64 high: a (64, 48) resize keeps the marker square
        marker = tall[0, :, :, 1] > 128
        assert marker.sum() == pytest.approx(64 * 48 / 4, rel=0.1)


@pytest.mark.parametrize("rate", [8000, 22050, 44100, 48000])
@pytest.mark.parametrize("channels", [1, 2, 6])
def test_read_audio_resamples_to_16k_mono(tmp_path, rate, channels):
    seconds = 2.0
    mono = tone(1000.0, seconds, rate)
    audio = np.stack([mono] * channels)
    path = write_wav(tmp_path / "a.wav", audio, rate) if channels <= 2 else write_video(
        tmp_path / "a.mp4", np.zeros(0, np.uint8), 25.0, audio, rate, audio_codec="aac"
    )
    wave = read_audio(path)
    assert wave.dtype == np.float32 and wave.ndim == 1
    assert abs(wave.size - seconds * SR) <= (0.01 * SR if channels <= 2 else 0.1 * SR)  # aac adds padding
    spectrum = np.abs(np.fft.rfft(wave[2000:30000]))
    assert abs(np.argmax(spectrum) * SR / 28000 - 1000.0) < 5
    if channels == 2:  # same down-mix as `ffmpeg -ac 1`: (L + R) / 2
        assert wave[2000:30000].std() == pytest.approx(0.3 / np.sqrt(2), rel=0.02)
    elif channels == 6:
        assert 0.05 < wave[4000:28000].std() < 0.5


def test_silent_audio(tmp_path):
    path = write_video(tmp_path / "s.mp4", index_frames(12), 6.0, np.zeros(2 * SR, np.float32), SR)
    clip = decode_clip(path, num_segments=None, frame_size=(32, 32), frontend="ave")
    assert clip.has_audio and clip.spectrograms.shape == (2, 192, 192)
    assert np.all(clip.spectrograms[:, :188] < -1.4)  # log(eps) everywhere


def test_no_audio_stream_gives_silence_and_a_warning(tmp_path):
    path = write_video(tmp_path / "mute.mp4", index_frames(18), 6.0)
    with pytest.warns(UserWarning, match="mute.mp4: no audio stream"):
        clip = decode_clip(path, num_segments=3, frame_size=(32, 32), frontend="micro")
    assert not clip.has_audio and clip.spectrograms.shape == (3, 96, 64)
    silent = decode_clip(write_video(tmp_path / "s.mp4", index_frames(18), 6.0, np.zeros(3 * SR, np.float32)),
                         num_segments=3, frame_size=(32, 32), frontend="micro")
    assert np.allclose(clip.spectrograms[:, :90], silent.spectrograms[:, :90], atol=1e-3)
    with pytest.raises(MediaError, match="mute.mp4: no audio stream"):
        read_audio(path)


def test_audio_only_file_is_rejected(tmp_path):
    path = write_video(tmp_path / "audio.mp4", np.zeros(0, np.uint8), 25.0, tone(440, 1.0, SR))
    with pytest.raises(MediaError, match=r"audio\.mp4: no video stream"):
        decode_clip(path, num_segments=10, frame_size=(32, 32), frontend="ave")


def test_text_file_renamed_mp4(tmp_path):
    path = tmp_path / "notes.mp4"
    path.write_text("this is not a video\n" * 50)
    with pytest.raises(MediaError, match=r"notes\.mp4: not a readable media file") as err:
        decode_clip(path, num_segments=10, frame_size=(32, 32), frontend="ave")
    assert "\n" not in str(err.value)


def test_empty_and_missing_files(tmp_path):
    (tmp_path / "empty.mp4").write_bytes(b"")
    with pytest.raises(MediaError, match="empty file"):
        probe(tmp_path / "empty.mp4")
    with pytest.raises(MediaError, match="no such file"):
        probe(tmp_path / "missing.mp4")


def test_truncated_files(tmp_path, indexed_mp4):
    data = indexed_mp4.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) // 2])  # moov atom at the end is lost
    with pytest.raises(MediaError, match=r"cut\.mp4: ") as err:
        decode_clip(cut, num_segments=10, frame_size=(32, 32), frontend="ave")
    assert "\n" not in str(err.value)
    # Matroska stores its duration in the header: a cut file still opens but its frames stop early.
    noise = np.random.default_rng(0).integers(0, 255, (60, 48, 64, 3), dtype=np.uint8)
    mkv = write_video(tmp_path / "full.mkv", noise, 6.0, video_codec="vp9")
    cut_mkv = tmp_path / "cut.mkv"
    cut_mkv.write_bytes(mkv.read_bytes()[: mkv.stat().st_size // 2])
    with pytest.raises(MediaError, match=r"cut\.mkv: truncated"):
        decode_clip(cut_mkv, num_segments=10, frame_size=(32, 32), frontend="ave")


def test_clip_shorter_than_one_segment(tmp_path):
    path = write_video(tmp_path / "short.mp4", index_frames(3), 6.0, tone(440, 0.5, SR), SR)
    clip = decode_clip(path, num_segments=None, frame_size=(32, 32), frontend="ave")
    assert clip.frames.shape == (1, 32, 32, 3) and clip.spectrograms.shape == (1, 192, 192)
    assert clip.times.tolist() == pytest.approx([0.25], abs=0.02)
    ten = decode_clip(path, num_segments=10, frame_size=(32, 32), frontend="ave")
    assert ten.frames.shape[0] == 10 and np.all(ten.times == ten.times[0])
    assert np.all(ten.spectrograms == ten.spectrograms[0])


@pytest.mark.parametrize(
    ("name", "video_codec", "audio_codec"),
    [("a.mkv", "vp9", "opus"), ("a.webm", "vp8", "opus"), ("a.webm", "vp9", "vorbis"), ("a.avi", "mpeg4", "mp3"),
     ("b.avi", "mpeg4", "pcm_s16le"), ("a.mov", "h264", "aac")],
)
def test_containers_and_codecs(tmp_path, name, video_codec, audio_codec):
    audio = tone(1000.0, 4.0, 44100)
    path = write_video(tmp_path / name, index_frames(24), 6.0, np.stack([audio, audio]), 44100, video_codec, audio_codec)
    clip = decode_clip(path, num_segments=4, frame_size=(48, 64), frontend="avs")
    assert clip.has_audio and clip.frames.shape == (4, 48, 64, 3) and clip.spectrograms.shape == (4, 192, 192)
    # frames at the centres of the 1-s windows linspace(0, 4 s - 1.1 s, 4): 0.5, 1.47, 2.43, 3.4 s at 6 fps
    # (mp3 in avi keeps the encoder's padding: its soundtrack decodes ~70 ms longer, the last centre 3.45 s)
    centres = window_centres(read_audio(path).size, 4, 1.0)
    assert centres == pytest.approx([0.5, 1.467, 2.433, 3.4], abs=0.06)
    assert decoded_index(clip.frames).tolist() == [int(6 * t) for t in centres] == [3, 8, 14, 20]
    peak_bin = clip.spectrograms[:, :90].mean(axis=(0, 1)).argmax()
    mel = lambda f: 1127 * np.log1p(f / 700)  # noqa: E731
    expected = (mel(1000.0) - mel(20.0)) / ((mel(8000.0) - mel(20.0)) / 193) - 1
    assert abs(peak_bin - expected) <= 1.5


def test_segment_times():
    assert segment_times(10.0, 10).tolist() == pytest.approx([k + 0.5 for k in range(10)])
    assert segment_times(10.02, None).shape == (10,)
    assert segment_times(9.95, None).shape == (10,)
    assert segment_times(60.0, 10).tolist() == pytest.approx([3 + 6 * k for k in range(10)])
    assert segment_times(6.5, 10).tolist() == pytest.approx([0.5, 1.5, 2.5, 3.5, 4.5, 5.5, 6.25, 6.25, 6.25, 6.25])
    assert segment_times(0.4, None).tolist() == pytest.approx([0.2])
    with pytest.raises(MediaError):
        segment_times(0.0, 10)
