"""Prediction on videos of any length and on folders of any size (``lavish predict``, ``TrainedModel.predict``).

A task's prediction is a :class:`Prediction`: built from the model and one video's :class:`StreamInfo`, fed the
video's :class:`~lavish.media.stream.Window` s in order (each a few segments: decoded, computed and forgotten),
then asked for its :meth:`~Prediction.result`, the dict ``lavish predict --json`` prints. Memory is one window's
frames, audio images and activations, whatever the video's length (docs/performance.md measures it).

:func:`predict_video` runs one video in this process. :func:`predict_many` runs a list of videos: decoding in
DataLoader worker processes (``workers``) overlapped with the model in this one, one JSON line per video appended
to a results file as it finishes (``resume`` skips the videos already there), failures in ``failed.tsv`` beside it.
"""

from __future__ import annotations

import errno
import glob
import hashlib
import json
import os
import sys
import time
import warnings
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from lavish.errors import ConfigError, DataError, LavishError, WriteError
from lavish.media.stream import VideoStream, Window

#: extensions taken from a folder or a glob (a file named on the command line or in a list is always tried)
VIDEO_EXTENSIONS = frozenset({".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".mpg", ".mpeg", ".flv", ".wmv",
                              ".ts", ".mts", ".3gp", ".ogv"})


@dataclass(frozen=True)
class StreamInfo:
    """What is known of a video before its windows: path, duration (s), has_audio, and the frame instant of each
    segment, times (T,) float64 seconds."""

    video: str
    duration: float
    has_audio: bool
    times: np.ndarray

    @classmethod
    def of(cls, stream: VideoStream, video: str | os.PathLike) -> "StreamInfo":
        return cls(str(video), stream.duration, stream.has_audio, stream.times)

    @property
    def num_segments(self) -> int:
        return len(self.times)


class Prediction(ABC):
    """One video's prediction, built window by window (a task subclasses it; :attr:`Task.prediction_cls`).

    Class settings: :attr:`window` (segments the model sees at once: the task's clip length; one segment per whole
    second of the video) and :attr:`window_option` (the option that changes it). ``batch_size`` consecutive windows
    of full length go through the model as one batch.
    """

    window: ClassVar[int] = 10
    window_option: ClassVar[str | None] = None
    """the task's option that sets :attr:`window` (AVE ``batch_seconds``, AVVP ``window``, AVS ``clip_seconds``)"""

    def __init__(self, model: nn.Module, meta: dict, info: StreamInfo, *, batch_size: int = 1):
        self.model, self.meta, self.info, self.batch_size = model, meta, info, batch_size

    @classmethod
    def stream_segments(cls, meta: dict, options: dict) -> int | None:
        """How the video is read: None (the default) for one segment per whole second, in windows of
        :meth:`window_size`; T for T segments spread over the whole file, in one window (a task that labels a clip
        reads a video as its training clips were read: T = the adapter file's ``num_segments``)."""
        return None

    @classmethod
    def window_size(cls, options: dict) -> int:
        """Segments per model call: the task's clip length, or the value of :attr:`window_option` in ``options``."""
        size = options.get(cls.window_option) if cls.window_option else None
        return cls.window if size is None else positive_int(size, cls.window_option)

    @abstractmethod
    def update(self, window: Window) -> None:
        """Run the model on ``window`` (``batch_size`` x the window size segments, full windows stacked) and keep
        what the result needs (per-second labels, not frames)."""

    @abstractmethod
    def result(self) -> dict:
        """The prediction of the segments seen so far (the dict ``lavish predict --json`` prints)."""

    # -------------------------------------------------------------------------------------------- helpers
    def chunks(self, window: Window, size: int) -> Iterator[tuple[int, torch.Tensor, torch.Tensor]]:
        """(first segment, audio (B, t, F, M), frames (B, t, H, W, 3) uint8) of ``window`` cut into ``size``
        segments: full chunks stacked as one batch, a shorter last chunk apart."""
        audio, frames = torch.from_numpy(window.spectrograms), torch.from_numpy(window.frames)
        full = len(window) // size * size
        if full:
            yield (window.first, audio[:full].reshape(-1, size, *audio.shape[1:]),
                   frames[:full].reshape(-1, size, *frames.shape[1:]))
        if full < len(window):
            yield window.first + full, audio[full:][None], frames[full:][None]


def positive_int(value: Any, name: str) -> int:
    """``value`` when it is a positive integer; ConfigError naming ``name`` otherwise."""
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ConfigError(f"{name}={value!r} is not valid: it must be a positive integer")
    return value


def open_stream(task, meta: dict, video: str | os.PathLike, options: dict) -> tuple[VideoStream, int]:
    """(the video opened for the task's prediction, segments per window)."""
    cls = task.prediction_cls
    segments = cls.stream_segments(meta, options)
    stream = VideoStream(video, frame_size=tuple(meta["frame_size"]), frontend=meta["frontend"],
                         num_segments=segments)
    return stream, segments or cls.window_size(options)


@torch.no_grad()
def predict_video(task, model: nn.Module, meta: dict, video: str | os.PathLike, *, batch_size: int = 1,
                  **options: Any) -> dict:
    """The task's prediction on one video of any length, window by window (memory bounded by one window)."""
    positive_int(batch_size, "batch_size")
    stream, size = open_stream(task, meta, video, options)
    prediction = task.prediction_cls(model, meta, StreamInfo.of(stream, video), batch_size=batch_size, **options)
    for window in stream.windows(size * batch_size):
        prediction.update(window)
    return prediction.result()


# --------------------------------------------------------------------------------------------- many videos
@dataclass
class Inputs:
    """The videos a ``lavish predict`` command names: ``videos`` to run, ``skipped`` (path, reason) that are not."""

    videos: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)


def expand_inputs(items: Sequence[str | os.PathLike]) -> Inputs:
    """VIDEO, DIR (every file below it, recursively, in sorted order), GLOB (``*``, ``?``, ``[``) or @LIST (a text
    file, one path a line, relative to the list's folder, ``#`` comments) -> the videos, each once, in order.

    Files in a folder or a glob whose extension is not a video's (:data:`VIDEO_EXTENSIONS`) are skipped and listed;
    a file named on the command line or in a list is always tried. A missing path or a pattern that matches nothing
    is a ConfigError."""
    out, seen = Inputs(), set()

    def add(path: str) -> None:
        if path not in seen:
            seen.add(path)
            out.videos.append(path)

    def add_found(paths: Sequence[str]) -> None:
        for path in paths:
            if Path(path).suffix.lower() in VIDEO_EXTENSIONS:
                add(path)
            elif path not in seen:
                seen.add(path)
                out.skipped.append((path, f"not a video file (extension {Path(path).suffix or 'none'}): skipped"))

    for item in map(str, items):
        if item.startswith("@"):
            listing = Path(item[1:])
            try:
                lines = listing.read_text().splitlines()
            except (OSError, UnicodeDecodeError) as err:
                raise ConfigError(f"{listing}: cannot read the list of videos ({err})") from None
            for line in lines:
                line = line.strip()
                if line and not line.startswith("#"):
                    path = Path(line)
                    add(str(path if path.is_absolute() else listing.parent / path))
        elif Path(item).is_dir():
            add_found(sorted(str(p) for p in Path(item).rglob("*") if p.is_file()))
        elif any(c in item for c in "*?[") and not Path(item).exists():
            found = sorted(p for p in glob.glob(item, recursive=True) if Path(p).is_file())
            if not found:
                raise ConfigError(f"{item}: no file matches this pattern")
            add_found(found)
        else:
            add(item)
    return out


def checkpoint_digest(path: str | os.PathLike) -> str:
    """sha256 of an adapter file: which model a results file was made with (``--resume`` checks it)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class ResultsFile:
    """A JSON-lines results file, one video a line, appended durably: each line is written whole with one
    ``write`` and fsynced; when a write fails (a full disk) the file is cut back to its last whole line, so every
    line in it stays valid and ``resume`` continues after it.

    ``<file>.run.json`` beside it records the checkpoint (its sha256) the lines were made with; ``failed.tsv``
    beside it lists the videos that gave no result (path, one-line reason)."""

    def __init__(self, path: str | os.PathLike, *, checkpoint: str | os.PathLike, resume: bool) -> None:
        from lavish.fileio import write_json

        self.path = Path(path)
        self.run_path = self.path.with_name(self.path.name + ".run.json")
        self.failed_path = self.path.with_name("failed.tsv")
        identity = {"checkpoint": str(checkpoint), "sha256": checkpoint_digest(checkpoint)}
        self.done: set[str] = set()
        if self.path.exists() and not resume:
            raise ConfigError(f"{self.path} exists: pass resume=True (lavish predict --resume) to continue it, or "
                              "choose another results file")
        if resume and self.path.exists():
            self._check_identity(identity)
            self.done = self._read_done()
        elif resume and not self.path.exists():
            resume = False
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            write_json(self.run_path, identity)
            if not resume:
                self.path.write_bytes(b"")
                self.failed_path.unlink(missing_ok=True)
        except OSError as err:
            raise WriteError(f"cannot write {err.filename or self.path} ({err.strerror})") from None

    def _check_identity(self, identity: dict) -> None:
        try:
            recorded = json.loads(self.run_path.read_text())
        except FileNotFoundError:
            raise ConfigError(f"{self.path}: cannot resume, {self.run_path.name} (which checkpoint made it) is "
                              "missing") from None
        except (OSError, ValueError) as err:
            raise DataError(f"{self.run_path}: unreadable ({err})") from None
        if recorded.get("sha256") != identity["sha256"]:
            raise ConfigError(f"{self.path} holds predictions of another checkpoint ({recorded.get('checkpoint')}), "
                              f"not of {identity['checkpoint']}: choose another results file")

    def _read_done(self) -> set[str]:
        """Videos with a whole line; a last line cut by a crash (no newline or not JSON) is removed."""
        data = self.path.read_bytes()
        keep = data.rfind(b"\n") + 1
        done = set()
        for number, line in enumerate(data[:keep].splitlines(), 1):
            try:
                done.add(json.loads(line)["video"])
            except (ValueError, KeyError, TypeError):
                raise DataError(f"{self.path}: line {number} is not a prediction of lavish") from None
        if keep < len(data):
            with open(self.path, "r+b") as f:
                f.truncate(keep)
        return done

    def append(self, result: dict) -> None:
        line = (json.dumps(_plain(result)) + "\n").encode()
        self._append(self.path, line)

    def fail(self, video: str, reason: str) -> None:
        self._append(self.failed_path, f"{video}\t{' '.join(reason.split())}\n".encode())

    @staticmethod
    def _append(path: Path, line: bytes) -> None:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            size = os.fstat(fd).st_size
            try:
                if os.write(fd, line) != len(line):
                    raise OSError(errno.ENOSPC, "short write", str(path))
                os.fsync(fd)
            except OSError as err:
                try:
                    os.ftruncate(fd, size)
                except OSError:
                    pass
                raise WriteError(f"cannot write {path} ({err.strerror}); the lines before are kept: run the same "
                                 "command with resume=True (lavish predict --resume) to continue") from None
        finally:
            os.close(fd)


def _plain(value: Any) -> Any:
    """JSON types (numpy scalars and arrays become numbers and lists)."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


class _Windows(torch.utils.data.IterableDataset):
    """Decodes videos window by window in DataLoader workers (each worker takes every n-th video) and yields
    events: ("start", i, StreamInfo), ("window", i, Window), ("end", i, None), ("error", i, message),
    ("warning", i, message)."""

    def __init__(self, task, meta: dict, videos: list[str], options: dict, batch_size: int) -> None:
        self.task, self.meta, self.videos, self.options, self.batch_size = task, meta, videos, options, batch_size

    def __iter__(self):
        info = torch.utils.data.get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        for i in range(worker, len(self.videos), workers):
            yield from self._video(i)

    def _video(self, i: int):
        video = self.videos[i]
        try:
            with warnings.catch_warnings(record=True) as caught:  # "no audio stream": shown by the main process
                warnings.simplefilter("always")
                stream, size = open_stream(self.task, self.meta, video, self.options)
            yield from (("warning", i, str(w.message)) for w in caught)
            yield "start", i, StreamInfo.of(stream, video)
            for window in stream.windows(size * self.batch_size):
                yield "window", i, window
            yield "end", i, None
        except LavishError as err:
            yield "error", i, str(err)


@dataclass
class ManyResult:
    """What :func:`predict_many` did: videos done now, already done (resumed), failed, skipped (not videos)."""

    done: int = 0
    resumed: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    seconds: float = 0.0
    video_seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.failed


@torch.no_grad()
def predict_many(task, model: nn.Module, meta: dict, inputs: Inputs, results: ResultsFile, *, workers: int = 0,
                 batch_size: int = 1, progress: bool = True, options_for=None, on_result=None) -> ManyResult:
    """Run the task's prediction on every video of ``inputs`` not yet in ``results``, appending a line per video
    as it finishes (in the order they finish). A video that cannot be read, or breaks in the middle, is listed in
    failed.tsv with the reason; one that broke after some windows also gets its line, with the seconds before the
    break and an ``error`` key. ``options_for(video) -> dict``: per-video task options (a plot path...)."""
    from tqdm import tqdm

    positive_int(batch_size, "batch_size")
    if not isinstance(workers, int) or isinstance(workers, bool) or workers < 0:
        raise ConfigError(f"workers={workers!r} is not valid: it must be an integer >= 0")
    start = time.monotonic()
    summary = ManyResult(skipped=list(inputs.skipped))
    for path, reason in inputs.skipped:
        results.fail(path, reason)
    todo = [v for v in inputs.videos if v not in results.done]
    summary.resumed = len(inputs.videos) - len(todo)
    base = options_for(None) if options_for else {}
    loader = torch.utils.data.DataLoader(_Windows(task, meta, todo, base, batch_size), batch_size=None,
                                         num_workers=min(workers, len(todo)), collate_fn=_identity,
                                         prefetch_factor=2 if workers else None, persistent_workers=False)
    running: dict[int, Prediction] = {}
    windows: dict[int, int] = {}  # windows seen of each running video
    bar = tqdm(total=len(todo), desc="predict", unit="video", disable=not progress, file=sys.stderr)
    try:
        for kind, i, payload in loader:
            video = todo[i]
            if kind == "warning":
                warnings.warn(payload, stacklevel=1)
            elif kind == "start":
                options = options_for(video) if options_for else {}
                running[i] = task.prediction_cls(model, meta, payload, batch_size=batch_size, **options)
                windows[i] = 0
            elif kind == "window":
                running[i].update(payload)
                windows[i] += 1
            elif kind == "end":
                windows.pop(i)
                result = running.pop(i).result()
                results.append(result)
                summary.done += 1
                summary.video_seconds += float(result.get("duration", 0.0))
                bar.update(1)
                if on_result is not None:
                    on_result(result)
            else:  # error
                partial = running.pop(i, None)
                if partial is not None and windows.pop(i):  # broke in the middle: the windows before are kept
                    result = {**partial.result(), "error": payload}
                    results.append(result)
                    if on_result is not None:
                        on_result(result)
                results.fail(video, payload)
                summary.failed.append((video, payload))
                bar.update(1)
    finally:
        bar.close()
    summary.seconds = time.monotonic() - start
    return summary


def _identity(item):
    return item


# ------------------------------------------------------------------------------------------ long-video outputs
PAGE_SECONDS = 60
"""Seconds per page of a prediction timeline: a longer video gets one PNG per minute, each readable."""


def merge_events(labels: Sequence[str], probabilities: Sequence[float], duration: float, *, skip: str | None = None,
                 min_duration: float = 0.0) -> list[dict]:
    """Runs of one label over consecutive seconds -> [{label, start, end, probability}] in seconds (``end``
    exclusive, cut to ``duration``; probability = the mean over the run, 4 decimals), without ``skip`` (AVE's
    background) and runs shorter than ``min_duration``."""
    events, start = [], 0
    for t in range(1, len(labels) + 1):
        if t < len(labels) and labels[t] == labels[start]:
            continue
        label = labels[start]
        end = min(float(t), float(duration)) if duration > start else float(t)
        if label != skip and end - start >= min_duration:
            mean = float(np.mean(probabilities[start:t]))
            events.append({"label": label, "start": float(start), "end": round(end, 3), "probability": round(mean, 4)})
        start = t
    return events


class TimelinePages:
    """Draws a prediction timeline page by page while the windows go by: pages of :data:`PAGE_SECONDS` seconds,
    each with up to 6 thumbnails, so that a video of any length costs 6 kept frames a page and gives readable
    pictures. One page: the file ``path`` itself; more: ``<stem>-001<suffix>``, ``<stem>-002<suffix>``, ...

    ``draw(first, stop, thumbs, title, path) -> Path`` draws seconds [first, stop) with ``thumbs`` {second - first:
    (H, W, 3) uint8}."""

    def __init__(self, path: str | os.PathLike, info: StreamInfo, draw) -> None:
        self.path, self.info, self.draw = Path(path), info, draw
        self.total = info.num_segments
        self.pages = max(1, -(-self.total // PAGE_SECONDS))
        self.thumbs: dict[int, np.ndarray] = {}
        self.drawn: list[str] = []
        self.seen = 0

    def _page_path(self, page: int) -> Path:
        if self.pages == 1:
            return self.path
        return self.path.with_name(f"{self.path.stem}-{page + 1:03d}{self.path.suffix or '.png'}")

    def _wanted(self, page: int) -> set[int]:
        """The seconds of page ``page`` whose frames the page shows (up to 6, evenly spread)."""
        first, stop = page * PAGE_SECONDS, min((page + 1) * PAGE_SECONDS, self.total)
        n = stop - first
        return {first + int(i) for i in np.linspace(0, n - 1, min(6, n)).round().astype(int)}

    def add(self, window: Window) -> None:
        pages = range(window.first // PAGE_SECONDS, (window.first + len(window) - 1) // PAGE_SECONDS + 1)
        wanted = set().union(*(self._wanted(page) for page in pages))
        for second in wanted & set(range(window.first, window.first + len(window))):
            self.thumbs[second] = window.frames[second - window.first]
        self.seen = window.first + len(window)
        while len(self.drawn) < self.pages and self.seen >= min((len(self.drawn) + 1) * PAGE_SECONDS, self.total):
            self._draw_page(len(self.drawn), min((len(self.drawn) + 1) * PAGE_SECONDS, self.total))

    def _draw_page(self, page: int, stop: int) -> None:
        first = page * PAGE_SECONDS
        thumbs = {s - first: self.thumbs.pop(s) for s in sorted(self.thumbs) if first <= s < stop}
        title = Path(self.info.video).name + (f" ({page + 1}/{self.pages})" if self.pages > 1 else "")
        self.drawn.append(str(self.draw(first, stop, thumbs, title, self._page_path(page))))

    def finish(self) -> dict:
        """Draw what is left (a video that broke before its end) -> {plot: first page[, plots: every page]}."""
        page = len(self.drawn)
        if page < self.pages and self.seen > page * PAGE_SECONDS:
            self._draw_page(page, self.seen)
        if not self.drawn:
            return {}
        return {"plot": self.drawn[0], **({"plots": self.drawn} if self.pages > 1 else {})}


def check_min_duration(value: Any) -> float:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not value >= 0:
        raise ConfigError(f"min_duration={value!r} is not valid: it must be a number of seconds >= 0")
    return float(value)
