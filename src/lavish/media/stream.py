"""Decode a video of any length window by window, in bounded memory: the same inputs as :func:`decode_clip`.

:func:`lavish.media.decode.decode_clip` holds the whole soundtrack, every video packet and every chosen frame of a
file at once: fine for a 10-s clip, 2.6x the memory of a 1-minute file on a 20-minute one. :class:`VideoStream`
gives the same segments (the same window rule, the same frame instants, the same audio images) a few at a time:

1. a first pass over the audio packets only counts the 16-kHz samples and sums them (the window rule and the
   whole-file mean removal of the authors' recipe need both; nothing is kept);
2. a second pass demuxes audio and video together, keeps a rolling buffer of samples that later windows still need
   and the last decoded picture, and yields a :class:`Window` as soon as its audio and frames are complete.

Memory is one window of frames and audio images plus the audio between two windows' starts, whatever the length;
the time is one decode of the file (every video frame is decoded in order: a stream cannot skip the reference
frames a later frame depends on) and one extra read of its audio packets.

Equality with :func:`decode_clip` (tests/media/test_stream.py): the frames are the same pictures converted by the same
code; the audio images are computed from the same samples, with the mean summed chunk by chunk in float64 instead
of in one call (equal to the float32 rounding in practice; the tests allow 1e-5).

A file that breaks in the middle (truncated, corrupt packets) yields every window before the break, then raises
:class:`MediaError` naming the file and the second where it broke.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np

from lavish.errors import ConfigError, MediaError
from lavish.media.audio import SAMPLE_RATE, AudioFrontend, get_frontend, window_starts
from lavish.media.decode import _duration, _open, _reason, _to_rgb, frame_times


@dataclass
class Window:
    """Consecutive segments of a video.

    first: index of the first segment in the video. frames: (t, H, W, 3) uint8 RGB. spectrograms: (t, F, M)
    float32. times: (t,) float64 seconds of each frame (:func:`lavish.media.decode.frame_times`).
    """

    first: int
    frames: np.ndarray
    spectrograms: np.ndarray
    times: np.ndarray

    def __len__(self) -> int:
        return len(self.times)


def _resampler() -> av.AudioResampler:
    # s16 mono, as lavish.media.decode._decode_audio (the authors' ffmpeg -ac 1 -ar 16000 wav)
    return av.AudioResampler(format="s16", layout="mono", rate=SAMPLE_RATE)


def _samples(frames) -> Iterator[np.ndarray]:
    for out in frames:
        yield out.to_ndarray().reshape(-1).astype(np.float32) / np.float32(32768.0)


class VideoStream:
    """One video opened for window-by-window decoding.

    ``num_segments``: None for one segment per whole second (predictions on a user's video), or T segments spread
    over the file (the task's clip length). After construction (one pass over the audio): ``duration`` (s),
    ``has_audio``, ``num_samples`` (16-kHz samples of the soundtrack), ``times`` (T,) frame instants and
    ``num_segments``. :meth:`windows` yields the segments ``size`` at a time.
    """

    def __init__(self, path: str | os.PathLike, *, frame_size: tuple[int, int], frontend: AudioFrontend | str,
                 num_segments: int | None = None) -> None:
        self.path = Path(path)
        self.frame_size = tuple(frame_size)
        self.frontend = get_frontend(frontend) if isinstance(frontend, str) else frontend
        with _open(self.path) as container:
            if not container.streams.video:
                raise MediaError(f"{self.path}: no video stream")
            self.duration = _duration(container)
            if not self.duration > 0:
                raise MediaError(f"{self.path}: zero-length video")
            self.has_audio = bool(container.streams.audio)
            if self.has_audio:
                self.num_samples, total = self._count_audio(container)
                self.mean = np.float64(total / self.num_samples).astype(np.float32) if self.num_samples else None
            else:
                warnings.warn(f"{self.path}: no audio stream; using silence", stacklevel=2)
                self.num_samples, self.mean = int(round(self.duration * SAMPLE_RATE)), np.float32(0.0)
        self.times = frame_times(self.duration, num_segments, self.frontend.window_s, self.num_samples)
        self.num_segments = len(self.times)
        self.starts = window_starts(self.num_samples, self.num_segments, self.frontend.window_s)
        self.length = int(round(SAMPLE_RATE * self.frontend.window_s))

    def _count_audio(self, container) -> tuple[int, float]:
        """(samples, their float64 sum) of the resampled soundtrack, keeping nothing."""
        resampler, count, total = _resampler(), 0, 0.0
        try:
            for frame in container.decode(container.streams.audio[0]):
                frame.pts = None
                for chunk in _samples(resampler.resample(frame)):
                    count += chunk.size
                    total += float(chunk.sum(dtype=np.float64))
            for chunk in _samples(resampler.resample(None)):
                count += chunk.size
                total += float(chunk.sum(dtype=np.float64))
        except av.FFmpegError as err:
            raise MediaError(f"{self.path}: cannot decode audio ({_reason(err)})") from None
        return count, total

    # ------------------------------------------------------------------------------------------------ audio
    def _spectrograms(self, first: int, stop: int, audio: "_AudioBuffer") -> np.ndarray:
        """(stop - first, F, M) audio images of segments [first, stop) from the samples in ``audio``."""
        if self.starts is None:  # a file too short to crop: every segment hears all of it (audio.py's rule)
            whole = audio.take(0, audio.end) if self.num_samples else np.zeros(0, np.float32)
            if whole.size:
                whole = whole - self.mean
            return np.repeat(self.frontend.spectrogram(whole)[None], stop - first, axis=0)
        cuts = np.stack([audio.take(int(s), int(s) + self.length) for s in self.starts[first:stop]])
        return self.frontend.spectrogram(cuts - self.mean)

    def _needed_sample(self, segment: int) -> int:
        """Samples that must be decoded before segment ``segment``'s audio image can be computed."""
        if self.starts is None:
            return self.num_samples
        return int(self.starts[segment]) + self.length

    # ------------------------------------------------------------------------------------------------ windows
    def windows(self, size: int) -> Iterator[Window]:
        """Yield :class:`Window` s of ``size`` consecutive segments (the last one shorter), in order.

        The audio and the video are read through two handles of the file, each at its own pace, so a file whose
        streams are stored far apart (all the video, then all the audio) costs no more memory than an interleaved
        one."""
        if not isinstance(size, int) or isinstance(size, bool) or size < 1:
            raise ConfigError(f"window size must be a positive integer, got {size!r}")
        with contextlib.ExitStack() as stack:
            video = stack.enter_context(_open(self.path))
            audio = _AudioBuffer(None if self.has_audio else self.num_samples)
            chunks = self._audio_chunks(stack.enter_context(_open(self.path))) if self.has_audio else iter(())
            pictures = _Pictures(self.times, video.streams.video[0].time_base, self.frame_size)
            frames = self._video_frames(video, pictures)
            for first in range(0, self.num_segments, size):
                stop = min(first + size, self.num_segments)
                need = self._needed_sample(stop - 1)
                while audio.end < need:
                    chunk = next(chunks, None)
                    if chunk is None:
                        break
                    audio.append(chunk)
                while not pictures.settled(stop):
                    frame = next(frames, None)
                    if frame is None:
                        if pictures.missing(first, stop, self.duration):
                            raise MediaError(f"{self.path}: truncated: video frames stop at {pictures.end:.2f} s, "
                                             f"the container says {self.duration:.2f} s")
                        break
                    pictures.add(frame)
                yield self._window((first, stop), audio, pictures)

    def _audio_chunks(self, container) -> Iterator[np.ndarray]:
        """(n,) float32 16-kHz mono chunks of the soundtrack, in order (as decode_clip's waveform)."""
        resampler = _resampler()
        try:
            for frame in container.decode(container.streams.audio[0]):
                frame.pts = None  # concatenated in decode order, as decode_clip
                yield from _samples(resampler.resample(frame))
            yield from _samples(resampler.resample(None))
        except av.FFmpegError as err:
            raise MediaError(f"{self.path}: cannot decode audio ({_reason(err)})") from None

    def _video_frames(self, container, pictures: "_Pictures") -> Iterator:
        """The video's frames in presentation order; MediaError naming the second where decoding broke."""
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        try:
            yield from container.decode(stream)
        except av.FFmpegError as err:
            at = "" if pictures.last_time is None else f" after {pictures.last_time:.1f} s"
            raise MediaError(f"{self.path}: cannot decode video{at} ({_reason(err)})") from None

    def _ready(self, bound: tuple[int, int], audio: "_AudioBuffer", pictures: "_Pictures") -> bool:
        first, stop = bound
        return audio.end >= self._needed_sample(stop - 1) and pictures.settled(stop)

    def _window(self, bound: tuple[int, int], audio: "_AudioBuffer", pictures: "_Pictures") -> Window:
        first, stop = bound
        window = Window(first, pictures.take(first, stop), self._spectrograms(first, stop, audio),
                        self.times[first:stop])
        if self.starts is not None and stop < self.num_segments:
            audio.drop_before(int(self.starts[stop]))
        return window


class _AudioBuffer:
    """The decoded samples that windows still need: [start, end) of the whole soundtrack.

    ``silence``: a file without audio, whose soundtrack is that many zero samples (made on demand)."""

    def __init__(self, silence: int | None = None) -> None:
        self.chunks: list[np.ndarray] = []
        self.start = 0
        self.end = 0 if silence is None else silence
        self.silence = silence is not None

    def append(self, chunk: np.ndarray) -> None:
        if chunk.size:
            self.chunks.append(chunk)
            self.end += chunk.size

    def take(self, a: int, b: int) -> np.ndarray:
        """Samples [a, b) (a >= start); zeros for a file without audio."""
        if self.silence:
            return np.zeros(max(0, min(b, self.end) - a), np.float32)
        if len(self.chunks) > 1:
            self.chunks = [np.concatenate(self.chunks)]
        data = self.chunks[0] if self.chunks else np.zeros(0, np.float32)
        return data[a - self.start:b - self.start]

    def drop_before(self, a: int) -> None:
        a = min(a, self.end)  # never past what was decoded: the next chunk starts at ``end``
        if self.silence or a <= self.start:
            return
        if len(self.chunks) > 1:
            self.chunks = [np.concatenate(self.chunks)]
        if self.chunks:
            self.chunks = [self.chunks[0][a - self.start:].copy()]
        self.start = a


class _Pictures:
    """Picks, from frames decoded in presentation order, the frame shown at each instant of ``times``
    (the largest presentation time <= t, the first frame for t before it), as
    :func:`lavish.media.decode.read_frames` does from the packets' timestamps."""

    def __init__(self, times: np.ndarray, time_base, size: tuple[int, int]) -> None:
        self.times, self.tb, self.size = times, time_base, size
        self.start = None  # pts of the first frame
        self.previous = None  # (seconds, av.VideoFrame) of the last frame decoded
        self.chosen: dict[int, np.ndarray] = {}
        self.next = 0  # first instant not settled yet
        self.end = 0.0
        self.last_time = None

    def add(self, frame) -> None:
        stamp = frame.pts if frame.pts is not None else frame.dts
        if stamp is None:
            return
        if self.start is None:
            self.start = stamp
        seconds = float((stamp - self.start) * self.tb)
        # the instants before this frame are shown by the previous one (the first frame for instants before it)
        while self.next < len(self.times) and self.times[self.next] < seconds:
            shown = self.previous[1] if self.previous is not None else frame
            self.chosen[self.next] = _to_rgb(shown, self.size)
            self.next += 1
        self.previous = (seconds, frame)
        self.last_time = seconds
        self.end = seconds + float((frame.duration or 0) * self.tb)

    def settled(self, stop: int) -> bool:
        return self.next >= stop

    def missing(self, first: int, stop: int, duration: float) -> bool | None:
        """After the last frame: fill instants [first, stop) with it; True when some of them lie more than 0.5 s
        after the last frame, before the container's end (a truncated file, as read_frames)."""
        if self.previous is None:
            return True
        late = self.times[first:stop]
        if np.any((late > self.end + 0.5) & (late < duration)):
            return True
        while self.next < stop:
            self.chosen[self.next] = _to_rgb(self.previous[1], self.size)
            self.next += 1
        return None

    def take(self, first: int, stop: int) -> np.ndarray:
        return np.stack([self.chosen.pop(i) for i in range(first, stop)])
