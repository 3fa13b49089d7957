"""Each segment's frame and audio window describe the same instant (issue 12, item 4), read back from real media.

A 60-s mp4 (MUSIC-AVQA length, 25 fps, h264 + aac) carries a time code in both streams: every frame shows its
index in three base-16 grey levels, and the audio is a linear chirp f(t) = F0 + RATE * t. :func:`decode_clip` with
the "avqa" front-end (10 windows of 1.95 s) gives 10 frames and 10 spectrograms; the frame's instant is its index /
fps, and the audio window's instant is read from the spectrogram alone: in each row the energy-weighted mel
centroid around the peak is the chirp's frequency, hence a time, and the row's offset in the window (10-ms hop,
25-ms frames) takes it back to the window start. Measured here: largest offset 0.036 s (under one frame period,
0.04 s); the middles of the ten 6-s tenths that lavish used before are 1.96 s off at the last segment.
"""

from __future__ import annotations

import numpy as np
import pytest

from lavish.media.audio import get_frontend, window_centres
from lavish.media.decode import decode_clip, frame_times, read_audio, segment_times
from lavish.media.writer import write_video

from media_gen import decoded_timecode, timecode_frames

SR, FPS, SECONDS = 16000, 25, 60.0
F0, RATE = 150.0, 60.0  # chirp from 150 Hz to 3750 Hz: inside every mel filter range, below aac's cut-off


@pytest.fixture(scope="module")
def timecoded_mp4(tmp_path_factory):
    t = np.arange(int(SECONDS * SR)) / SR
    chirp = 0.3 * np.sin(2 * np.pi * (F0 * t + RATE * t * t / 2))
    path = tmp_path_factory.mktemp("tc") / "timecoded.mp4"
    return write_video(path, timecode_frames(int(SECONDS * FPS)), FPS, chirp.astype(np.float32), SR)


def _audio_instants(spectrograms: np.ndarray, frontend) -> np.ndarray:
    """(T,) seconds: the centre of each window, read from the chirp in its (normalised) spectrogram."""
    mel = lambda f: 1127.0 * np.log1p(f / 700.0)  # noqa: E731
    hz = lambda m: 700.0 * np.expm1(m / 1127.0)  # noqa: E731
    lo, hi = mel(20.0), mel(SR / 2)
    centres = lo + (np.arange(frontend.num_mel_bins) + 1) * (hi - lo) / (frontend.num_mel_bins + 1)
    hop, frame = frontend.frame_shift_ms / 1000, 0.025
    real_rows = min(frontend.target_frames, int((frontend.window_s - frame) // hop) + 1)
    out = []
    for spec in spectrograms:
        energy = np.exp(spec[:real_rows].astype(np.float64) * 2 * frontend.std + frontend.mean)
        starts = []
        for r, row in enumerate(energy):
            peak = slice(max(int(row.argmax()) - 3, 0), int(row.argmax()) + 4)
            m = (row[peak] * centres[peak]).sum() / row[peak].sum()
            starts.append((hz(m) - F0) / RATE - (r * hop + frame / 2))  # time of the row's centre -> window start
        out.append(np.median(starts) + frontend.window_s / 2)
    return np.array(out)


def test_avqa_frame_and_audio_window_are_the_same_instant(timecoded_mp4):
    frontend = get_frontend("avqa")
    clip = decode_clip(timecoded_mp4, num_segments=10, frame_size=(48, 96), frontend=frontend)
    frame_s = decoded_timecode(clip.frames) / FPS
    audio_s = _audio_instants(clip.spectrograms, frontend)
    # the read-back audio instants are the authors' windows: linspace(0, n - 2.05 s, 10) + 0.975 s
    assert audio_s == pytest.approx(window_centres(read_audio(timecoded_mp4).size, 10, 1.95), abs=0.02)
    assert audio_s[[0, -1]] == pytest.approx([0.975, 58.93], abs=0.05)
    offset = frame_s - audio_s
    assert np.abs(offset).max() < 1 / FPS + 0.02  # measured 0.036 s; the bound is 0.5 s
    assert clip.times == pytest.approx(frame_s, abs=1 / FPS)  # what `ask` reports is where the frame was taken
    # the read-back sees misalignment: the segment middles (3, 9, ..., 57 s) were +2.0 s .. -1.9 s off
    before = segment_times(clip.duration, 10) - audio_s
    assert before[0] == pytest.approx(2.03, abs=0.05) and before[-1] == pytest.approx(-1.93, abs=0.05)


def test_ave_frames_stay_inside_their_labelled_second(tmp_path):
    """1-s windows on a 10-s clip: centres 0.5, 1.49, ..., 9.4 s, each inside second k (the label's)."""
    t = np.arange(10 * SR) / SR
    chirp = (0.3 * np.sin(2 * np.pi * (F0 * t + RATE * t * t / 2))).astype(np.float32)
    path = write_video(tmp_path / "ave.mp4", timecode_frames(10 * FPS), FPS, chirp, SR)
    frontend = get_frontend("ave")
    clip = decode_clip(path, num_segments=10, frame_size=(48, 96), frontend=frontend)
    frame_s = decoded_timecode(clip.frames) / FPS
    assert np.array_equal(np.floor(frame_s), np.arange(10))
    assert np.abs(frame_s - _audio_instants(clip.spectrograms, frontend)).max() < 1 / FPS + 0.02


def test_frame_times_rule():
    """Window centres whenever windows can be cut (also when the clip is shorter than its segments: the windows
    spread over it); the segment middles when every segment hears the whole file."""
    n = 60 * SR
    assert frame_times(60.0, 10, 1.95, n).tolist() == window_centres(n, 10, 1.95).tolist()
    assert frame_times(8.0, 10, 1.0, 8 * SR) == pytest.approx(0.5 + np.arange(10) * 6.9 / 9, abs=1e-4)
    assert frame_times(1.5, 10, 1.95, int(1.5 * SR)).tolist() == segment_times(1.5, 10).tolist()
