"""AVVP on a user's video of any length: which events are heard and which are seen, per second, window by
window, and the events as time ranges."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from lavish.engine.predict import Prediction, StreamInfo, TimelinePages, check_min_duration
from lavish.media.frames import normalize_frames
from lavish.media.stream import Window
from lavish.tasks.avvp.metrics import THRESHOLD, clip_predictions


class AvvpPrediction(Prediction):
    """The video is cut into windows of ``window`` seconds (the benchmark's 10-s clips; the last one shorter), each
    parsed on its own: per second and modality the classes at probability >= 0.5 whose video-level probability in
    that window is >= 0.5, as the benchmark's evaluation.

    Result: {video, duration, has_audio, seconds: [{second, heard: [..], seen: [..]}], events: [{label, modality,
    onset, offset, start, end, probability}] (runs of consecutive seconds merged across windows; onset / offset
    whole seconds, offset exclusive; start / end the same in seconds cut to the duration; probability the mean
    per-second probability of the modality over the run; runs shorter than ``min_duration`` left out), windows:
    [{start, labels: {label: probability}}]}. ``plot``: a timeline PNG with an audio and a visual row (pages of a
    minute on a longer video); ``arrays``: add ``audio_probabilities``, ``visual_probabilities`` (T, C) float32
    (per second, before the video-level filter) and ``frames`` (these grow with the video).
    """

    window = 10
    window_option = "window"

    def __init__(self, model, meta: dict, info: StreamInfo, *, batch_size: int = 1, plot=None, window: int | None = None,
                 arrays: bool = False, min_duration: float = 0.0) -> None:
        super().__init__(model, meta, info, batch_size=batch_size)
        self.classes = meta["classes"]
        self.size = self.window_size({"window": window})
        self.min_duration = check_min_duration(min_duration)
        self.arrays = arrays
        self.heard: list[np.ndarray] = []
        self.seen: list[np.ndarray] = []
        self.probs_a: list[np.ndarray] = []
        self.probs_v: list[np.ndarray] = []
        self.frames: list[np.ndarray] = []
        self.windows: list[dict] = []
        self.pages = None if plot is None else TimelinePages(plot, info, self._draw)

    @torch.no_grad()
    def update(self, window: Window) -> None:
        for first, audio, frames in self.chunks(window, self.size):
            out = self.model(audio, normalize_frames(frames, *self.model.backbone.frame_stats))
            for b in range(audio.shape[0]):
                h, v = clip_predictions(out.audio_prob[b], out.visual_prob[b], out.global_prob[b])
                self.heard.append(h.astype(bool))
                self.seen.append(v.astype(bool))
                self.probs_a.append(out.audio_prob[b].float().numpy())
                self.probs_v.append(out.visual_prob[b].float().numpy())
                probs = out.global_prob[b].float()
                self.windows.append({"start": first + b * audio.shape[1], "labels": {
                    self.classes[k]: round(float(probs[k]), 4)
                    for k in torch.nonzero(probs >= THRESHOLD).flatten().tolist()}})
        if self.arrays:
            self.frames.append(window.frames)
        if self.pages is not None:
            self.pages.add(window)

    def _grids(self) -> tuple[np.ndarray, np.ndarray]:
        c = len(self.classes)
        heard = np.concatenate(self.heard) if self.heard else np.zeros((0, c), bool)
        seen = np.concatenate(self.seen) if self.seen else np.zeros((0, c), bool)
        return heard, seen

    def _draw(self, first: int, stop: int, thumbs: dict, title: str, path: Path) -> Path:
        from lavish.engine.plots import plot_parsing

        heard, seen = self._grids()
        return plot_parsing(heard[first:stop], seen[first:stop], self.classes, thumbs, title, path, first=first)

    def result(self) -> dict:
        heard, seen = self._grids()
        classes, duration = self.classes, self.info.duration
        seconds = [{"second": t, "heard": [classes[k] for k in np.flatnonzero(heard[t])],
                    "seen": [classes[k] for k in np.flatnonzero(seen[t])]} for t in range(len(heard))]
        result = {"video": self.info.video, "duration": duration, "has_audio": self.info.has_audio,
                  "seconds": seconds, "events": self.events(heard, seen), "windows": self.windows}
        if self.pages is not None:
            result.update(self.pages.finish())
        if self.arrays:
            c = len(classes)
            result.update(audio_probabilities=np.concatenate(self.probs_a) if self.probs_a else np.zeros((0, c)),
                          visual_probabilities=np.concatenate(self.probs_v) if self.probs_v else np.zeros((0, c)),
                          frames=np.concatenate(self.frames) if self.frames else np.zeros((0, 1, 1, 3), np.uint8))
        return result

    def events(self, heard: np.ndarray, seen: np.ndarray) -> list[dict]:
        from lavish.tasks.avvp.metrics import extract_events

        probs = {"audio": self.probs_a, "visual": self.probs_v}
        events = []
        for modality, grid in (("audio", heard), ("visual", seen)):
            prob = np.concatenate(probs[modality]) if probs[modality] else None
            for k in range(grid.shape[1]):
                for a, b in extract_events(grid[:, k]):
                    end = min(float(b), self.info.duration) if self.info.duration > a else float(b)
                    if end - a < self.min_duration:
                        continue
                    events.append({"label": self.classes[k], "modality": modality, "onset": a, "offset": b,
                                   "start": float(a), "end": round(end, 3),
                                   "probability": round(float(prob[a:b, k].mean()), 4)})
        return events
