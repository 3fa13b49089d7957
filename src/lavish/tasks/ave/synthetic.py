"""A small synthetic dataset in the official AVE distribution layout, for the demo and the tests.

Layout written (as AVE-ECCV18's ``AVE_Dataset``, spec 5.1)::

    root/AVE/<video_id>.mp4          h264 + aac (16 kHz mono), size x size pixels, 8 fps, duration_s seconds
    root/Annotations.txt             Category&VideoID&Quality&StartTime&EndTime  (header line, then one row per video)
    root/trainSet.txt, valSet.txt, testSet.txt   same format and header; about 60 / 20 / 20 % per class

Each class is an audio-visual object: a coloured shape AND a chord (fundamental + fifth) at a class frequency.
Every video belongs to one class and has one event interval [start, end) of at least 2 s, like AVE. In an
event second the object is on screen AND its sound plays. A background second is one of

* object visible but silent (probability 0.4),
* its sound playing while the object is off-screen (0.4),
* neither (0.2),

always over moving grey noise and a low noise floor in the audio. So a per-second event/background decision
needs both modalities: seeing the object or hearing the chord alone is right only about half the time on
background seconds, while "object AND sound" is always right.

Deterministic per ``seed`` (video ids too: 11 characters of the YouTube alphabet).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from lavish.fileio import write_text
from lavish.data.prepare import run_jobs
from lavish.errors import ConfigError
from lavish.data.synthetic import (CLASSES, ID_ALPHABET as _ID_ALPHABET, SAMPLE_RATE, SYNTHETIC_CLASSES,  # noqa: F401
                                   SyntheticClass, shape_mask as _shape_mask)
from lavish.media.writer import write_video

FPS = 8
HEADER = "Category&VideoID&Quality&StartTime&EndTime"
BACKGROUND_KINDS = {"visible_silent": 0.4, "offscreen_sound": 0.4, "neither": 0.2}
"""What a background second contains, and how often."""


def _second_plan(rng: np.random.Generator, duration_s: int) -> tuple[int, int, list[tuple[bool, bool]]]:
    """Event [start, end) and, per second, (object visible, sound on)."""
    start = int(rng.integers(0, duration_s - 1))
    end = int(rng.integers(start + 2, duration_s + 1))
    kinds = list(BACKGROUND_KINDS)
    probs = np.array(list(BACKGROUND_KINDS.values()))
    plan = []
    for k in range(duration_s):
        if start <= k < end:
            plan.append((True, True))
        else:
            kind = kinds[rng.choice(len(kinds), p=probs)]
            plan.append((kind == "visible_silent", kind == "offscreen_sound"))
    return start, end, plan


def _render(cls: SyntheticClass, plan: list[tuple[bool, bool]], size: int, rng: np.random.Generator):
    """frames (N, size, size, 3) uint8 and audio (n,) float32 for one video."""
    n_frames = len(plan) * FPS
    base = rng.integers(40, 90)
    noise = rng.integers(-25, 26, (n_frames, size // 4, size // 4, 1))
    frames = np.clip(base + noise, 0, 255).astype(np.uint8)
    frames = np.repeat(np.repeat(np.repeat(frames, 4, axis=1), 4, axis=2), 3, axis=3)  # blocky grey noise
    side = max(6, size * 3 // 8)
    mask = _shape_mask(cls.shape, side)
    t = np.arange(SAMPLE_RATE) / SAMPLE_RATE
    fade = np.minimum(1.0, np.minimum(t, 1.0 - t) / 0.01)
    chord = (0.5 * np.sin(2 * np.pi * cls.freq * t) + 0.3 * np.sin(2 * np.pi * 1.5 * cls.freq * t)) * fade
    audio = 0.01 * rng.standard_normal(len(plan) * SAMPLE_RATE)
    for k, (visible, sound) in enumerate(plan):
        if visible:
            y0, x0 = rng.integers(0, size - side + 1, 2)
            dy, dx = rng.integers(-1, 2, 2)
            for f in range(k * FPS, (k + 1) * FPS):
                step = f - k * FPS
                y = int(np.clip(y0 + dy * step, 0, size - side))
                x = int(np.clip(x0 + dx * step, 0, size - side))
                frames[f, y : y + side, x : x + side][mask] = cls.colour
        if sound:
            audio[k * SAMPLE_RATE : (k + 1) * SAMPLE_RATE] += 0.4 * chord
    return frames, audio.astype(np.float32)


def _video_id(rng: np.random.Generator) -> str:
    return "".join(rng.choice(_ID_ALPHABET, 11))


def _make_one(job: tuple[Path, int, int, int, int]) -> None:
    path, class_index, plan_seed, duration_s, size = job
    rng = np.random.default_rng(plan_seed)
    _, _, plan = _second_plan(rng, duration_s)
    frames, audio = _render(CLASSES[class_index], plan, size, rng)
    write_video(path, frames, FPS, audio, SAMPLE_RATE, "h264", "aac")


def make_synthetic_ave(
    root: Path,
    *,
    num_videos: int = 72,
    num_classes: int = 4,
    duration_s: int = 10,
    size: int = 64,
    seed: int = 0,
    workers: int = 1,
) -> Path:
    """Write the synthetic AVE-layout dataset under ``root`` (see the module docstring); returns ``root``.

    Video ``i`` has class ``i % num_classes``. Every file is written atomically; existing files are replaced.
    """
    if not 1 <= num_classes <= len(CLASSES):
        raise ConfigError(f"num_classes must be in 1..{len(CLASSES)}, got {num_classes}")
    if num_videos < num_classes:
        raise ConfigError(f"num_videos ({num_videos}) must be >= num_classes ({num_classes})")
    if duration_s < 2:
        raise ConfigError(f"duration_s must be >= 2 (events last at least 2 s), got {duration_s}")
    if size < 16 or size % 4:
        raise ConfigError(f"size must be a multiple of 4 and >= 16, got {size}")
    root = Path(root)
    (root / "AVE").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    ids: list[str] = []
    while len(ids) < num_videos:
        vid = _video_id(rng)
        if vid not in ids:
            ids.append(vid)
    rows, jobs = [], []
    for i, vid in enumerate(ids):
        class_index = i % num_classes
        plan_seed = int(rng.integers(2**31))
        start, end, _ = _second_plan(np.random.default_rng(plan_seed), duration_s)
        rows.append(f"{CLASSES[class_index].name}&{vid}&good&{start}&{end}")
        jobs.append((root / "AVE" / f"{vid}.mp4", class_index, plan_seed, duration_s, size))
    run_jobs(_make_one, [(job,) for job in jobs], workers, lambda _: None)

    splits: dict[str, list[int]] = {"trainSet.txt": [], "valSet.txt": [], "testSet.txt": []}
    for c in range(num_classes):
        members = [i for i in range(num_videos) if i % num_classes == c]
        members = [members[j] for j in rng.permutation(len(members))]
        n_val = max(1, round(0.2 * len(members))) if len(members) >= 3 else 0
        n_test = n_val
        splits["valSet.txt"] += members[:n_val]
        splits["testSet.txt"] += members[n_val : n_val + n_test]
        splits["trainSet.txt"] += members[n_val + n_test :]
    write_text(root / "Annotations.txt", "\n".join([HEADER, *rows]) + "\n")
    for name, members in splits.items():
        write_text(root / name, "\n".join([HEADER, *(rows[i] for i in sorted(members))]) + "\n")
    return root
