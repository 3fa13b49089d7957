"""A clip's labels: the model on T segments spread over the whole video, as it was trained, top-k with probabilities.

The video is read in bounded memory whatever its length (:class:`lavish.media.stream.VideoStream` with the adapter
file's ``num_segments``: only T frames and T audio images are kept). A long video is summarised by T segments spread
over it, as the training clips were: label a long recording in parts by cutting it first.
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
    """{video, duration, has_audio, multi_label, segments, top_k: [{label, probability}] (highest first)}.

    Options: ``top_k`` (labels listed, default 5, at most the number of classes), ``plot`` (a PNG bar chart of the
    top-k probabilities), ``arrays`` (add ``probabilities`` (K,) float32: every class's)."""

    whole_clip = True

    def __init__(self, model, meta: dict, info: StreamInfo, *, batch_size: int = 1, top_k: int | None = None,
                 plot: str | Path | None = None, arrays: bool = False) -> None:
        super().__init__(model, meta, info, batch_size=batch_size)
        self.classes = meta["classes"]
        self.k = min(positive_int(TOP_K if top_k is None else top_k, "top_k"), len(self.classes))
        self.plot, self.arrays = plot, arrays
        self.audio: list[torch.Tensor] = []
        self.frames: list[torch.Tensor] = []

    @torch.no_grad()
    def update(self, window: Window) -> None:
        self.audio.append(torch.from_numpy(window.spectrograms))
        self.frames.append(torch.from_numpy(window.frames))

    @torch.no_grad()
    def probabilities(self) -> np.ndarray:
        """(K,) float32 class probabilities of the clip (the T segments seen)."""
        audio, frames = torch.cat(self.audio)[None], torch.cat(self.frames)[None]
        logits = self.model(audio, normalize_frames(frames, *self.model.backbone.frame_stats))
        return self.model.probabilities(logits)[0].numpy()

    def result(self) -> dict:
        info = self.info
        probs = self.probabilities()
        order = np.argsort(-probs, kind="stable")[: self.k]
        result = {"video": info.video, "duration": info.duration, "has_audio": info.has_audio,
                  "multi_label": bool(self.model.config.multi_label), "segments": info.num_segments,
                  "top_k": [{"label": self.classes[i], "probability": round(float(probs[i]), 4)} for i in order]}
        if self.plot is not None:
            from lavish.tasks.classify.plots import plot_top_k

            result["plot"] = str(plot_top_k([t["label"] for t in result["top_k"]],
                                            [t["probability"] for t in result["top_k"]],
                                            f"{Path(info.video).name}: top {self.k}", self.plot))
        if self.arrays:
            result["probabilities"] = probs.astype(np.float32)
        return result
