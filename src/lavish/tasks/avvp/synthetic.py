"""A small synthetic dataset in the LLP layout (audio-visual video parsing), for the demo and the tests.

Layout written (as the benchmark's ``data/`` folder, :mod:`lavish.tasks.avvp.layout`)::

    root/LLP_dataset/video/<filename>.mp4   h264 + aac (16 kHz mono), size x size pixels, 8 fps, 10 s
    root/AVVP_train.csv, AVVP_val_pd.csv, AVVP_test_pd.csv     filename<TAB>event_labels (weak labels)
    root/AVVP_eval_audio.csv, AVVP_eval_visual.csv             filename<TAB>onset<TAB>offset<TAB>event_labels

``filename`` is ``<11-character id>_<start>_<start + 10>`` as in LLP. Class ``k`` (the first ``num_classes`` names
of :data:`lavish.tasks.avvp.layout.CLASSES`, so the label space stays the benchmark's 25) has a visual signature, a
coloured shape (:data:`SIGNATURES`, the synthetic AVE objects), and an audio signature, a pure tone at
``SIGNATURES[k].freq`` (one mel stripe; the tones are spread so that no two share a bin).

A clip holds one or two events of different classes. An event is a span of seconds ``[onset, offset)`` (2 to 10 s)
and one of three kinds (:data:`KINDS`): only heard (the tone plays, the object is not shown), only seen (the object
is shown, silent) or both (tone and object over the same span). The first event of the i-th clip of a split has
kind ``KINDS[i % 3]``, so every split of three clips or more has all three kinds; the second is drawn at random.
Two objects on screen at once stay in the left and right halves. Everything lies over moving grey noise and a low
noise floor. The train csv has only the video-level labels; the eval csv files list each val/test event once per
modality it is present in, so a model must learn from weak labels which modality carries each event.

Deterministic per ``seed`` (ids, spans and pixels).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lavish.tasks.avvp import layout as llp
from lavish.data.synthetic import CLASSES as OBJECTS, ID_ALPHABET as _ID_ALPHABET, SyntheticClass, shape_mask as _shape_mask
from lavish.errors import ConfigError
from lavish.fileio import write_text
from lavish.media.writer import write_video

FPS = 8
SAMPLE_RATE = 16000
DURATION_S = llp.NUM_SEGMENTS
KINDS = ("audio", "visual", "audio-visual")
"""Only heard, only seen, both."""
_TONES = (500.0, 1100.0, 2300.0, 4200.0, 750.0, 1600.0, 3100.0, 5600.0)
SIGNATURES: tuple[SyntheticClass, ...] = tuple(SyntheticClass(obj.colour, obj.shape, tone)
                                               for obj, tone in zip(OBJECTS, _TONES))
"""Class k of the synthetic set: colour and shape of the k-th synthetic AVE object, pure tone at ``freq`` Hz."""
TONE_AMPLITUDE = 0.3


@dataclass(frozen=True)
class SyntheticEvent:
    """One event of a synthetic clip: class index into :data:`lavish.tasks.avvp.layout.CLASSES`, kind, [onset, offset)."""

    label: int
    kind: str
    onset: int
    offset: int

    @property
    def heard(self) -> bool:
        return self.kind in ("audio", "audio-visual")

    @property
    def seen(self) -> bool:
        return self.kind in ("visual", "audio-visual")


def _plan(rng: np.random.Generator, first_kind: str, num_classes: int) -> tuple[SyntheticEvent, ...]:
    """One or two events of distinct classes (the first of kind ``first_kind``)."""
    count = 1 + int(rng.random() < 0.5) if num_classes > 1 else 1
    labels = rng.choice(num_classes, size=count, replace=False)
    events = []
    for e, label in enumerate(labels.tolist()):
        kind = first_kind if e == 0 else KINDS[int(rng.integers(len(KINDS)))]
        length = int(rng.integers(2, DURATION_S + 1))
        onset = int(rng.integers(0, DURATION_S - length + 1))
        events.append(SyntheticEvent(label, kind, onset, onset + length))
    return tuple(events)


def _render(events: tuple[SyntheticEvent, ...], size: int, rng: np.random.Generator):
    """frames (80, size, size, 3) uint8 and audio (160000,) float32 of one clip."""
    n_frames = DURATION_S * FPS
    base = rng.integers(40, 90)
    noise = rng.integers(-25, 26, (n_frames, size // 4, size // 4, 1))
    frames = np.clip(base + noise, 0, 255).astype(np.uint8)
    frames = np.repeat(np.repeat(np.repeat(frames, 4, axis=1), 4, axis=2), 3, axis=3)  # blocky grey noise
    audio = 0.01 * rng.standard_normal(DURATION_S * SAMPLE_RATE)
    side = max(6, size * 3 // 8)
    half = size // 2
    for slot, event in enumerate(events):
        sig = SIGNATURES[event.label]
        if event.seen:
            mask = _shape_mask(sig.shape, side)
            lo, hi = slot * half, (slot + 1) * half - side  # left or right half of the frame
            for k in range(event.onset, event.offset):
                y0, x0 = int(rng.integers(0, size - side + 1)), int(rng.integers(lo, hi + 1))
                dy, dx = rng.integers(-1, 2, 2)
                for step in range(FPS):
                    y = int(np.clip(y0 + dy * step, 0, size - side))
                    x = int(np.clip(x0 + dx * step, lo, hi))
                    frames[k * FPS + step, y : y + side, x : x + side][mask] = sig.colour
        if event.heard:
            n = (event.offset - event.onset) * SAMPLE_RATE
            t = np.arange(n) / SAMPLE_RATE
            fade = np.minimum(1.0, np.minimum(t, t[-1] - t) / 0.01)
            span = slice(event.onset * SAMPLE_RATE, event.offset * SAMPLE_RATE)
            audio[span] += TONE_AMPLITUDE * np.sin(2 * np.pi * sig.freq * t) * fade
    return frames, audio.astype(np.float32)


def _make_one(path: str, events: tuple[SyntheticEvent, ...], render_seed: int, size: int):
    frames, audio = _render(events, size, np.random.default_rng(render_seed))
    write_video(path, frames, FPS, audio, SAMPLE_RATE, "h264", "aac")
    return path


def synthetic_plan(*, num_train: int, num_val: int, num_test: int, num_classes: int, seed: int
                   ) -> dict[str, list[tuple[str, tuple[SyntheticEvent, ...], int]]]:
    """split -> [(filename, events, render seed)] of :func:`make_synthetic_llp` (no files written)."""
    rng = np.random.default_rng(seed)
    names: set[str] = set()
    plan: dict[str, list] = {}
    for split, count in (("train", num_train), ("val", num_val), ("test", num_test)):
        plan[split] = []
        for i in range(count):
            while True:
                start = 10 * int(rng.integers(0, 30))
                name = f"{''.join(rng.choice(_ID_ALPHABET, 11))}_{start}_{start + DURATION_S}"
                if name not in names:
                    break
            names.add(name)
            events = _plan(rng, KINDS[i % len(KINDS)], num_classes)
            plan[split].append((name, events, int(rng.integers(2**31))))
    return plan


def make_synthetic_llp(
    root: Path | str,
    *,
    num_train: int = 60,
    num_val: int = 15,
    num_test: int = 15,
    num_classes: int = 4,
    size: int = 64,
    seed: int = 0,
    workers: int = 1,
    progress: bool = False,
) -> Path:
    """Write the synthetic LLP-layout dataset under ``root`` (see the module docstring); returns ``root``.

    Every file is written atomically; existing files are replaced.
    """
    if not 1 <= num_classes <= len(SIGNATURES):
        raise ConfigError(f"num_classes must be in 1..{len(SIGNATURES)}, got {num_classes}")
    if min(num_train, num_val, num_test) < 1:
        raise ConfigError(f"every split needs at least one clip, got train={num_train} val={num_val} test={num_test}")
    if size < 16 or size % 4:
        raise ConfigError(f"size must be a multiple of 4 and >= 16, got {size}")
    from lavish.data.prepare import run_jobs

    root = Path(root)
    video_dir = root / "LLP_dataset" / "video"
    video_dir.mkdir(parents=True, exist_ok=True)
    plan = synthetic_plan(num_train=num_train, num_val=num_val, num_test=num_test, num_classes=num_classes,
                          seed=seed)
    jobs = [(str(video_dir / f"{name}.mp4"), events, render_seed, size)
            for clips in plan.values() for name, events, render_seed in clips]
    run_jobs(_make_one, jobs, workers, lambda _: None, progress="synthetic LLP" if progress else None, unit="clip")
    for split, file in llp.SPLIT_FILES.items():
        rows = [f"{name}\t{','.join(llp.CLASSES[e.label] for e in events)}" for name, events, _ in plan[split]]
        write_text(root / file, "\n".join(["\t".join(llp.SPLIT_HEADER), *rows]) + "\n")
    for modality, file in zip(llp.MODALITIES, llp.EVAL_FILES):
        rows = [f"{name}\t{e.onset}\t{e.offset}\t{llp.CLASSES[e.label]}"
                for split in ("val", "test") for name, events, _ in plan[split]
                for e in events if (e.heard if modality == "audio" else e.seen)]
        write_text(root / file, "\n".join(["\t".join(llp.EVAL_HEADER), *rows]) + "\n")
    return root
