"""Small synthetic classification datasets in the four layouts of the classify task, for the demo and the tests.

A single-label class is a PAIR (object, sound). An object is a coloured shape (:data:`OBJECT_NAMES`: the colours
and shapes of the synthetic AVE objects, :data:`lavish.data.synthetic.CLASSES`); a sound is a chord (fundamental
and fifth) at one of :data:`SOUNDS` Hz (the synthetic AVE frequencies, reordered so that the first six chords
share no partial). For ``num_classes`` = n the pairs come from a g x g grid, g = ceil(sqrt(n)) objects and g
sounds, taken diagonal by diagonal (:func:`class_pairs`): (o0, s0), (o1, s1), ..., then (o0, s1), (o1, s2), ...
Every object and every sound of the grid is used, each in floor(n / g) or ceil(n / g) classes, and from n = 2g
on (n = 4 and every n >= 6) every object goes with at least two sounds and every sound with at least two objects.
So a class needs BOTH streams: with balanced classes a vision-only model can at best name the object (accuracy
g / n: 1/2 for n = 4), an audio-only model the sound (g / n too), an audio-visual model both. With n = 2 no choice
of pairs needs both streams, with n = 3 and 5 one object (and one sound) has a class of its own.

Class names: ``"Red square + 440 Hz"`` (object, " + ", the chord's fundamental). The same strings are the class
folders of the folder layout (letters, digits, spaces and "+": valid file names on every system) and the labels of
the csv and VGGSound layouts.

Every clip shows its object for the whole clip, from a random place in a straight line at a random speed,
bouncing off the edges, over moving blocky grey noise; its chord (random loudness) plays for the whole clip over a
low noise floor. Clip lengths vary: ``duration_s`` x uniform(0.75, 1.25), rounded to 1/8 s (8 fps: a whole number
of frames), so that prepare's any-length path is used. Video ``i`` has class ``i % n``. Deterministic per ``seed``
(ids, lengths, splits, pixels and samples).

Layouts written under ``root`` (:data:`LAYOUTS`); clips are h264 + aac (16 kHz mono), size x size pixels, 8 fps::

    folder    root/{train,val,test}/<class>/<id>.mp4       about 60/20/20 % per class: at least one clip of each
                                                           class in each split from 3 clips of a class on;
                                                           a class of 2 clips: one in train, one in test
    csv       root/clips/<id>.mp4
              root/labels.csv                              header ``path,label,split``; path relative to root
                                                           (``clips/<id>.mp4``); splits as the folder layout
    vggsound  root/video/<id>_<start:06d>.mp4
              root/vggsound.csv                            no header; ``youtube_id,start_seconds,label,split``,
                                                           split train | test, about 80/20 % per class
    audioset  root/<id>_<start:06d>.mp4
              root/class_labels_indices.csv                ``index,mid,display_name``, display names quoted
              root/balanced_train_segments.csv             about 80 % per first label
              root/eval_segments.csv                       the other 20 %

``<id>``: 11 characters of the YouTube alphabet; ``start``: a whole second in 0..299; rows in clip order.

The audioset layout is MULTI-LABEL, as AudioSet: its classes are the objects and the sounds apart, ceil(n / 2)
objects (``"Red square"``) and then n // 2 sounds (``"440 Hz chord"``), mids ``/m/syn0``, ``/m/syn1``, ...
A clip shows an object, plays a sound, or both (1 or 2 labels): clip ``i``'s first label is class ``i % n``, and
with probability 1/2 it has a second label of the other kind. An object without a sound is silent (noise floor
only); a sound without an object plays over the grey noise alone. The segments csvs are in AudioSet's distributed
form: three ``#`` lines (the third ``# YTID, start_seconds, end_seconds, positive_labels``), ``", "`` separators,
seconds with three decimals, labels always quoted (``"/m/syn0,/m/syn3"``).
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lavish.data.prepare import run_jobs
from lavish.data.synthetic import CLASSES, ID_ALPHABET, SAMPLE_RATE, shape_mask
from lavish.errors import ConfigError
from lavish.fileio import TEMP_MARK, write_text
from lavish.media.writer import write_video

LAYOUTS = ("folder", "csv", "vggsound", "audioset")
"""The layouts :func:`make_synthetic_classify` writes; only ``audioset`` is multi-label."""
FPS = 8
OBJECT_NAMES: tuple[str, ...] = tuple(c.name.rsplit(" (", 1)[0] for c in CLASSES)
"""Object k: the colour and shape of ``CLASSES[k]`` ("Red square", "Green circle", ...)."""
_SOUND_ORDER = (0, 2, 4, 5, 6, 7, 1, 3)
SOUNDS: tuple[float, ...] = tuple(CLASSES[k].freq for k in _SOUND_ORDER)
"""Sound k: a chord at ``SOUNDS[k]`` Hz and its fifth (440, 880, 550, 990, 1760, 2200, 660, 1320 Hz)."""
GRID = min(len(OBJECT_NAMES), len(SOUNDS))
"""The largest grid side: single-label sets have at most GRID ** 2 classes."""
LENGTH_RANGE = (0.75, 1.25)
"""Clip length = duration_s x uniform(*LENGTH_RANGE), rounded to 1 / FPS s."""
MAX_DURATION_S = 600.0


def class_pairs(num_classes: int) -> list[tuple[int, int]]:
    """(object, sound) index of each single-label class: the first ``num_classes`` pairs of the g x g grid
    (g = ceil(sqrt(num_classes))) taken diagonal by diagonal, (i, (i + d) % g) for d = 0, 1, ... and i = 0..g-1."""
    g = math.isqrt(num_classes - 1) + 1
    return [(i, (i + d) % g) for d in range(g) for i in range(g)][:num_classes]


def pair_name(obj: int, sound: int) -> str:
    """``"Red square + 440 Hz"``."""
    return f"{OBJECT_NAMES[obj]} + {SOUNDS[sound]:g} Hz"


def sound_name(sound: int) -> str:
    """``"440 Hz chord"`` (a class of the multi-label audioset layout)."""
    return f"{SOUNDS[sound]:g} Hz chord"


def _audioset_split(num_classes: int) -> tuple[int, int]:
    """(objects, sounds) among the ``num_classes`` labels of the audioset layout."""
    return (num_classes + 1) // 2, num_classes // 2


def class_names(layout: str, num_classes: int) -> tuple[str, ...]:
    """The classes of a synthetic set in class-index order (the order of :attr:`SyntheticClip.labels`).

    Readers order classes their own way (sorted folder names, class_labels_indices.csv's order)."""
    _check_layout(layout, num_classes)
    if layout == "audioset":
        objects, sounds = _audioset_split(num_classes)
        return (*OBJECT_NAMES[:objects], *(sound_name(k) for k in range(sounds)))
    return tuple(pair_name(o, s) for o, s in class_pairs(num_classes))


def mids(num_classes: int) -> tuple[str, ...]:
    """The audioset layout's machine ids, ``/m/syn0`` ..., in class-index order."""
    return tuple(f"/m/syn{k}" for k in range(num_classes))


@dataclass(frozen=True)
class SyntheticClip:
    """One clip of a synthetic set: the truth its files are written from."""

    path: str
    """Relative to root, "/"-separated."""
    labels: tuple[int, ...]
    """Class indices into :func:`class_names` (one, or for audioset one or two, ascending)."""
    split: str
    """"train", "val" or "test" (audioset: test = eval_segments.csv)."""
    object: int | None
    """Index into :data:`OBJECT_NAMES` of the object on screen; None: no object."""
    sound: int | None
    """Index into :data:`SOUNDS` of the chord that plays; None: no chord."""
    duration: float
    """Seconds, a multiple of 1 / FPS."""
    video_id: str
    start: int
    render_seed: int


def _check_layout(layout: str, num_classes: int) -> None:
    if layout not in LAYOUTS:
        raise ConfigError(f"unknown synthetic classify layout {layout!r}; known: {', '.join(LAYOUTS)}")
    most = 2 * GRID if layout == "audioset" else GRID**2
    if not 2 <= num_classes <= most:
        raise ConfigError(f"num_classes must be in 2..{most} for the {layout} layout, got {num_classes}")


def _check_plan(layout: str, num_videos: int, num_classes: int, duration_s: float) -> None:
    _check_layout(layout, num_classes)
    if num_videos < 2 * num_classes:
        raise ConfigError(f"num_videos ({num_videos}) must be at least 2 x num_classes ({2 * num_classes}): every "
                          f"class needs a clip to train on and one to test on")
    if not 1.5 <= duration_s <= MAX_DURATION_S:
        raise ConfigError(f"duration_s must be in 1.5..{MAX_DURATION_S:g} seconds (the shortest clip, "
                          f"{LENGTH_RANGE[0]} x duration_s, must hold a one-second segment), got {duration_s}")


def _check_output(size: int, workers: int) -> None:
    if size < 16 or size % 4:
        raise ConfigError(f"size must be a multiple of 4 and >= 16, got {size}")
    if workers < 1:
        raise ConfigError(f"workers must be >= 1, got {workers}")


def _splits(rng: np.random.Generator, first_labels: list[int], num_classes: int, with_val: bool) -> list[str]:
    """Split of each clip, per class (by first label): 20 % val (with_val) and 20 % test, at least one of each."""
    splits = ["train"] * len(first_labels)
    for c in range(num_classes):
        members = [i for i, label in enumerate(first_labels) if label == c]
        members = [members[j] for j in rng.permutation(len(members))]
        held = max(1, round(0.2 * len(members)))
        if with_val and len(members) >= 3:
            for i in members[:held]:
                splits[i] = "val"
            members = members[held:]
        for i in members[:held]:
            splits[i] = "test"
    return splits


def synthetic_plan(layout: str = "folder", *, num_videos: int = 48, num_classes: int = 4, duration_s: float = 4.0,
                   seed: int = 0) -> list[SyntheticClip]:
    """The clips :func:`make_synthetic_classify` writes with these arguments, in row order (no file written)."""
    _check_plan(layout, num_videos, num_classes, duration_s)
    rng = np.random.default_rng(seed)
    ids: list[str] = []
    while len(ids) < num_videos:
        vid = "".join(rng.choice(ID_ALPHABET, 11))
        if vid not in ids:
            ids.append(vid)
    pairs = class_pairs(num_classes)
    objects, sounds = _audioset_split(num_classes)
    drawn = []
    for i in range(num_videos):
        duration = round(duration_s * rng.uniform(*LENGTH_RANGE) * FPS) / FPS
        start = int(rng.integers(0, 300))
        render_seed = int(rng.integers(2**31))
        both, other = bool(rng.random() < 0.5), float(rng.random())
        first = i % num_classes
        if layout != "audioset":
            labels, (obj, sound) = (first,), pairs[first]
        elif first < objects:  # an object, and maybe a sound
            obj, sound = first, int(other * sounds) if both else None
        else:  # a sound, and maybe an object
            obj, sound = int(other * objects) if both else None, first - objects
        if layout == "audioset":
            labels = tuple(k for k in (obj, None if sound is None else objects + sound) if k is not None)
        drawn.append((labels, obj, sound, duration, start, render_seed))
    splits = _splits(rng, [i % num_classes for i in range(num_videos)], num_classes,
                     with_val=layout in ("folder", "csv"))
    names = class_names(layout, num_classes)
    clips = []
    for vid, split, (labels, obj, sound, duration, start, render_seed) in zip(ids, splits, drawn):
        path = {"folder": f"{split}/{names[labels[0]]}/{vid}.mp4", "csv": f"clips/{vid}.mp4",
                "vggsound": f"video/{vid}_{start:06d}.mp4", "audioset": f"{vid}_{start:06d}.mp4"}[layout]
        clips.append(SyntheticClip(path, labels, split, obj, sound, duration, vid, start, render_seed))
    return clips


def _bounce(p: float, room: int) -> int:
    """Position ``p`` folded into [0, room] as a ball bouncing between two walls."""
    if room == 0:
        return 0
    p %= 2 * room
    return round(p if p <= room else 2 * room - p)


def render(clip: SyntheticClip, size: int) -> tuple[np.ndarray, np.ndarray]:
    """frames (duration x FPS, size, size, 3) uint8 and audio (duration x 16000,) float32 of one clip."""
    rng = np.random.default_rng(clip.render_seed)
    n_frames = round(clip.duration * FPS)
    base = rng.integers(40, 90)
    noise = rng.integers(-25, 26, (n_frames, size // 4, size // 4, 1))
    frames = np.clip(base + noise, 0, 255).astype(np.uint8)
    frames = np.repeat(np.repeat(np.repeat(frames, 4, axis=1), 4, axis=2), 3, axis=3)  # moving blocky grey noise
    audio = 0.01 * rng.standard_normal(round(clip.duration * SAMPLE_RATE))
    if clip.object is not None:
        side = max(6, size * 3 // 8)
        mask = shape_mask(CLASSES[clip.object].shape, side)
        room = size - side
        start, velocity = rng.uniform(0, room, 2), rng.uniform(-1.5, 1.5, 2)  # pixels, pixels per frame
        for f in range(n_frames):
            y, x = (_bounce(p, room) for p in start + velocity * f)
            frames[f, y : y + side, x : x + side][mask] = CLASSES[clip.object].colour
    if clip.sound is not None:
        freq = SOUNDS[clip.sound]
        t = np.arange(audio.size) / SAMPLE_RATE
        fade = np.minimum(1.0, np.minimum(t, t[-1] - t) / 0.01)
        chord = 0.5 * np.sin(2 * np.pi * freq * t) + 0.3 * np.sin(2 * np.pi * 1.5 * freq * t)
        audio += rng.uniform(0.3, 0.5) * chord * fade
    return frames, audio.astype(np.float32)


def _make_one(path: str, clip: SyntheticClip, size: int) -> str:
    frames, audio = render(clip, size)
    write_video(path, frames, FPS, audio, SAMPLE_RATE, "h264", "aac")
    return path


def _csv_text(rows: list[list], header: list[str] | None = None) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    if header:
        writer.writerow(header)
    writer.writerows(rows)
    return out.getvalue()


def _segments_text(clips: list[SyntheticClip], machine_ids: tuple[str, ...], seed: int) -> str:
    """An AudioSet segments csv in the distributed form (three ``#`` lines, ``, `` separators, quoted labels)."""
    labels = [label for clip in clips for label in clip.labels]
    counts = (f"num_ytids={len(clips)}, num_segs={len(clips)}, num_unique_labels={len(set(labels))}, "
              f"num_positive_labels={len(labels)}")
    lines = [f"# Segments csv created by the lavish synthetic set (seed {seed})", f"# {counts}",
             "# YTID, start_seconds, end_seconds, positive_labels"]
    lines += [f'{c.video_id}, {c.start:.3f}, {c.start + c.duration:.3f}, '
              f'"{",".join(machine_ids[k] for k in c.labels)}"' for c in clips]
    return "\n".join(lines) + "\n"


def _annotation_files(layout: str, clips: list[SyntheticClip], num_classes: int, seed: int) -> dict[str, str]:
    """Relative path -> text of the layout's csv files."""
    names = class_names(layout, num_classes)
    if layout == "csv":
        return {"labels.csv": _csv_text([[c.path, names[c.labels[0]], c.split] for c in clips],
                                        ["path", "label", "split"])}
    if layout == "vggsound":
        return {"vggsound.csv": _csv_text([[c.video_id, c.start, names[c.labels[0]], c.split] for c in clips])}
    if layout == "audioset":
        machine_ids = mids(num_classes)
        indices = ["index,mid,display_name", *(f'{k},{m},"{n}"' for k, (m, n) in enumerate(zip(machine_ids, names)))]
        return {"class_labels_indices.csv": "\n".join(indices) + "\n",
                "balanced_train_segments.csv": _segments_text([c for c in clips if c.split == "train"],
                                                              machine_ids, seed),
                "eval_segments.csv": _segments_text([c for c in clips if c.split == "test"], machine_ids, seed)}
    return {}


def _refuse_foreign_files(root: Path, planned: set[str]) -> None:
    """ConfigError if ``root`` holds a file this set would not write (it would join the dataset unseen)."""
    if not root.exists():
        return
    if not root.is_dir():
        raise ConfigError(f"{root}: not a folder")
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        if path.is_file() and rel not in planned and TEMP_MARK not in path.name:
            raise ConfigError(f"{root}: holds {rel}, which this synthetic set would not write (another layout, "
                              f"seed or size?); choose an empty or new folder")


def make_synthetic_classify(
    root: Path | str,
    *,
    layout: str = "folder",
    num_videos: int = 48,
    num_classes: int = 4,
    duration_s: float = 4.0,
    size: int = 64,
    seed: int = 0,
    workers: int = 1,
    progress: bool = True,
) -> Path:
    """Write the synthetic classify set in ``layout`` under ``root`` (see the module docstring); returns ``root``.

    ``root`` must be new, empty, or hold an earlier run of the same call (its files are replaced); any other file
    there is refused (ConfigError), as it would silently join the dataset. Clips first, then the csv files, each
    written atomically.
    """
    _check_output(size, workers)
    root = Path(root)
    clips = synthetic_plan(layout, num_videos=num_videos, num_classes=num_classes, duration_s=duration_s, seed=seed)
    texts = _annotation_files(layout, clips, num_classes, seed)
    _refuse_foreign_files(root, {c.path for c in clips} | set(texts))
    jobs = [(str(root / clip.path), clip, size) for clip in clips]
    run_jobs(_make_one, jobs, workers, lambda _: None, progress=f"synthetic classify ({layout})" if progress else None,
             unit="clip")
    for name, text in texts.items():
        write_text(root / name, text)
    return root
