"""kaldi_fbank against kaldi-native-fbank (the C++ port of Kaldi's compute-fbank-feats)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lavish.media.decode import read_audio
from lavish.media.fbank import kaldi_fbank, mel_banks

from media_gen import write_wav

knf = pytest.importorskip("kaldi_native_fbank")
SR = 16000


def _speech_like(rng: np.random.Generator) -> np.ndarray:
    """Glottal-pulse-like harmonics with a gliding pitch, syllable envelope and noise: 2 s."""
    t = np.arange(2 * SR) / SR
    f0 = 120 + 40 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(f0) / SR
    voiced = sum(np.sin(k * phase) / k for k in range(1, 25))
    envelope = 0.5 * (1 + np.sin(2 * np.pi * 3 * t)) ** 2
    return 0.1 * voiced * envelope + 0.01 * rng.standard_normal(t.size)


def _chirp(rng: np.random.Generator) -> np.ndarray:
    """50 Hz -> 7 kHz sweep over a -14 dB noise floor. With a lower floor, the narrow low mel bands far from
    the sweep hold ~1e-6 of the frame's energy, where any float32 FFT (ours, Kaldi's) is off by 1e-3..1e-2
    in log against a float64 one: rounding, not maths."""
    t = np.arange(2 * SR) / SR
    return 0.3 * np.sin(2 * np.pi * (50 * t + 0.5 * (7000 - 50) / 2 * t**2)) + 0.06 * rng.standard_normal(t.size)


def _noise(rng: np.random.Generator) -> np.ndarray:
    return 0.2 * rng.standard_normal(int(1.37 * SR))


def _reference(wave: np.ndarray, num_bins: int, shift_ms: float) -> np.ndarray:
    opts = knf.FbankOptions()
    opts.frame_opts.samp_freq = SR
    opts.frame_opts.dither = 0.0
    opts.frame_opts.window_type = "hanning"
    opts.frame_opts.frame_shift_ms = shift_ms
    opts.mel_opts.num_bins = num_bins
    opts.htk_compat = True
    opts.use_energy = False
    fb = knf.OnlineFbank(opts)
    fb.accept_waveform(SR, wave.tolist())
    fb.input_finished()
    return np.stack([np.asarray(fb.get_frame(i)) for i in range(fb.num_frames_ready)])


@pytest.mark.parametrize("signal", [_speech_like, _chirp, _noise])
@pytest.mark.parametrize("shift_ms", [10.0, 5.2])
def test_matches_kaldi_native_fbank_on_real_files(tmp_path, signal, shift_ms):
    path = write_wav(tmp_path / "x.wav", np.clip(signal(np.random.default_rng(0)), -1, 1), SR)
    wave = read_audio(path)
    ours = kaldi_fbank(torch.from_numpy(wave), num_mel_bins=80, frame_shift_ms=shift_ms).numpy()
    ref = _reference(wave, 80, shift_ms)
    assert ours.shape == ref.shape
    assert np.abs(ours - ref).max() <= 1e-3


def test_frame_count_is_snip_edges():
    for n, shift, expected in [(16000, 5.2, 1 + (16000 - 400) // 83), (16000, 10.0, 98), (400, 10.0, 1), (399, 10.0, 0)]:
        assert kaldi_fbank(torch.zeros(n), frame_shift_ms=shift).shape == (expected, 192)


def test_192_bins_have_empty_filters_that_give_log_eps():
    """The paper's 192 bins: kaldi-native-fbank refuses, we (like torchaudio) output log(eps) columns."""
    empty = (mel_banks(192, 512, SR, 20.0, 0.0).sum(dim=1) == 0).nonzero().flatten().tolist()
    assert empty == [2, 5, 8, 11, 14, 19, 24, 29]
    with pytest.raises(ValueError):
        _reference(np.zeros(SR, np.float32), 192, 10.0)
    x = torch.from_numpy(_noise(np.random.default_rng(1)).astype(np.float32))
    out = kaldi_fbank(x, num_mel_bins=192, frame_shift_ms=5.2)
    log_eps = float(np.log(np.finfo(np.float32).eps))
    assert torch.allclose(out[:, empty], torch.full_like(out[:, empty], log_eps))
    assert (out[:, [0, 1, 3, 40, 191]] > log_eps + 1).all()


def test_batch_equals_rows():
    x = torch.from_numpy(0.2 * np.random.default_rng(2).standard_normal((3, 8000)).astype(np.float32))
    batch = kaldi_fbank(x, frame_shift_ms=5.2)
    assert batch.shape == (3, 1 + (8000 - 400) // 83, 192)
    for row in range(3):
        assert torch.allclose(batch[row], kaldi_fbank(x[row], frame_shift_ms=5.2), atol=1e-5)
