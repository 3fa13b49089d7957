"""A tiny AVE layout of real mp4 files (PyAV), for prepare / cache tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from lavish.media.writer import write_video

HEADER = "Category&VideoID&Quality&StartTime&EndTime"
# (category, video id, start, end); vid_b appears twice with two categories, as 45 real AVE videos do
ROWS = [
    ("Bark", "vid_a", 0, 10),
    ("Cat", "vid_b", 2, 5),
    ("Bark", "vid_c", 3, 7),
    ("Bark", "vid_b", 6, 9),
    ("Cat", "vid_d", 0, 4),
    ("Cat", "vid_e", 1, 10),
]
SPLITS = {"train": [0, 1, 2, 3], "val": [4], "test": [5]}


def write_mp4(path: Path, seed: int, *, seconds: float = 10.0, size: int = 48, audio: bool = True) -> None:
    rng = np.random.default_rng(seed)
    fps = 4
    n = int(seconds * fps)
    base = rng.integers(0, 255, size=(1, 1, 1, 3))
    ramp = np.linspace(0, 200, n).reshape(n, 1, 1, 1)
    frames = ((base + ramp + rng.integers(0, 30, size=(n, size, size, 3))) % 256).astype(np.uint8)
    sound = None
    if audio:
        t = np.arange(int(seconds * 16000)) / 16000
        sound = (0.3 * np.sin(2 * np.pi * (200 + 100 * seed) * t)).astype(np.float32)
    write_video(path, frames, fps, audio=sound)


def make_layout(root: Path, rows=ROWS, splits=SPLITS, *, skip_videos=(), audio=True) -> Path:
    """Write AVE/<id>.mp4, Annotations.txt (no header, as the LAVISH copy) and trainSet/valSet/testSet.txt."""
    (root / "AVE").mkdir(parents=True, exist_ok=True)
    lines = [f"{c}&{v}&good&{s}&{e}" for c, v, s, e in rows]
    (root / "Annotations.txt").write_text("\n".join(lines))
    for name, file in (("train", "trainSet.txt"), ("val", "valSet.txt"), ("test", "testSet.txt")):
        (root / file).write_text(HEADER + "\n" + "\n".join(lines[i] for i in splits[name]) + "\n")
    for seed, vid in enumerate(dict.fromkeys(v for _, v, _, _ in rows)):
        if vid not in skip_videos:
            write_mp4(root / "AVE" / f"{vid}.mp4", seed, audio=audio)
    return root
