"""Benchmark: one 10-s 640x360 clip with 44.1 kHz stereo audio -> 10 frames (192x192) + 10 'ave' audio images.

lavish: ``lavish.media.decode_clip`` (one PyAV pass, frames picked at the audio windows' centres, in-memory resampling).
authors: the ``ffmpeg`` command line extracts 1-fps jpgs and a 16 kHz mono wav (their README / video_proc.py),
then the jpgs are read and resized bicubic to 192x192 and the wav is cut into windows and turned into fbanks
(same fbank code for both, so the difference is the decoding path).

Same clips, same run, repeats interleaved, median seconds. Writes benchmarks/results/media.json.
Run: python benchmarks/media.py [--repeats 7]
"""

from __future__ import annotations

import argparse
import platform
import shutil
import statistics
import subprocess
import tempfile
import time
import wave
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from lavish.fileio import write_json
from lavish.media.audio import get_frontend, segment_spectrograms
from lavish.media.decode import decode_clip
from lavish.media.writer import write_video

RESULTS = Path(__file__).resolve().parent / "results" / "media.json"


def make_clip(path: Path, seed: int) -> Path:
    """10 s, 25 fps, 640x360 moving gradients + noise; 44.1 kHz stereo tones + noise."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:360, 0:640]
    frames = np.empty((250, 360, 640, 3), np.uint8)
    for i in range(250):
        frames[i, ..., 0] = (x + 4 * i) % 256
        frames[i, ..., 1] = (y + 2 * i) % 256
        frames[i, ..., 2] = ((x + y) // 2 + i) % 256
    frames = np.clip(frames.astype(np.int16) + rng.integers(-10, 11, frames.shape[1:], dtype=np.int16), 0, 255).astype(np.uint8)
    t = np.arange(441000) / 44100
    left = 0.3 * np.sin(2 * np.pi * 440 * t) + 0.05 * rng.standard_normal(t.size)
    right = 0.3 * np.sin(2 * np.pi * 660 * t) + 0.05 * rng.standard_normal(t.size)
    return write_video(path, frames, 25.0, np.stack([left, right]).astype(np.float32), 44100)


def lavish_way(path: Path) -> tuple[np.ndarray, np.ndarray]:
    clip = decode_clip(path, num_segments=10, frame_size=(192, 192), frontend="ave")
    return clip.frames, clip.spectrograms


def authors_way(path: Path, work: Path) -> tuple[np.ndarray, np.ndarray]:
    frames_dir = work / "frames"
    shutil.rmtree(frames_dir, ignore_errors=True)
    frames_dir.mkdir(parents=True)
    wav = work / "audio.wav"
    quiet = ["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-i", str(path)]
    subprocess.run([*quiet, "-vf", "fps=1", "-q:v", "2", str(frames_dir / "%04d.jpg")], check=True)
    subprocess.run([*quiet, "-vn", "-ac", "1", "-ar", "16000", str(wav)], check=True)
    files = sorted(frames_dir.glob("*.jpg"))
    picks = np.linspace(1, len(files), 10, dtype=int)
    frames = np.stack([
        np.asarray(Image.open(files[p - 1]).convert("RGB").resize((192, 192), Image.BICUBIC)) for p in picks
    ])
    with wave.open(str(wav), "rb") as w:
        audio = np.frombuffer(w.readframes(w.getnframes()), "<i2").astype(np.float32) / 32768
    return frames, segment_spectrograms(audio, 10, get_frontend("ave"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--clips", type=int, default=2)
    args = parser.parse_args()
    if shutil.which("ffmpeg") is None:
        raise SystemExit("error: the ffmpeg command line is needed for the authors' baseline")
    torch.set_num_threads(1)  # small FFTs: extra intra-op threads only add sync cost (same for both ways)
    times: dict[str, list[float]] = {"lavish.decode_clip": [], "ffmpeg jpg+wav (authors)": []}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        clips = [make_clip(tmp / f"clip{i}.mp4", i) for i in range(args.clips)]
        ours, theirs = lavish_way(clips[0]), authors_way(clips[0], tmp)  # warm-up + sanity check
        frame_diff = float(np.abs(ours[0].astype(int) - theirs[0].astype(int)).mean())
        spec_diff = float(np.abs(ours[1] - theirs[1]).max())
        for _ in range(args.repeats):
            for clip in clips:
                t0 = time.perf_counter()
                lavish_way(clip)
                times["lavish.decode_clip"].append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                authors_way(clip, tmp)
                times["ffmpeg jpg+wav (authors)"].append(time.perf_counter() - t0)
    medians = {k: statistics.median(v) for k, v in times.items()}
    speedup = medians["ffmpeg jpg+wav (authors)"] / medians["lavish.decode_clip"]
    print(f"{'method':<28}{'median s/clip':>15}{'min':>9}{'max':>9}")
    for name, values in times.items():
        print(f"{name:<28}{medians[name]:>15.3f}{min(values):>9.3f}{max(values):>9.3f}")
    print(f"speed-up: {speedup:.2f}x   (mean |frame diff| {frame_diff:.1f}/255, max |spectrogram diff| {spec_diff:.3f})")
    write_json(RESULTS, {
        "clip": "10 s, 640x360 h264 25 fps, aac 44.1 kHz stereo", "output": "10 frames 192x192 + 10 x (192, 192) 'ave'",
        "repeats": args.repeats, "clips": args.clips, "median_s": medians, "all_s": times, "speedup": speedup,
        "mean_abs_frame_diff": frame_diff, "max_abs_spectrogram_diff": spec_diff,
        "machine": platform.platform(), "cpus": torch.get_num_threads(),
        "ffmpeg": subprocess.run(["ffmpeg", "-version"], capture_output=True, text=True).stdout.splitlines()[0],
    }, indent=2)


if __name__ == "__main__":
    main()
