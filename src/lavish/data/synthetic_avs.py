"""A tiny synthetic dataset in the AVSBench-S4 layout (:mod:`lavish.data.avs`), for the demo and the tests.

Every 5-s clip shows ``objects_per_clip`` different objects of :data:`lavish.data.synthetic_ave.CLASSES`
(coloured shapes, moving between frames) over grey noise, and plays the chord of ONE of them (the sounding
object, chosen at random). Only the sounding object is masked, so finding it needs the sound: segmenting every
object scores about 1 / objects_per_clip on IoU. The csv's ``category`` is the sounding object's class.

Written: ``s4_meta_data.csv`` (name,start_time,category,split), 224-style png frames at ``size`` pixels, binary
png masks (0 / 255; train split: frame 1 only, val/test: frames 1-5, as S4), 16 kHz mono 16-bit wavs of 5 s.
Deterministic per ``seed``; every file is written atomically.
"""

from __future__ import annotations

import io
import wave
from pathlib import Path

import numpy as np

from lavish.data.avs import CLIP_SECONDS, NUM_FRAMES, SUBSETS
from lavish.fileio import write_bytes
from lavish.data.synthetic_ave import CLASSES, SAMPLE_RATE, _shape_mask
from lavish.errors import ConfigError

SPLIT_FRACTIONS = {"train": 0.6, "val": 0.2, "test": 0.2}


def _png_bytes(array: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


def _wav_bytes(audio: np.ndarray) -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(SAMPLE_RATE)
        w.writeframes((np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes())
    return buf.getvalue()


def render_clip(classes: list[int], sounding: int, size: int, rng: np.random.Generator):
    """frames (5, size, size, 3) uint8, masks (5, size, size) bool of the sounding object, audio (5 s,) float32.

    classes: indices into CLASSES of the objects on screen; sounding: position in ``classes`` of the one heard.
    """
    side = max(6, size * 5 // 16)
    base = rng.integers(40, 90)
    frames = np.empty((NUM_FRAMES, size, size, 3), np.uint8)
    masks = np.zeros((NUM_FRAMES, size, size), bool)
    for k in range(NUM_FRAMES):
        noise = rng.integers(-25, 26, (size // 4, size // 4, 1))
        grey = np.clip(base + noise, 0, 255).astype(np.uint8)
        frames[k] = np.repeat(np.repeat(np.repeat(grey, 4, 0), 4, 1), 3, 2)
        taken = np.zeros((size, size), bool)
        for j, c in enumerate(classes):
            shape = _shape_mask(CLASSES[c].shape, side)
            for _ in range(50):  # place without overlap when possible
                y, x = rng.integers(0, size - side + 1, 2)
                if not taken[y:y + side, x:x + side].any():
                    break
            full = np.zeros((size, size), bool)
            full[y:y + side, x:x + side] = shape
            full &= ~taken
            taken |= full
            frames[k][full] = CLASSES[c].colour
            if j == sounding:
                masks[k] = full
    t = np.arange(int(SAMPLE_RATE * CLIP_SECONDS)) / SAMPLE_RATE
    f = CLASSES[classes[sounding]].freq
    chord = 0.5 * np.sin(2 * np.pi * f * t) + 0.3 * np.sin(2 * np.pi * 1.5 * f * t)
    audio = 0.4 * chord + 0.01 * rng.standard_normal(t.size)
    return frames, masks, audio.astype(np.float32)


def make_synthetic_avs(root: Path | str, *, num_videos: int = 40, num_classes: int = 4, objects_per_clip: int = 2,
                       size: int = 64, seed: int = 0) -> Path:
    """Write the synthetic S4-layout dataset under ``root`` (see the module docstring); returns ``root``.

    Clip ``i`` sounds class ``i % num_classes``; splits take about 60 / 20 / 20 % of each class.
    """
    if not 2 <= num_classes <= len(CLASSES):
        raise ConfigError(f"num_classes must be in 2..{len(CLASSES)}, got {num_classes}")
    if not 1 <= objects_per_clip <= num_classes:
        raise ConfigError(f"objects_per_clip must be in 1..num_classes ({num_classes}), got {objects_per_clip}")
    if num_videos < 3 * num_classes:
        raise ConfigError(f"num_videos ({num_videos}) must be >= 3 * num_classes ({3 * num_classes}): "
                          f"every split needs every class")
    if size < 16 or size % 4:
        raise ConfigError(f"size must be a multiple of 4 and >= 16, got {size}")
    root = Path(root)
    layout = SUBSETS["s4"]
    data = root / layout.data_dir
    rng = np.random.default_rng(seed)
    split_of: dict[int, str] = {}
    for c in range(num_classes):
        members = [i for i in range(num_videos) if i % num_classes == c]
        members = [members[j] for j in rng.permutation(len(members))]
        n_val = max(1, round(SPLIT_FRACTIONS["val"] * len(members)))
        for j, i in enumerate(members):
            split_of[i] = "val" if j < n_val else "test" if j < 2 * n_val else "train"
    rows = ["name,start_time,category,split"]
    for i in range(num_videos):
        sound_class = i % num_classes
        others = [c for c in rng.permutation(num_classes).tolist() if c != sound_class][:objects_per_clip - 1]
        classes = others + [sound_class]
        order = rng.permutation(len(classes)).tolist()
        classes = [classes[j] for j in order]
        sounding = classes.index(sound_class)
        frames, masks, audio = render_clip(classes, sounding, size, rng)
        name, split = f"synth{i:04d}_{CLASSES[sound_class].shape}", split_of[i]
        category = CLASSES[sound_class].name.split(" (")[0].replace(" ", "_").lower()
        fill = dict(split=split, category=category, name=name)
        for k in range(1, NUM_FRAMES + 1):
            write_bytes(data / layout.frame.format(k=k, **fill), _png_bytes(frames[k - 1]))
            if k in layout.annotated[split]:
                write_bytes(data / layout.mask.format(k=k, **fill),
                              _png_bytes(masks[k - 1].astype(np.uint8) * 255))
        write_bytes(data / layout.audio.format(**fill), _wav_bytes(audio))
        rows.append(f"{name},0,{category},{split}")
    write_bytes(root / layout.csv, ("\n".join(rows) + "\n").encode())
    return root
