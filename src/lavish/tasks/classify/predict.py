"""A video's labels, top-k with probabilities: the whole video as one clip, or window by window on a long recording.

By default the model sees the video as it saw its training clips: T segments spread over the whole file (T: the
adapter file's ``num_segments``), read in bounded memory whatever its length (:class:`lavish.media.stream.VideoStream`
keeps only the T frames and audio images). With ``window_seconds=S`` (``--window-seconds S``) a long recording is
labelled in parts instead: one segment per whole second, each run of S seconds classified on its own (a window of
S segments; the last may be shorter), and the video's labels are the mean of the windows' probabilities weighted by
their seconds.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from lavish.engine.predict import Prediction, StreamInfo, positive_int
from lavish.media.frames import normalize_frames
from lavish.media.stream import Window

TOP_K = 5


class ClassifyPrediction(Prediction):
    """{video, duration, has_audio, multi_label, segments, top_k: [{label, probability}] (highest first)}, and with
    ``window_seconds``: windows: [{start, end, top_k}] (seconds).

    Options: ``top_k`` (labels listed, default 5, at most the number of classes), ``window_seconds`` (label each run
    of S seconds), ``plot`` (a PNG bar chart of the video's top-k), ``arrays`` (add ``probabilities`` (K,) float32:
    every class's; with windows also ``window_probabilities`` (W, K))."""

    window_option = "window_seconds"

    def __init__(self, model, meta: dict, info: StreamInfo, *, batch_size: int = 1, top_k: int | None = None,
                 window_seconds: int | None = None, plot: str | Path | None = None, arrays: bool = False) -> None:
        super().__init__(model, meta, info, batch_size=batch_size)
        self.classes = meta["classes"]
        self.k = min(positive_int(TOP_K if top_k is None else top_k, "top_k"), len(self.classes))
        self.windowed = window_seconds is not None
        self.size = self.window_size({"window_seconds": window_seconds}) if self.windowed else info.num_segments
        self.plot, self.arrays = plot, arrays
        self.audio: list[torch.Tensor] = []  # whole-clip mode: the T segments, then one model call
        self.frames: list[torch.Tensor] = []
        self.windows: list[dict] = []
        self.window_probs: list[np.ndarray] = []

    @classmethod
    def stream_segments(cls, meta: dict, options: dict) -> int | None:
        return None if options.get("window_seconds") is not None else int(meta["num_segments"])

    @torch.no_grad()
    def _probabilities(self, audio: torch.Tensor, frames: torch.Tensor) -> np.ndarray:
        """audio (B, t, F, M), frames (B, t, H, W, 3) uint8 -> (B, K) float32 class probabilities."""
        logits = self.model(audio, normalize_frames(frames, *self.model.backbone.frame_stats))
        return self.model.probabilities(logits).numpy()

    def update(self, window: Window) -> None:
        if not self.windowed:
            self.audio.append(torch.from_numpy(window.spectrograms))
            self.frames.append(torch.from_numpy(window.frames))
            return
        for first, audio, frames in self.chunks(window, self.size):
            t = audio.shape[1]
            for i, probs in enumerate(self._probabilities(audio, frames)):
                start = first + i * t
                self.windows.append({"start": start, "end": round(min(start + t, self.info.duration), 3),
                                     "top_k": self._top(probs)})
                self.window_probs.append(probs)

    def _top(self, probs: np.ndarray) -> list[dict]:
        order = np.argsort(-probs, kind="stable")[: self.k]
        return [{"label": self.classes[i], "probability": round(float(probs[i]), 4)} for i in order]

    def probabilities(self) -> np.ndarray:
        """(K,) float32: the video's class probabilities (windows: their mean weighted by their seconds)."""
        if not self.windowed:
            return self._probabilities(torch.cat(self.audio)[None], torch.cat(self.frames)[None])[0]
        seconds = np.array([w["end"] - w["start"] for w in self.windows], np.float64)
        return (np.stack(self.window_probs) * seconds[:, None]).sum(0).astype(np.float32) / np.float32(seconds.sum())

    def result(self) -> dict:
        info = self.info
        probs = self.probabilities()
        result = {"video": info.video, "duration": info.duration, "has_audio": info.has_audio,
                  "multi_label": bool(self.model.config.multi_label), "segments": info.num_segments,
                  "top_k": self._top(probs)}
        if self.windowed:
            result["windows"] = self.windows
        if self.plot is not None:
            from lavish.tasks.classify.plots import plot_top_k

            result["plot"] = str(plot_top_k([t["label"] for t in result["top_k"]],
                                            [t["probability"] for t in result["top_k"]],
                                            f"{Path(info.video).name}: top {self.k}", self.plot))
        if self.arrays:
            result["probabilities"] = probs.astype(np.float32)
            if self.windowed:
                result["window_probabilities"] = np.stack(self.window_probs).astype(np.float32)
        return result
