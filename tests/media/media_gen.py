"""Real media made on the fly for the media tests (imported by name: pytest puts this folder on sys.path)."""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np


def write_wav(path: Path, audio: np.ndarray, sample_rate: int) -> Path:
    """(n,) or (channels, n) float in [-1, 1] -> 16-bit PCM wav (the authors' extracted-audio format)."""
    audio = np.atleast_2d(audio)
    pcm = np.clip(np.round(audio.T * 32767), -32768, 32767).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(audio.shape[0])
        w.setsampwidth(2)
        w.setframerate(sample_rate)
        w.writeframes(pcm.tobytes())
    return path


def tone(freq: float, seconds: float, sample_rate: int, amplitude: float = 0.3) -> np.ndarray:
    t = np.arange(int(round(seconds * sample_rate))) / sample_rate
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def index_frames(n: int, height: int = 48, width: int = 64) -> np.ndarray:
    """(n, H, W, 3) uint8 grey frames that encode their index i < 256 in two digits of base 16: left half
    level 16 * (i % 16) + 8, right half 16 * (i // 16) + 8 (steps of 16 survive YUV 4:2:0, lossy codecs and
    bicubic resizing; grey avoids chroma subsampling)."""
    i = np.arange(n)
    frames = np.zeros((n, height, width, 3), dtype=np.uint8)
    frames[:, :, : width // 2] = (16 * (i % 16) + 8).astype(np.uint8)[:, None, None, None]
    frames[:, :, width // 2 :] = (16 * (i // 16) + 8).astype(np.uint8)[:, None, None, None]
    return frames


def decoded_index(frames: np.ndarray) -> np.ndarray:
    """Inverse of :func:`index_frames` on decoded (T, H, W, 3) frames (any size)."""
    w = frames.shape[2]
    low = frames[:, :, w // 8 : 3 * w // 8].astype(np.float64).mean(axis=(1, 2, 3))
    high = frames[:, :, 5 * w // 8 : 7 * w // 8].astype(np.float64).mean(axis=(1, 2, 3))
    return (np.round((low - 8) / 16) + 16 * np.round((high - 8) / 16)).astype(int)


def timecode_frames(n: int, height: int = 48, width: int = 96) -> np.ndarray:
    """(n, H, W, 3) uint8 grey frames that encode their index i < 4096 in three base-16 digits, one per vertical
    third (least significant on the left), level 16 * digit + 8 (as :func:`index_frames`, for longer videos)."""
    i = np.arange(n)
    frames = np.zeros((n, height, width, 3), dtype=np.uint8)
    for d in range(3):
        frames[:, :, d * width // 3 : (d + 1) * width // 3] = (16 * ((i // 16**d) % 16) + 8).astype(np.uint8)[
            :, None, None, None
        ]
    return frames


def decoded_timecode(frames: np.ndarray) -> np.ndarray:
    """Inverse of :func:`timecode_frames` on decoded (T, H, W, 3) frames (any size): the index of each frame."""
    w = frames.shape[2]
    index = np.zeros(len(frames), dtype=int)
    for d in range(3):
        band = frames[:, :, d * w // 3 + w // 12 : (d + 1) * w // 3 - w // 12].astype(np.float64)
        index += np.round((band.mean(axis=(1, 2, 3)) - 8) / 16).astype(int) * 16**d
    return index
