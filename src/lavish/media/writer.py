"""Write real video files with PyAV (tests of every layer, the synthetic demo dataset, benchmarks).

The container follows the file extension (.mp4/.mov, .mkv, .webm, .avi). The file is written through
:func:`lavish.fileio.atomic_path` (temporary name in the same folder, fsync, rename), so a crash never leaves a
half-written video under the final name.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from lavish.errors import MediaError
from lavish.fileio import atomic_path

_LAYOUTS = {1: "mono", 2: "stereo", 6: "5.1"}
_FORMATS = {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".mkv": "matroska", ".webm": "webm", ".avi": "avi"}
_PIX_FMT = {"h264": "yuv420p", "libx264": "yuv420p", "mpeg4": "yuv420p", "vp8": "yuv420p", "vp9": "yuv420p",
            "libvpx": "yuv420p", "libvpx-vp9": "yuv420p", "mjpeg": "yuvj420p"}


def _audio_rate(codec: str, sample_rate: int) -> int:
    """A rate the encoder accepts: ``sample_rate`` if allowed, else the closest higher one (opus: 48 kHz)."""
    rates = av.codec.Codec(codec, "w").audio_rates
    if not rates or sample_rate in rates:
        return sample_rate
    higher = [r for r in rates if r >= sample_rate]
    return min(higher) if higher else max(rates)


def write_video(
    path: str | os.PathLike,
    frames: np.ndarray,
    fps: float,
    audio: np.ndarray | None = None,
    sample_rate: int = 16000,
    video_codec: str = "h264",
    audio_codec: str = "aac",
    *,
    frame_times: Sequence[float] | None = None,
    rotation: int = 0,
    crf: int = 18,
) -> Path:
    """Encode frames (and optionally audio) into ``path``; returns the path.

    frames: (N, H, W, 3) uint8 RGB (H, W even for yuv420p codecs); an empty array writes an audio-only file.
    fps: nominal frame rate; frame i is shown at ``i / fps`` unless ``frame_times`` (N increasing seconds)
      gives its presentation time (a variable-frame-rate file).
    audio: (n,) or (channels, n) float in [-1, 1] (1, 2 or 6 channels) at ``sample_rate``; resampled by the
      encoder when the codec does not take that rate (opus: 48 kHz).
    rotation: display rotation stored in the container (degrees counter-clockwise, as ``VideoFrame.rotation``).
    """
    path = Path(path)
    fmt = _FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise MediaError(f"{path}: cannot write extension {path.suffix!r}; known: {', '.join(sorted(_FORMATS))}")
    frames = np.asarray(frames)
    has_video = frames.size > 0
    if has_video and (frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8):
        raise MediaError(f"{path}: frames must be (N, H, W, 3) uint8, got {frames.shape} {frames.dtype}")
    with atomic_path(path) as tmp:
        # AVI stores frame numbers, not timestamps: shifting everything by an audio encoder's priming delay
        # (mp3: 1105 samples) would insert a dummy video frame, so leave timestamps as they are there.
        options = {"avoid_negative_ts": "disabled"} if fmt == "avi" else {}
        with av.open(tmp, mode="w", format=fmt, options=options) as container:
            vstream = astream = None
            if has_video:
                vstream = _add_video(container, video_codec, frames, fps, frame_times, rotation, crf)
            if audio is not None:
                audio = np.atleast_2d(np.asarray(audio, dtype=np.float32))
                channels = audio.shape[0]
                if channels not in _LAYOUTS:
                    raise MediaError(f"{path}: audio must have 1, 2 or 6 channels, got {channels}")
                astream = container.add_stream(audio_codec, rate=_audio_rate(audio_codec, sample_rate))
                astream.layout = _LAYOUTS[channels]
                if av.codec.Codec(audio_codec, "w").experimental:
                    astream.codec_context.options = {"strict": "experimental"}  # FFmpeg's native vorbis
            if vstream is not None:
                _encode_video(container, vstream, frames, fps, frame_times)
            if astream is not None:
                _encode_audio(container, astream, audio, sample_rate)
    return path


def _add_video(container, codec, frames, fps, frame_times, rotation, crf):
    rate = Fraction(fps).limit_denominator(1001)
    stream = container.add_stream(codec, rate=rate)
    stream.height, stream.width = frames.shape[1], frames.shape[2]
    stream.pix_fmt = _PIX_FMT.get(codec, "yuv420p")
    if frame_times is not None:
        stream.codec_context.time_base = Fraction(1, 1000)
    if codec in ("h264", "libx264"):
        # mbtree off: with it, x264 gave different bytes (and decoded pixels) for the same frames from run to run on
        # small frames once the process heap held freed buffers (seen on 64x64 clips after decoding, and in the
        # synthetic datasets' worker processes); without it the same frames give the same file every time, so a
        # demo or test dataset is reproducible (tests/media/test_media_writer.py)
        stream.options = {"crf": str(crf), "preset": "veryfast", "x264-params": "mbtree=0"}
    elif codec in ("vp8", "vp9", "libvpx", "libvpx-vp9"):
        stream.options = {"crf": str(max(crf, 4)), "b": "0", "deadline": "realtime", "cpu-used": "8"}
    else:  # mpeg4 / mjpeg: fixed quality, no B-frames (AVI has no presentation timestamps to reorder them)
        stream.codec_context.qscale = 3
        stream.codec_context.max_b_frames = 0
    if rotation:
        stream.set_display_rotation(rotation)
    return stream


def _encode_video(container, stream, frames, fps, frame_times):
    if frame_times is not None and len(frame_times) != len(frames):
        raise MediaError(f"frame_times has {len(frame_times)} entries for {len(frames)} frames")
    for i, image in enumerate(frames):
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
        if frame_times is not None:
            frame.pts = int(round(frame_times[i] * 1000))
            frame.time_base = Fraction(1, 1000)
        else:
            frame.pts = i
        container.mux(stream.encode(frame))
    container.mux(stream.encode(None))


def _encode_audio(container, stream, audio, sample_rate):
    layout = _LAYOUTS[audio.shape[0]]
    chunk = 4096
    for start in range(0, audio.shape[1], chunk):
        part = np.ascontiguousarray(np.clip(audio[:, start : start + chunk], -1.0, 1.0))
        frame = av.AudioFrame.from_ndarray(part, format="fltp", layout=layout)
        frame.sample_rate = sample_rate
        frame.pts = start
        frame.time_base = Fraction(1, sample_rate)
        container.mux(stream.encode(frame))
    container.mux(stream.encode(None))


def write_generated_video(
    path: str | os.PathLike,
    seconds: int,
    fps: int,
    frame: Callable[[int], np.ndarray],
    audio: Callable[[int], np.ndarray] | None = None,
    sample_rate: int = 16000,
    video_codec: str = "h264",
    audio_codec: str = "aac",
    crf: int = 23,
) -> Path:
    """Encode a video of any length without holding it: ``frame(i)`` gives frame i, (H, W, 3) uint8 (shown at
    ``i / fps``), ``audio(s)`` the mono samples of second s, (sample_rate,) float in [-1, 1]; the streams are
    written interleaved second by second, as a camera or ffmpeg writes them. Long test and benchmark videos."""
    path = Path(path)
    fmt = _FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise MediaError(f"{path}: cannot write extension {path.suffix!r}; known: {', '.join(sorted(_FORMATS))}")
    first = np.asarray(frame(0))
    with atomic_path(path) as tmp, av.open(tmp, mode="w", format=fmt) as container:
        vstream = _add_video(container, video_codec, first[None], fps, None, 0, crf)
        astream = None
        if audio is not None:
            astream = container.add_stream(audio_codec, rate=_audio_rate(audio_codec, sample_rate))
            astream.layout = "mono"
        for second in range(seconds):
            for i in range(second * fps, (second + 1) * fps):
                image = first if i == 0 else np.asarray(frame(i))
                picture = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
                picture.pts = i
                container.mux(vstream.encode(picture))
            if astream is not None:
                samples = np.clip(np.asarray(audio(second), dtype=np.float32), -1.0, 1.0)[None]
                sound = av.AudioFrame.from_ndarray(np.ascontiguousarray(samples), format="fltp", layout="mono")
                sound.sample_rate = sample_rate
                sound.pts = second * sample_rate
                sound.time_base = Fraction(1, sample_rate)
                container.mux(astream.encode(sound))
        container.mux(vstream.encode(None))
        if astream is not None:
            container.mux(astream.encode(None))
    return path
