"""Run a trained AVE model on any video: per-second labels with probabilities, and a timeline plot.

Any length >= 1 s (one segment per whole second; a clip shorter than 1 s is refused by the decoder), any codec
PyAV reads, any sample rate and channel layout (resampled to 16 kHz mono). A video without an audio stream is
classified with a silent spectrogram (the decoder warns): the result says ``has_audio: false``; expect the
audio-visual model to favour background then, as it was trained on events that sound.
"""

from __future__ import annotations

from pathlib import Path

import torch

from lavish.media.decode import decode_clip
from lavish.media.frames import normalize_frames
from lavish.models.ave import AveModel


@torch.no_grad()
def predict_video(model: AveModel, meta: dict, path: str | Path, *, batch_seconds: int = 20) -> dict:
    """{video, duration, has_audio, seconds: [{second, label, probability}], frames (T,H,W,3) uint8}."""
    clip = decode_clip(path, num_segments=None, frame_size=tuple(meta["frame_size"]), frontend=meta["frontend"])
    classes = meta["classes"]
    frames = torch.from_numpy(clip.frames)
    audio = torch.from_numpy(clip.spectrograms)
    probs = []
    for s in range(0, len(frames), batch_seconds):
        f = normalize_frames(frames[s:s + batch_seconds])[None]
        a = audio[s:s + batch_seconds][None]
        probs.append(model(a, f)[0].softmax(-1))
    probs = torch.cat(probs)
    best, idx = probs.max(-1)
    seconds = [{"second": i, "label": classes[int(k)], "probability": round(float(p), 4)}
               for i, (k, p) in enumerate(zip(idx, best))]
    return {"video": str(path), "duration": clip.duration, "has_audio": clip.has_audio, "seconds": seconds,
            "frames": clip.frames}
