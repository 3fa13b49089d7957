"""Decode videos straight into model inputs: frames at 1-s segment instants and per-segment audio images.

Spec 2.2 / 2.3. The authors pre-extract 1-fps (or 3-fps) jpgs and a 16 kHz mono wav with the ffmpeg command
line, then sample ``linspace(1, n_frames, 10)`` jpgs. We decode the original file with PyAV instead, in
memory, decoding only the video frames the segments need (see :func:`read_frames`); about 2x faster than the
ffmpeg jpg + wav route on a 10-s 640x360 clip (benchmarks/media.py):

* audio: every audio stream layout / rate is resampled to 16 kHz mono with PyAV's ``AudioResampler``
  (libswresample, the same code, down-mix matrix and int16 quantisation as ``ffmpeg -ac 1 -ar 16000 x.wav``
  followed by torchaudio.load), then cut into windows by :func:`lavish.media.audio.segment_spectrograms`;
* frames: the frame SHOWN at the centre of each segment's audio window (:func:`frame_times`), converted to RGB
  and resized bicubic by libswscale to (H, W) without keeping the aspect ratio (as the authors' Resize), after
  applying the container's display rotation (phone videos).

Frame instants, where we differ from the authors: they take ``linspace(1, n, T)`` of pre-extracted jpgs, whose
instants are unrelated to the audio windows; on a 60-s MUSIC-AVQA video the ten 1-fps frames (0, 6, 13, ..., 59 s)
sit up to 1.4 s from the centres of the ten 1.95-s windows (0.98, 7.41, ..., 58.93 s), and the middles of the
ten 6-s tenths (3, 9, ..., 57 s, what lavish took before) up to 2.0 s. We keep the authors' audio windows
exactly and take each frame at its window's centre, so the pair is less than one video frame period apart
(tests/media/test_av_alignment.py reads both instants back from a time-coded 60-s mp4). For 1-s AVE segments of a
10-s clip the centres (0.5, 1.49, ..., 9.4 s) are within 0.1 s of the middles of the seconds, inside the
labelled second.

Errors: a file that is not media, is truncated, has no video stream or lasts 0 s raises :class:`MediaError`
with one line naming the file. A file WITHOUT an audio stream is accepted: it is treated as digital silence
(the same input as a muted soundtrack), ``Clip.has_audio`` is False, and a ``warnings.warn`` names the file.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np

from lavish.errors import ConfigError, MediaError
from lavish.media.audio import SAMPLE_RATE, AudioFrontend, get_frontend, segment_spectrograms, window_centres

@dataclass
class MediaInfo:
    """What :func:`probe` finds in a file (duration in seconds; rotation in degrees counter-clockwise)."""

    path: Path
    duration: float
    has_video: bool
    has_audio: bool
    width: int | None = None
    height: int | None = None
    fps: float | None = None
    rotation: int = 0
    sample_rate: int | None = None
    channels: int | None = None


@dataclass
class Clip:
    """Model inputs of one video.

    frames: (T, H, W, 3) uint8 RGB. spectrograms: (T, F, M) float32 (F = frontend.target_frames,
    M = num_mel_bins). times: (T,) float64 seconds at which the frames were taken (:func:`frame_times`).
    duration: seconds.
    """

    frames: np.ndarray
    spectrograms: np.ndarray
    times: np.ndarray
    duration: float
    has_audio: bool


def _open(path: Path) -> av.container.InputContainer:
    if not path.is_file():
        raise MediaError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise MediaError(f"{path}: empty file")
    try:
        return av.open(str(path), mode="r")
    except av.FFmpegError as err:
        raise MediaError(f"{path}: not a readable media file ({_reason(err)})") from None


def _reason(err: Exception) -> str:
    return " ".join(str(getattr(err, "strerror", None) or err).split())


def _duration(container) -> float:
    """Seconds: the container's duration, else the longest stream's."""
    if container.duration is not None and container.duration > 0:
        return container.duration / av.time_base
    durations = [float(s.duration * s.time_base) for s in container.streams if s.duration and s.time_base]
    return max(durations, default=0.0)


def probe(path: str | os.PathLike) -> MediaInfo:
    """Read the headers of a media file (and decode its first video frame for the rotation)."""
    path = Path(path)
    with _open(path) as container:
        video = container.streams.video[0] if container.streams.video else None
        audio = container.streams.audio[0] if container.streams.audio else None
        info = MediaInfo(path=path, duration=_duration(container), has_video=video is not None,
                         has_audio=audio is not None)
        if video is not None:
            ctx = video.codec_context
            info.width, info.height = ctx.width, ctx.height
            rate = video.average_rate or video.guessed_rate
            info.fps = float(rate) if rate else None
            try:
                first = next(container.decode(video), None)
            except av.FFmpegError as err:
                raise MediaError(f"{path}: cannot decode video ({_reason(err)})") from None
            info.rotation = _quarter_turns(first.rotation) * 90 if first is not None else 0
        if audio is not None:
            info.sample_rate = audio.codec_context.sample_rate
            info.channels = audio.codec_context.channels
    return info


def read_audio(path: str | os.PathLike, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """(n,) float32 mono waveform of the first audio stream, resampled to ``sample_rate``.

    MediaError if the file has no audio stream or cannot be decoded.
    """
    path = Path(path)
    with _open(path) as container:
        if not container.streams.audio:
            raise MediaError(f"{path}: no audio stream")
        return _decode_audio(container, path, sample_rate)


def _decode_audio(container, path: Path, sample_rate: int) -> np.ndarray:
    stream = container.streams.audio[0]
    # s16 output, like the authors' `ffmpeg -ac 1 -ar 16000 x.wav`: libswresample then normalises the
    # down-mix matrix (stereo -> (L + R) / 2); with float output it would not (0.707 L + 0.707 R, +3 dB).
    resampler = av.AudioResampler(format="s16", layout="mono", rate=sample_rate)
    chunks: list[np.ndarray] = []
    try:
        for frame in container.decode(stream):
            frame.pts = None  # we concatenate in decode order; avoids swr timestamp compensation
            for out in resampler.resample(frame):
                chunks.append(out.to_ndarray().reshape(-1))
        for out in resampler.resample(None):
            chunks.append(out.to_ndarray().reshape(-1))
    except av.FFmpegError as err:
        raise MediaError(f"{path}: cannot decode audio ({_reason(err)})") from None
    if not chunks:
        return np.zeros(0, np.float32)
    return np.concatenate(chunks).astype(np.float32) / np.float32(32768.0)


def segment_times(duration: float, num_segments: int | None) -> np.ndarray:
    """(T,) float64 middle instant (seconds) of each segment (the frame instants where :func:`frame_times`
    cannot use the audio windows).

    Each segment is represented by its MIDDLE instant. The authors instead take ``linspace(1, n, 10)`` over
    pre-extracted frames, whose first pick is the clip's first frame and last pick the last frame, i.e.
    instants that drift from the start of the first second to the end of the last; the middle of each second
    is the frame most representative of the second its label belongs to, and it does not depend on the
    extraction fps.

    * ``num_segments=None``: one segment per whole second, ``T = max(1, floor(duration + 0.1))`` (the 0.1 s
      tolerates containers a few frames short of 10 s).
    * ``T`` segments fit (``T <= duration + 0.1``): the clip is split in T equal parts (about 1 s each for
      AVE; 6 s each for a 60-s AVQA video with T = 10), instant = middle of each part.
    * The clip is shorter than T seconds: segment k is second [k, k+1) cut to the clip, instant = its middle;
      segments past the end repeat the last one (so labels stay aligned with seconds).
    """
    if not duration > 0:
        raise MediaError(f"cannot sample segments of a clip lasting {duration} s")
    if num_segments is None:
        num_segments = max(1, math.floor(duration + 0.1))
    if num_segments < 1:
        raise ConfigError(f"num_segments must be >= 1, got {num_segments}")
    k = np.arange(num_segments, dtype=np.float64)
    if num_segments <= duration + 0.1:
        return (k + 0.5) * (duration / num_segments)
    starts = np.minimum(k, math.ceil(duration) - 1)
    return (starts + np.minimum(starts + 1.0, duration)) / 2.0


def frame_times(duration: float, num_segments: int | None, window_s: float, num_samples: int) -> np.ndarray:
    """(T,) float64 seconds at which each segment's frame is taken: the centre of the segment's audio window.

    duration: seconds of the clip; window_s: the front-end's window; num_samples: length of the 16 kHz waveform
    the windows are cut from. The adapters fuse the audio and visual tokens of one segment, so both must describe
    the same instant; the windows follow the authors' rule exactly (:func:`lavish.media.audio.window_starts`) and
    the frame is moved to each window's centre (:func:`lavish.media.audio.window_centres`).

    A clip shorter than its T segments gets T windows spread over it (the authors' rule, as their frames), so its
    frames are spread the same way rather than kept on whole seconds. Kept at :func:`segment_times` only when the
    file is too short to cut windows: every segment then hears the whole file, so any instant is inside its
    window. The windows are cut from the decoded soundtrack, so a soundtrack much shorter than the picture draws
    the frames into the part it covers: the pairs stay aligned.
    """
    times = segment_times(duration, num_segments)
    centres = window_centres(num_samples, len(times), window_s)
    return times if centres is None else centres


def read_frames(path: str | os.PathLike, times: Sequence[float], size: tuple[int, int]) -> np.ndarray:
    """(T, H, W, 3) uint8 RGB: the frame shown at each instant of ``times`` (seconds from the stream start).

    "Shown at t" = the frame with the largest presentation time <= t (the first frame for t before it), so
    variable-frame-rate files are handled. The video packets are read first (no decoding) to find which
    frames are wanted; then only the packets from the keyframe before each wanted frame up to it are
    decoded, skipping non-reference frames that are not wanted (the decoder's ``skip_frame``), so a 10-s
    clip costs about half a full decode and a long video costs a few GOPs per segment. Only the chosen
    frames are converted to RGB and resized bicubic to ``size`` = (H, W), after the display rotation.
    """
    path = Path(path)
    with _open(path) as container:
        return _read_frames(container, path, times, size)


def _read_frames(container, path: Path, times: Sequence[float], size: tuple[int, int]) -> np.ndarray:
    if not container.streams.video:
        raise MediaError(f"{path}: no video stream")
    stream = container.streams.video[0]
    stream.thread_type = "AUTO"
    tb = stream.time_base
    try:
        packets = [p for p in container.demux(stream) if p.size]
    except av.FFmpegError as err:
        raise MediaError(f"{path}: cannot read video packets ({_reason(err)})") from None
    stamps = [p.pts if p.pts is not None else p.dts for p in packets]
    if not packets or any(t is None for t in stamps):
        raise MediaError(f"{path}: video stream has no frames with timestamps")
    start = min(stamps)
    seconds = np.array([float((t - start) * tb) for t in stamps])
    by_time = np.argsort(seconds, kind="stable")
    wanted = np.asarray(times, dtype=np.float64)
    pick = by_time[np.clip(np.searchsorted(seconds[by_time], wanted, side="right") - 1, 0, None)]

    last = by_time[-1]
    end = seconds[last] + float((packets[last].duration or 0) * tb)
    duration = _duration(container)
    late = wanted[(wanted > end + 0.5) & (wanted < duration)]
    if late.size:
        raise MediaError(f"{path}: truncated: video frames stop at {end:.2f} s, container says {duration:.2f} s")

    images = _decode_packets(stream, packets, {int(j) for j in pick}, path, size)
    return np.stack([images[int(j)] for j in pick])


def _decode_packets(stream, packets, needed: set[int], path: Path, size: tuple[int, int]) -> dict[int, np.ndarray]:
    """Decode just enough of ``packets`` (decode order) to get the frames of the ``needed`` packet indices.

    Returns {packet index: (H, W, 3) uint8}. Ranges [keyframe before j, j] are decoded, merged when they
    overlap; the decoder is drained and reset between disjoint ranges.
    """
    keyframes = [i for i, p in enumerate(packets) if p.is_keyframe] or [0]
    ranges: list[list[int]] = []
    for j in sorted(needed):
        first = keyframes[max(0, np.searchsorted(keyframes, j, side="right") - 1)]
        if ranges and first <= ranges[-1][1] + 1:
            ranges[-1][1] = max(ranges[-1][1], j)
        else:
            ranges.append([first, j])
    pts_to_index = {packets[j].pts: j for j in needed}
    ctx = stream.codec_context
    images: dict[int, np.ndarray] = {}

    def keep(frames) -> None:
        for frame in frames:
            j = pts_to_index.get(frame.pts)
            if j is not None and j not in images:
                images[j] = _to_rgb(frame, size)

    try:
        for first, last in ranges:
            for i in range(first, last + 1):
                ctx.skip_frame = "DEFAULT" if i in needed else "NONREF"
                keep(ctx.decode(packets[i]))
            ctx.skip_frame = "DEFAULT"
            keep(ctx.decode(None))
            ctx.flush_buffers()
    except av.FFmpegError as err:
        raise MediaError(f"{path}: cannot decode video ({_reason(err)})") from None
    missing = needed - images.keys()
    if missing:
        raise MediaError(f"{path}: {len(missing)} video frame(s) could not be decoded (corrupt stream)")
    return images


def _quarter_turns(rotation: float) -> int:
    """Counter-clockwise display rotation in quarter turns, in -1..2 (-90, 0, 90, 180 degrees)."""
    return (round(rotation / 90.0) + 1) % 4 - 1


def _to_rgb(frame, size: tuple[int, int]) -> np.ndarray:
    """Rotate for display, then resize bicubic to (H, W); returns (H, W, 3) uint8."""
    height, width = size
    quarter = _quarter_turns(frame.rotation) % 4
    w, h = (height, width) if quarter % 2 else (width, height)
    image = frame.reformat(width=w, height=h, format="rgb24", interpolation="BICUBIC").to_ndarray()
    return np.ascontiguousarray(np.rot90(image, k=quarter)) if quarter else image


def decode_clip(
    path: str | os.PathLike,
    *,
    num_segments: int | None = None,
    frame_size: tuple[int, int] = (192, 192),
    frontend: AudioFrontend | str = "ave",
) -> Clip:
    """Decode one video into T frames (at :func:`frame_times`) and T audio images (``frontend``).

    num_segments: T (None: one per second of the video); frame_size: (H, W) of the frames; frontend: a name of
    :data:`lavish.media.audio.AUDIO_FRONTENDS` or a front-end. The defaults are those of the paper's AVE backbone
    (Swin-V2-L, 192x192, the "ave" front-end); ``lavish.input_spec(backbone, task)`` gives another backbone's, and
    :func:`lavish.load_inputs` goes from a file to a backbone's normalised inputs in one call. Returns a
    :class:`Clip`: ``frames`` (T, H, W, 3) uint8 RGB, ``spectrograms`` (T, F, M) float32, ``times``, ``duration``,
    ``has_audio``.

    The audio is decoded first: the frame instants are the centres of its windows, which depend on its length.
    """
    path = Path(path)
    if isinstance(frontend, str):
        frontend = get_frontend(frontend)
    with _open(path) as container:
        if not container.streams.video:
            raise MediaError(f"{path}: no video stream")
        duration = _duration(container)
        if not duration > 0:
            raise MediaError(f"{path}: zero-length video")
        has_audio = bool(container.streams.audio)
        if has_audio:
            waveform = _decode_audio(container, path, SAMPLE_RATE)
            container.seek(0)
        else:
            warnings.warn(f"{path}: no audio stream; using silence", stacklevel=2)
            waveform = np.zeros(int(round(duration * SAMPLE_RATE)), dtype=np.float32)
        times = frame_times(duration, num_segments, frontend.window_s, waveform.size)
        frames = _read_frames(container, path, times, frame_size)
    spectrograms = segment_spectrograms(waveform, len(times), frontend)
    return Clip(frames=frames, spectrograms=spectrograms, times=times, duration=duration, has_audio=has_audio)
