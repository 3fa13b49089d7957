"""AVE on a user's video of any length: a label per second, window by window, and the events as time ranges."""

from __future__ import annotations

from pathlib import Path
import numpy as np
import torch

from lavish.engine.predict import Prediction, StreamInfo, TimelinePages, check_min_duration, merge_events
from lavish.errors import ConfigError, DataError
from lavish.media.frames import normalize_frames
from lavish.media.stream import Window


class AvePrediction(Prediction):
    """Per-second labels: {video, duration, has_audio, seconds: [{second, label, probability}], events: [{label,
    start, end, probability}]} (runs of one label other than background, merged across windows, at least
    ``min_duration`` seconds; probability = the mean over the run).

    Options: ``plot`` (a timeline PNG; pages of :data:`~lavish.engine.predict.PAGE_SECONDS` s on a longer video),
    ``extra_features`` (a (seconds, E) .npy for a model trained with extra audio features), ``batch_seconds``
    (segments per model call, default 20: the segments are classified independently, so it changes no number),
    ``arrays`` (add ``probabilities`` (T, K) float32 and ``frames`` (T, H, W, 3) uint8: these grow with the
    video), ``min_duration``.
    """

    window = 20
    window_option = "batch_seconds"

    def __init__(self, model, meta: dict, info: StreamInfo, *, batch_size: int = 1, plot=None,
                 extra_features=None, batch_seconds: int | None = None, arrays: bool = False,
                 min_duration: float = 0.0) -> None:
        super().__init__(model, meta, info, batch_size=batch_size)
        self.classes = meta["classes"]
        self.size = self.window_size({"batch_seconds": batch_seconds})
        self.extra = extra_audio(model, info.video, extra_features, info.num_segments)
        self.min_duration = check_min_duration(min_duration)
        self.arrays = arrays
        self.seconds: list[dict] = []
        self.probs: list[np.ndarray] = []
        self.frames: list[np.ndarray] = []
        self.pages = None if plot is None else TimelinePages(plot, info, self._draw)

    @torch.no_grad()
    def update(self, window: Window) -> None:
        for first, audio, frames in self.chunks(window, self.size):
            b, t = audio.shape[:2]
            extra = None if self.extra is None else self.extra[first:first + b * t].reshape(b, t, -1)
            probs = self.model(audio, normalize_frames(frames, *self.model.backbone.frame_stats), extra).softmax(-1).reshape(b * t, -1)
            best, idx = probs.max(-1)
            for i, (k, p) in enumerate(zip(idx.tolist(), best.tolist())):
                self.seconds.append({"second": first + i, "label": self.classes[k], "probability": round(p, 4)})
            if self.arrays:
                self.probs.append(probs.float().numpy())
        if self.arrays:
            self.frames.append(window.frames)
        if self.pages is not None:
            self.pages.add(window)

    def _draw(self, first: int, stop: int, thumbs: dict, title: str, path: Path) -> Path:
        from lavish.engine.plots import plot_timeline

        return plot_timeline(self.seconds[first:stop], thumbs, title, path, first=first)

    def result(self) -> dict:
        info = self.info
        result = {"video": info.video, "duration": info.duration, "has_audio": info.has_audio,
                  "seconds": self.seconds, "events": self.events()}
        if self.pages is not None:
            result.update(self.pages.finish())
        if self.arrays:
            result.update(probabilities=np.concatenate(self.probs), frames=np.concatenate(self.frames))
        return result

    def events(self) -> list[dict]:
        labels = [s["label"] for s in self.seconds]
        probs = [s["probability"] for s in self.seconds]
        background = self.classes[-1]
        return merge_events(labels, probs, self.info.duration, skip=background, min_duration=self.min_duration)


def extra_audio(model, video, path, seconds: int) -> torch.Tensor | None:
    """(seconds, E) float32 extra audio features of a model trained with them (Table 8, VGGish), from ``path``."""
    need = model.config.extra_audio_dim
    if not need:
        if path is not None:
            raise ConfigError("--extra-features does not apply: this model was trained without extra audio "
                              "features")
        return None
    if path is None:
        raise ConfigError(f"this model uses {need}-wide extra audio features per second (Table 8, VGGish), which "
                          f"lavish cannot compute for {video} here: pass them with --extra-features FILE.npy")
    try:
        extra = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as err:
        raise DataError(f"{path}: not a readable .npy array ({err})") from None
    if extra.ndim != 2 or extra.shape[1] != need or extra.shape[0] < seconds:
        raise DataError(f"{path}: extra features have shape {extra.shape}, the video needs ({seconds}, {need})")
    return torch.from_numpy(np.asarray(extra[:seconds], dtype=np.float32))
