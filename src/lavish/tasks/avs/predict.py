"""AVS on a user's video of any length: a mask of the sounding objects per second, window by window; mask PNGs
written as they are made, the contact sheet a page per minute."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from lavish.engine.predict import PAGE_SECONDS, Prediction, StreamInfo
from lavish.fileio import write_bytes
from lavish.media.frames import normalize_frames
from lavish.media.stream import Window
from lavish.tasks.avs.plots import overlay, png


class AvsPrediction(Prediction):
    """Masks of the sounding objects, one per second.

    Result: {video, duration, has_audio, coverage: [fraction of each frame masked]}; with ``out`` it writes
    ``out/<stem>_<second>.png`` (0/255 masks at the model's mask size, second counted from 1) and the contact sheet
    ``out/<stem>_sheet.png`` (frames with the masks overlaid in red; a video longer than a minute gets one sheet a
    minute, ``<stem>_sheet_001.png``, ...) and adds ``masks`` (their paths), ``sheet`` (the first sheet) and, with
    several, ``sheets``; with ``arrays`` it adds ``mask_array`` (T, H_m, W_m) bool and ``frames`` (T, H, W, 3)
    uint8 (these grow with the video). The video is cut into clips of ``clip_seconds`` one-second segments (the
    benchmark's 5; a shorter last clip runs as it is).
    """

    window = 5
    window_option = "clip_seconds"

    def __init__(self, model, meta: dict, info: StreamInfo, *, batch_size: int = 1, out=None,
                 clip_seconds: int | None = None, arrays: bool = False) -> None:
        super().__init__(model, meta, info, batch_size=batch_size)
        self.size = self.window_size({"clip_seconds": clip_seconds})
        self.out, self.arrays = (None if out is None else Path(out)), arrays
        self.stem = Path(info.video).stem
        self.coverage: list[float] = []
        self.written: list[str] = []
        self.tiles: list[np.ndarray] = []
        self.sheets: list[str] = []
        self.pages = max(1, -(-info.num_segments // PAGE_SECONDS))
        self.masks: list[np.ndarray] = []
        self.frames: list[np.ndarray] = []

    @torch.no_grad()
    def update(self, window: Window) -> None:
        masks = []
        for _, audio, frames in self.chunks(window, self.size):
            logits = self.model(audio, normalize_frames(frames, *self.model.backbone.frame_stats))
            masks.append((torch.sigmoid(logits) > 0.5).reshape(-1, *logits.shape[-2:]).numpy())
        masks = np.concatenate(masks)
        self.coverage += [round(float(m.mean()), 4) for m in masks]
        if self.out is not None:
            for j, (mask, frame) in enumerate(zip(masks, window.frames)):
                second = window.first + j
                target = self.out / f"{self.stem}_{second + 1}.png"
                write_bytes(target, png((mask * 255).astype(np.uint8)))
                self.written.append(str(target))
                self.tiles.append(overlay(frame, mask))
                if len(self.tiles) == PAGE_SECONDS:
                    self._sheet()
        if self.arrays:
            self.masks.append(masks)
            self.frames.append(window.frames)

    def _sheet(self) -> None:
        name = f"{self.stem}_sheet.png" if self.pages == 1 else f"{self.stem}_sheet_{len(self.sheets) + 1:03d}.png"
        write_bytes(self.out / name, png(np.concatenate(self.tiles, axis=1)))
        self.sheets.append(str(self.out / name))
        self.tiles = []

    def result(self) -> dict:
        result = {"video": self.info.video, "duration": self.info.duration, "has_audio": self.info.has_audio,
                  "coverage": self.coverage}
        if self.out is not None:
            if self.tiles:
                self._sheet()
            result.update(masks=self.written, sheet=self.sheets[0] if self.sheets else None)
            if self.pages > 1:
                result["sheets"] = self.sheets
        if self.arrays:
            result.update(mask_array=np.concatenate(self.masks), frames=np.concatenate(self.frames))
        return result

