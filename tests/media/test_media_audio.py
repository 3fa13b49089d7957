"""Audio front-ends: presets, window rule, tone -> mel bin, silence / short / empty inputs."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from lavish.errors import ConfigError
from lavish.media.audio import AUDIO_FRONTENDS, get_frontend, segment_spectrograms, window_starts
from lavish.media.decode import read_audio

from media_gen import tone, write_wav

SR = 16000


def test_presets_are_the_papers():
    got = {name: dataclasses.astuple(f)[1:] for name, f in AUDIO_FRONTENDS.items()}
    assert got == {
        "ave": (192, 5.2, 1.0, 192, -4.984795570373535, 3.7079780101776123),
        "ave_vit": (128, 10.0, 1.0, 102, -4.1426, 3.2001),
        "avs": (192, 10.0, 1.0, 192, -5.210531711578369, 3.5918314456939697),
        "avqa": (192, 10.0, 1.95, 192, -5.385333061218262, 3.5928637981414795),
        "micro": (64, 10.0, 1.0, 96, -4.984795570373535, 3.7079780101776123),
    }


def test_unknown_frontend_lists_known_names():
    with pytest.raises(ConfigError, match="ave, ave_vit, avqa, avs, micro"):
        get_frontend("vggish")


def _mel_bin(freq: float, num_bins: int) -> int:
    mel = lambda f: 1127 * np.log1p(f / 700)  # noqa: E731
    lo, hi = mel(20.0), mel(SR / 2)
    centers = lo + (np.arange(num_bins) + 1) * (hi - lo) / (num_bins + 1)
    return int(np.argmin(np.abs(centers - mel(freq))))


@pytest.mark.parametrize("name", ["ave", "avs", "micro"])
@pytest.mark.parametrize("freq", [440.0, 1000.0, 3000.0])
def test_pure_tone_peaks_in_its_mel_bin(tmp_path, name, freq):
    frontend = get_frontend(name)
    wave = read_audio(write_wav(tmp_path / "t.wav", tone(freq, 3.0, SR), SR))
    spec = segment_spectrograms(wave, 3, frontend)
    assert spec.shape == (3, frontend.target_frames, frontend.num_mel_bins)
    valid = int((frontend.window_s * 1000 - 25) // frontend.frame_shift_ms) + 1
    peaks = spec[:, :valid].argmax(axis=2)
    assert np.all(np.abs(peaks - _mel_bin(freq, frontend.num_mel_bins)) <= 1)


def test_window_starts_follow_the_authors_rule():
    n = 10 * SR + 123
    starts = window_starts(n, 10, 1.0)
    assert np.array_equal(starts, np.linspace(0, n - SR * 1.1, 10, dtype=int))
    assert starts[-1] + SR <= n
    assert window_starts(int(1.1 * SR), 10, 1.0) is None


def test_padding_rows_are_zero_and_count_matches_frames():
    frontend = get_frontend("ave")  # 1 s at 5.2 ms -> 188 frames, padded to 192
    rng = np.random.default_rng(0)
    spec = segment_spectrograms(0.1 * rng.standard_normal(5 * SR).astype(np.float32), 5, frontend)
    assert np.all(spec[:, 188:] == 0) and np.all(spec[:, :188] != 0)
    avqa = segment_spectrograms(0.1 * rng.standard_normal(5 * SR).astype(np.float32), 4, get_frontend("avqa"))
    assert avqa.shape == (4, 192, 192) and np.all(avqa[:, -1] != 0)  # 193 frames truncated to 192


def test_whole_file_mean_is_removed_first():
    frontend = get_frontend("avs")
    wave = tone(500.0, 4.0, SR)
    assert np.allclose(segment_spectrograms(wave + 0.2, 4, frontend), segment_spectrograms(wave, 4, frontend), atol=1e-4)


def test_short_file_uses_whole_file_for_every_segment():
    frontend = get_frontend("ave")
    wave = tone(800.0, 0.6, SR)
    spec = segment_spectrograms(wave, 10, frontend)
    assert spec.shape == (10, 192, 192)
    frames = 1 + (wave.size - 400) // 83
    assert np.all(spec == spec[0]) and np.all(spec[0, frames:] == 0) and np.all(spec[0, :frames] != 0)


def test_silence_and_empty_audio():
    frontend = get_frontend("ave")
    silent = segment_spectrograms(np.zeros(3 * SR, np.float32), 3, frontend)
    log_eps = np.log(np.finfo(np.float32).eps)
    assert np.allclose(silent[:, :188], (log_eps - frontend.mean) / (2 * frontend.std))
    empty = segment_spectrograms(np.zeros(0, np.float32), 3, frontend)
    assert empty.shape == (3, 192, 192) and np.all(empty == 0)
