"""Audio front-ends: waveform -> per-segment normalised log-mel "audio images" (spec 2.2, quirks 18-20).

An :class:`AudioFrontend` bundles the fbank settings and the dataset statistics of one of the authors'
configurations; :data:`AUDIO_FRONTENDS` is the registry (``get_frontend(name)``).

Recipe (the authors' ``_wav2fbank``): remove the mean of the WHOLE file, cut ``T`` windows of
``window_s`` seconds, Kaldi fbank (Hann window, 25 ms frames, no dither), ``(x - mean) / (2 * std)``, then zero
pad at the END of the time axis or truncate to ``target_frames``. Padding happens after normalisation, so
padded rows equal the dataset mean, not silence (quirk 20; kept, the released weights expect it).

Window starts (quirk 19): ``linspace(0, n - sr * (window_s + 0.1), T)`` as integers. The authors hard-code
16000 there; we use the real ``sample_rate`` (identical for the 16 kHz audio they use, correct otherwise).
When the file is shorter than ``window_s + 0.1`` seconds every segment uses the whole file, as the authors'
AVE/AVQA loaders do (their AVS loader has no guard, quirk 18; we apply the AVE rule to every task).
Silence gives ``log(eps)`` everywhere (normalised: about ``-1.48`` for "ave"); an empty waveform gives no
frames, so every segment is all padding (zeros).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from lavish.errors import ConfigError
from lavish.media.fbank import kaldi_fbank

SAMPLE_RATE = 16000
"""Rate every front-end expects (the authors extract 16 kHz mono with ffmpeg)."""


@dataclass(frozen=True)
class AudioFrontend:
    """One fbank configuration plus the dataset statistics used to normalise it.

    name: registry key. num_mel_bins: mel filters (columns of the audio image). frame_shift_ms: hop.
    window_s: seconds of audio per segment. target_frames: rows after padding/truncation.
    mean, std: statistics of raw fbank values over the training set (normalised as (x - mean) / (2 * std)).
    """

    name: str
    num_mel_bins: int
    frame_shift_ms: float
    window_s: float
    target_frames: int
    mean: float
    std: float

    def spectrogram(self, window: np.ndarray) -> np.ndarray:
        """(n,) float32 16 kHz waveform -> (target_frames, num_mel_bins) float32 normalised log-mel.

        Also takes a batch (..., n) of equal-length windows -> (..., target_frames, num_mel_bins).
        """
        wave = torch.from_numpy(np.ascontiguousarray(window, dtype=np.float32))
        fbank = kaldi_fbank(
            wave, sample_rate=SAMPLE_RATE, num_mel_bins=self.num_mel_bins, frame_shift_ms=self.frame_shift_ms
        )
        fbank = (fbank - self.mean) / (2.0 * self.std)
        out = np.zeros((*fbank.shape[:-2], self.target_frames, self.num_mel_bins), dtype=np.float32)
        rows = min(self.target_frames, fbank.shape[-2])
        out[..., :rows, :] = fbank[..., :rows, :].numpy()
        return out


_AVE_MEAN, _AVE_STD = -4.984795570373535, 3.7079780101776123

AUDIO_FRONTENDS: dict[str, AudioFrontend] = {
    f.name: f
    for f in (
        # AVE, Swin-V2: 1 s at 5.2 ms -> 188 frames padded to 192.
        AudioFrontend("ave", 192, 5.2, 1.0, 192, _AVE_MEAN, _AVE_STD),
        # AVE, ViT rows: 128 mel, 10 ms -> 98 frames padded to 102.
        AudioFrontend("ave_vit", 128, 10.0, 1.0, 102, -4.1426, 3.2001),
        # AVS-S4 (README --audio_length=1): 98 frames padded to 192.
        AudioFrontend("avs", 192, 10.0, 1.0, 192, -5.210531711578369, 3.5918314456939697),
        # MUSIC-AVQA: hard-coded 1.95 s -> 193 frames truncated to 192.
        AudioFrontend("avqa", 192, 10.0, 1.95, 192, -5.385333061218262, 3.5928637981414795),
        # Tiny demo backbones (lavish.models.micro): 64 mel, 10 ms, 96 rows; AVE statistics.
        AudioFrontend("micro", 64, 10.0, 1.0, 96, _AVE_MEAN, _AVE_STD),
    )
}


def get_frontend(name: str) -> AudioFrontend:
    """The registered front-end called ``name`` (ConfigError listing the known names otherwise)."""
    try:
        return AUDIO_FRONTENDS[name]
    except KeyError:
        raise ConfigError(
            f"unknown audio front-end {name!r}; known: {', '.join(sorted(AUDIO_FRONTENDS))}"
        ) from None


def window_starts(num_samples: int, num_segments: int, window_s: float, sample_rate: int = SAMPLE_RATE) -> np.ndarray | None:
    """(T,) int start sample of each segment window, or None when the file is too short to crop.

    The authors' rule: ``linspace(0, n - sr * (window_s + 0.1), T)``, used when ``n > sr * (window_s + 0.1)``.
    """
    margin = int(round(sample_rate * (window_s + 0.1)))
    if num_samples <= margin:
        return None
    return np.linspace(0, num_samples - margin, num=num_segments, dtype=int)


def window_centres(num_samples: int, num_segments: int, window_s: float,
                   sample_rate: int = SAMPLE_RATE) -> np.ndarray | None:
    """(T,) float64 seconds: the centre of each segment's audio window (:func:`window_starts` plus half a window),
    or None when the file is too short to crop (every segment then hears the whole file).

    :func:`lavish.media.decode.frame_times` takes each segment's frame at this instant.
    """
    starts = window_starts(num_samples, num_segments, window_s, sample_rate)
    if starts is None:
        return None
    return (starts + round(sample_rate * window_s) / 2.0) / sample_rate


def segment_spectrograms(
    waveform: np.ndarray, num_segments: int, frontend: AudioFrontend, sample_rate: int = SAMPLE_RATE
) -> np.ndarray:
    """Cut a whole-file waveform into T normalised audio images.

    waveform: (n,) float 16 kHz mono (any length, may be empty). Returns (T, target_frames, num_mel_bins)
    float32. See the module docstring for the window rule and the short / silent / empty cases.
    """
    if sample_rate != SAMPLE_RATE:
        raise ConfigError(f"audio front-ends expect {SAMPLE_RATE} Hz audio, got {sample_rate} Hz")
    if num_segments < 1:
        raise ConfigError(f"num_segments must be >= 1, got {num_segments}")
    wave = np.asarray(waveform, dtype=np.float32).reshape(-1)
    if wave.size:
        wave = wave - wave.mean(dtype=np.float64).astype(np.float32)
    starts = window_starts(wave.size, num_segments, frontend.window_s, sample_rate)
    if starts is None:
        whole = frontend.spectrogram(wave)
        return np.repeat(whole[None], num_segments, axis=0)
    length = int(round(sample_rate * frontend.window_s))
    return frontend.spectrogram(np.stack([wave[s : s + length] for s in starts]))  # one batched fbank
