"""Kaldi log-mel filterbank, vectorised in torch (spec 2.2).

The authors compute the "audio image" with ``torchaudio.compliance.kaldi.fbank``. torchaudio is not a
dependency of lavish (its wheels pin one torch version), so this module re-implements the same maths:

1. frames of ``frame_length_ms`` every ``frame_shift_ms`` with ``snip_edges=True``
   (``1 + (n - window_size) // window_shift`` frames, none if ``n < window_size``), cut with ``unfold``;
2. optional dither, per-frame DC removal, pre-emphasis ``x[i] -= k * x[i-1]`` (``x[-1] := x[0]``), window
   (``hanning`` = symmetric Hann, ``povey`` = Hann ** 0.85, ``hamming``, ``rectangular``, ``blackman``),
   zero padding to the next power of two;
3. power spectrum ``|rfft|**2`` times triangular HTK-mel filters (mel = 1127 ln(1 + f/700)) built on the
   FFT bin frequencies ``k * sr / n_fft`` for ``k < n_fft/2`` (the Nyquist bin gets weight 0);
4. ``log(max(energy, eps))`` with ``eps = torch.finfo(torch.float32).eps``.

Window shift and size are ``int(sr * ms / 1000)`` samples, as Kaldi (5.2 ms at 16 kHz -> 83 samples).

Difference from kaldi-native-fbank (the reference the tests compare with): none in the maths, but it refuses
configurations where a mel filter covers no FFT bin. With 192 bins at 16 kHz and a 512-point FFT (the
paper's setting) the lowest filters are narrower than one FFT bin (31.25 Hz), so 8 of them (indices 2, 5, 8, 11, 14, 19, 24, 29)
are empty and kaldi-native-fbank raises "You may have set num_mel_bins too large". torchaudio, and this
implementation, accept it: an empty filter has energy 0, so that column is
``log(eps) = -15.942...`` in every frame. The authors' model was trained with those constant columns, so we
keep them.
"""

from __future__ import annotations

import functools
import math

import torch

from lavish.errors import ConfigError

_EPS = torch.finfo(torch.float32).eps


def _mel(freq: torch.Tensor | float) -> torch.Tensor | float:
    if isinstance(freq, torch.Tensor):
        return 1127.0 * torch.log1p(freq / 700.0)
    return 1127.0 * math.log(1.0 + freq / 700.0)


@functools.lru_cache(maxsize=16)
def _window(kind: str, size: int, *, blackman_coeff: float = 0.42) -> torch.Tensor:
    """(size,) float64 window, symmetric (``periodic=False``) as Kaldi. Cached: do not modify in place."""
    windows = {
        "hanning": lambda: torch.hann_window(size, periodic=False, dtype=torch.float64),
        "povey": lambda: torch.hann_window(size, periodic=False, dtype=torch.float64).pow(0.85),
        "hamming": lambda: torch.hamming_window(size, periodic=False, alpha=0.54, beta=0.46, dtype=torch.float64),
        "rectangular": lambda: torch.ones(size, dtype=torch.float64),
        "blackman": lambda: _blackman(size, blackman_coeff),
    }
    if kind not in windows:
        raise ConfigError(f"unknown fbank window {kind!r}; known: {', '.join(sorted(windows))}")
    return windows[kind]()


def _blackman(size: int, a: float) -> torch.Tensor:
    n = torch.arange(size, dtype=torch.float64)
    w = 2 * math.pi / (size - 1)
    return a - 0.5 * torch.cos(w * n) + (0.5 - a) * torch.cos(2 * w * n)


@functools.lru_cache(maxsize=16)
def mel_banks(num_mel_bins: int, n_fft: int, sample_rate: float, low_freq: float, high_freq: float) -> torch.Tensor:
    """Triangular HTK-mel filters as Kaldi builds them (cached: do not modify the result in place).

    Returns (num_mel_bins, n_fft // 2 + 1) float32; the last (Nyquist) column is zero.
    ``high_freq <= 0`` means ``nyquist + high_freq``.
    """
    nyquist = 0.5 * sample_rate
    if high_freq <= 0.0:
        high_freq += nyquist
    if not 0.0 <= low_freq < high_freq <= nyquist:
        raise ConfigError(f"fbank needs 0 <= low_freq < high_freq <= {nyquist:g}, got {low_freq:g}, {high_freq:g}")
    mel_low, mel_high = _mel(low_freq), _mel(high_freq)
    delta = (mel_high - mel_low) / (num_mel_bins + 1)
    b = torch.arange(num_mel_bins, dtype=torch.float32).unsqueeze(1)
    left = mel_low + b * delta
    center = mel_low + (b + 1.0) * delta
    right = mel_low + (b + 2.0) * delta
    mel = _mel(sample_rate / n_fft * torch.arange(n_fft // 2, dtype=torch.float32)).unsqueeze(0)
    up = (mel - left) / (center - left)
    down = (right - mel) / (right - center)
    banks = torch.clamp(torch.minimum(up, down), min=0.0)
    return torch.nn.functional.pad(banks, (0, 1))


def kaldi_fbank(
    waveform: torch.Tensor,
    *,
    sample_rate: int = 16000,
    num_mel_bins: int = 192,
    frame_length_ms: float = 25.0,
    frame_shift_ms: float = 10.0,
    low_freq: float = 20.0,
    high_freq: float = 0.0,
    preemphasis: float = 0.97,
    remove_dc_offset: bool = True,
    round_to_power_of_two: bool = True,
    htk_compat: bool = True,
    use_energy: bool = False,
    dither: float = 0.0,
    window: str = "hanning",
) -> torch.Tensor:
    """Log-mel filterbank of a mono waveform, as ``torchaudio.compliance.kaldi.fbank``.

    waveform: (n,) float, amplitude as given (torchaudio loads [-1, 1]); a batch (..., n) of equal-length
    waveforms is computed in one go (each row exactly as on its own).
    Returns (..., num_frames, num_mel_bins) float32 (``+1`` column with ``use_energy``: last column with
    ``htk_compat``, first otherwise); (..., 0, num_mel_bins) if the waveform is shorter than one frame.
    """
    if waveform.dim() < 1:
        raise ConfigError(f"kaldi_fbank expects a (..., n) waveform, got shape {tuple(waveform.shape)}")
    x = waveform.to(torch.float32)
    shift = int(sample_rate * frame_shift_ms * 0.001)
    size = int(sample_rate * frame_length_ms * 0.001)
    if shift <= 0 or size <= 0:
        raise ConfigError(f"fbank frame length/shift too small: {frame_length_ms} ms / {frame_shift_ms} ms")
    n_fft = 1 << (size - 1).bit_length() if round_to_power_of_two else size
    out_cols = num_mel_bins + int(use_energy)
    if x.shape[-1] < size:
        return torch.empty(*x.shape[:-1], 0, out_cols, dtype=torch.float32)

    frames = x.unfold(-1, size, shift)  # (..., F, size), snip_edges=True
    if dither != 0.0:
        frames = frames + dither * torch.randn_like(frames)
    if remove_dc_offset:
        frames = frames - frames.mean(dim=-1, keepdim=True)
    if use_energy:
        log_energy = torch.clamp(frames.pow(2).sum(dim=-1), min=_EPS).log()
    if preemphasis != 0.0:
        previous = torch.cat([frames[..., :1], frames[..., :-1]], dim=-1)
        frames = frames - preemphasis * previous
    frames = frames * _window(window, size).to(torch.float32)
    spectrum = torch.fft.rfft(frames, n=n_fft).abs().pow(2.0)  # (..., F, n_fft/2 + 1)
    banks = mel_banks(num_mel_bins, n_fft, sample_rate, low_freq, high_freq)
    energies = torch.clamp(spectrum @ banks.T, min=_EPS).log()
    if use_energy:
        parts = [energies, log_energy[..., None]] if htk_compat else [log_energy[..., None], energies]
        energies = torch.cat(parts, dim=-1)
    return energies
