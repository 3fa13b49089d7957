"""A tiny synthetic dataset in the AVSBench S4 or MS3 layout (:mod:`lavish.tasks.avs.layout`), for the demo and the tests.

Every 5-s clip shows ``objects_per_clip`` different objects of :data:`lavish.data.synthetic.CLASSES`
(coloured shapes, moving between frames) over grey noise, and plays the chords of the SOUNDING ones. Only the
sounding objects are masked, so finding them needs the sound: segmenting every object scores about
sounding / objects_per_clip on IoU.

* S4 (``subset="s4"``, single source): one sounding object per clip; ``s4_meta_data.csv``
  (name,start_time,category,split) whose ``category`` is its class; masks of frame 1 for train, frames 1-5 for
  val / test, as AVSBench-S4.
* MS3 (``subset="ms3"``, multiple sources): 1 to ``objects_per_clip`` sounding objects per clip (their chords
  mixed), the mask is the union of their pixels; ``ms3_meta_data.csv`` (name,split), frames in
  ``visual_frames/<name>/<name>.mp4_<k>.png``, masks of all 5 frames in every split, as AVSBench-MS3.

Written: png frames at ``size`` pixels, binary png masks (0 / 255), 16 kHz mono 16-bit wavs of 5 s.
Deterministic per ``seed``; every file is written atomically.
"""

from __future__ import annotations

import io
import wave
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from lavish.tasks.avs.layout import CLIP_SECONDS, NUM_FRAMES, SUBSETS
from lavish.fileio import write_bytes
from lavish.data.synthetic import CLASSES, SAMPLE_RATE, shape_mask as _shape_mask
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


def render_clip(classes: list[int], sounding: int | Sequence[int], size: int, rng: np.random.Generator):
    """frames (5, size, size, 3) uint8, masks (5, size, size) bool of the sounding objects, audio (5 s,) float32.

    classes: indices into CLASSES of the objects on screen; sounding: position(s) in ``classes`` of the one(s)
    heard (their chords are mixed; the mask is the union of their pixels).
    """
    heard = [sounding] if isinstance(sounding, int) else sorted(set(sounding))
    if not heard or any(not 0 <= j < len(classes) for j in heard):
        raise ConfigError(f"sounding={sounding} is not valid: positions in 0..{len(classes) - 1}, at least one")
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
            if j in heard:
                masks[k] |= full
    t = np.arange(int(SAMPLE_RATE * CLIP_SECONDS)) / SAMPLE_RATE
    audio = 0.01 * rng.standard_normal(t.size)
    for j in heard:
        f = CLASSES[classes[j]].freq
        audio += 0.4 * (0.5 * np.sin(2 * np.pi * f * t) + 0.3 * np.sin(2 * np.pi * 1.5 * f * t))
    return frames, masks, audio.astype(np.float32)


def textured_frames(n: int, size: int = 224, seed: int = 0, noise_std: float = 20.0) -> np.ndarray:
    """(n, size, size, 3) uint8 frames that look less synthetic: the first frame of a 3-object clip
    (:func:`render_clip`) plus 1/f ("natural-image-like") noise of ``noise_std`` grey levels per channel, for
    measuring image filters (tests/tasks/avs/test_avs_resize.py, benchmarks/avs_resize.py)."""
    rng = np.random.default_rng(seed)
    fy, fx = np.fft.fftfreq(size)[:, None], np.fft.rfftfreq(size)[None, :]
    amplitude = 1 / np.maximum(np.hypot(fy, fx), 1 / size)
    out = []
    for _ in range(n):
        frames, _, _ = render_clip([0, 1, 2], 1, size, rng)
        noise = np.stack([np.fft.irfft2(amplitude * np.exp(2j * np.pi * rng.random(amplitude.shape)), s=(size, size))
                          for _ in range(3)], -1)
        out.append(np.clip(frames[0] + noise_std * noise / noise.std(), 0, 255).astype(np.uint8))
    return np.stack(out)


def make_synthetic_avs(root: Path | str, *, num_videos: int = 40, num_classes: int = 4, objects_per_clip: int = 2,
                       size: int = 64, seed: int = 0, subset: str = "s4") -> Path:
    """Write the synthetic dataset in the ``subset`` layout ("s4" or "ms3") under ``root``; returns ``root``.

    Clip ``i`` sounds class ``i % num_classes`` (MS3: among others); splits take about 60 / 20 / 20 % of each
    class. See the module docstring for what each subset writes.
    """
    if subset not in SUBSETS:
        raise ConfigError(f"subset={subset!r} is not valid: choose one of {', '.join(SUBSETS)}")
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
    layout = SUBSETS[subset]
    data = root / layout.data_dir
    rng = np.random.default_rng(seed)
    split_of: dict[int, str] = {}
    for c in range(num_classes):
        members = [i for i in range(num_videos) if i % num_classes == c]
        members = [members[j] for j in rng.permutation(len(members))]
        n_val = max(1, round(SPLIT_FRACTIONS["val"] * len(members)))
        for j, i in enumerate(members):
            split_of[i] = "val" if j < n_val else "test" if j < 2 * n_val else "train"
    rows = ["name,start_time,category,split" if layout.has_category else "name,split"]
    for i in range(num_videos):
        sound_class = i % num_classes
        others = [c for c in rng.permutation(num_classes).tolist() if c != sound_class][:objects_per_clip - 1]
        classes = others + [sound_class]
        order = rng.permutation(len(classes)).tolist()
        classes = [classes[j] for j in order]
        sounding = [classes.index(sound_class)]
        if not layout.has_category:  # MS3: up to every object on screen sounds
            extra = int(rng.integers(0, objects_per_clip))
            sounding += [classes.index(c) for c in others[:extra]]
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
        rows.append(f"{name},0,{category},{split}" if layout.has_category else f"{name},{split}")
    write_bytes(root / layout.csv, ("\n".join(rows) + "\n").encode())
    return root
