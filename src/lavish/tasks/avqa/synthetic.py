"""A tiny synthetic dataset in the MUSIC-AVQA layout, for the demo and the tests (spec 5.3).

Layout written (what :func:`lavish.tasks.avqa.prepare.discover_avqa` accepts)::

    root/videos/<video_id>.mp4                 h264 + aac (16 kHz mono), size x size pixels, 4 fps, duration_s s
    root/avqa-train.json, avqa-val.json, avqa-test.json   official record format (60 / 20 / 20 % of the videos)

Records are as the official ones: ``type`` and ``templ_values`` are strings holding lists, the answer field is
``anser``, placeholders ``<Object>`` / ``<LR>`` are filled in order from ``templ_values``.

"Instruments" have a sight and a sound: a coloured shape and a chord (the first classes of
:mod:`lavish.data.synthetic`: piano = red square 440 Hz, guitar = green circle 660 Hz, violin = blue triangle
880 Hz, flute = yellow cross 1320 Hz, ...). A video shows 1-3 instruments in the left / middle / right slot; each
visible one plays or stays silent, and sometimes an off-screen one plays. Players start at distinct onsets (0, 3 or
6 s) and play to the end, at distinct loudness levels. Questions (one per template that applies to the video):

=================  ==============  ==============================================================  =========
major              minor           question                                                        needs
=================  ==============  ==============================================================  =========
Audio              Counting        How many instruments are sounding in the video?                 sound
Audio              Comparative     Is the <Object> louder than the <Object>?                       sound
Visual             Counting        How many instruments are in the video?                          sight
Visual             Location        Where is the <Object>?                                          sight
Audio-Visual       Existential     Is every sound from an instrument in the video?                 both
Audio-Visual       Counting        How many instruments in the video are not sounding?             both
Audio-Visual       Location        Where is the first sounding instrument?                         both
Audio-Visual       Comparative     Is the instrument on the <LR> louder than the one on the <LR>?  both
Audio-Visual       Temporal        Which sounds first, the instrument on the <LR> or the <LR>?     both
=================  ==============  ==============================================================  =========

Deterministic per ``seed``; video ids are 8 digits, as the official ones.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lavish.fileio import write_json
from lavish.data.synthetic import CLASSES, SAMPLE_RATE, shape_mask as _shape_mask
from lavish.data.prepare import run_jobs
from lavish.errors import ConfigError
from lavish.media.writer import write_video

FPS = 4
INSTRUMENTS = ("piano", "guitar", "violin", "flute", "drum", "cello")
"""Names of the synthetic instruments; instrument i looks and sounds like ``lavish.data.synthetic.CLASSES[i]``."""
SLOTS = ("left", "middle", "right")
NUMBERS = ("zero", "one", "two", "three", "four")
ONSETS_S = (0, 3, 6)
LEVELS = (0.12, 0.3, 0.6)


@dataclass(frozen=True)
class Player:
    """One instrument of a video: slot index (None = off screen), onset in s (None = silent), loudness level."""

    instrument: int
    slot: int | None
    onset: int | None
    level: float


def _plan(rng: np.random.Generator, num_instruments: int) -> list[Player]:
    """Instruments of one video (at least one visible and at least one sounding)."""
    n_visible = int(rng.integers(1, min(3, num_instruments) + 1))
    chosen = rng.permutation(num_instruments)
    slots = rng.permutation(len(SLOTS))[:n_visible]
    sounding = rng.random(n_visible) < 0.6
    if not sounding.any():
        sounding[rng.integers(n_visible)] = True
    offscreen = n_visible < num_instruments and sounding.sum() < len(ONSETS_S) and rng.random() < 0.3
    n_sound = int(sounding.sum()) + int(offscreen)
    onsets = iter(rng.permutation(ONSETS_S)[:n_sound].tolist())
    levels = iter(rng.permutation(LEVELS)[:n_sound].tolist())
    players = []
    for k in range(n_visible):
        on = sounding[k]
        players.append(Player(int(chosen[k]), int(slots[k]), next(onsets) if on else None,
                              next(levels) if on else 0.0))
    if offscreen:
        players.append(Player(int(chosen[n_visible]), None, next(onsets), next(levels)))
    return players


def _render(players: list[Player], duration_s: int, size: int, rng: np.random.Generator):
    """frames (N, size, size, 3) uint8, audio (n,) float32."""
    n_frames = duration_s * FPS
    base = rng.integers(40, 90)
    noise = rng.integers(-20, 21, (n_frames, size // 4, size // 4, 1))
    frames = np.clip(base + noise, 0, 255).astype(np.uint8)
    frames = np.repeat(np.repeat(np.repeat(frames, 4, axis=1), 4, axis=2), 3, axis=3)
    side = max(6, size // 4)
    t = np.arange(duration_s * SAMPLE_RATE) / SAMPLE_RATE
    audio = 0.01 * rng.standard_normal(t.size)
    for p in players:
        cls = CLASSES[p.instrument]
        if p.slot is not None:
            mask = _shape_mask(cls.shape, side)
            x = int((p.slot + 0.5) * size / len(SLOTS) - side / 2)
            y = int(rng.integers(size // 8, size - side - size // 8 + 1))
            frames[:, y:y + side, x:x + side][:, mask] = cls.colour
        if p.onset is not None:
            on = t >= p.onset
            fade = np.clip((t - p.onset) / 0.01, 0, 1)
            chord = 0.5 * np.sin(2 * np.pi * cls.freq * t) + 0.3 * np.sin(2 * np.pi * 1.5 * cls.freq * t)
            audio += p.level * chord * fade * on
    return frames, np.clip(audio, -1, 1).astype(np.float32)


def _questions(players: list[Player], rng: np.random.Generator) -> list[tuple[str, str, str, list[str], str]]:
    """(major, minor, question, templ_values, answer) for every template that applies."""
    name = lambda p: INSTRUMENTS[p.instrument]  # noqa: E731
    where = lambda p: SLOTS[p.slot]  # noqa: E731
    visible = [p for p in players if p.slot is not None]
    sounding = sorted((p for p in players if p.onset is not None), key=lambda p: p.onset)
    vis_sound = [p for p in visible if p.onset is not None]
    yes = lambda c: "yes" if c else "no"  # noqa: E731
    out = [
        ("Audio", "Counting", "How many instruments are sounding in the video?", [], NUMBERS[len(sounding)]),
        ("Visual", "Counting", "How many instruments are in the video?", [], NUMBERS[len(visible)]),
        ("Audio-Visual", "Existential", "Is every sound from an instrument in the video?", [],
         yes(all(p.slot is not None for p in sounding))),
        ("Audio-Visual", "Counting", "How many instruments in the video are not sounding?", [],
         NUMBERS[len(visible) - len(vis_sound)]),
    ]
    target = visible[int(rng.integers(len(visible)))]
    out.append(("Visual", "Location", "Where is the <Object>?", [name(target)], where(target)))
    if len(sounding) >= 2:
        a, b = (sounding[i] for i in rng.permutation(len(sounding))[:2])
        out.append(("Audio", "Comparative", "Is the <Object> louder than the <Object>?", [name(a), name(b)],
                    yes(a.level > b.level)))
    if sounding[0].slot is not None:
        out.append(("Audio-Visual", "Location", "Where is the first sounding instrument?", [], where(sounding[0])))
    if len(vis_sound) >= 2:
        a, b = (vis_sound[i] for i in rng.permutation(len(vis_sound))[:2])
        out.append(("Audio-Visual", "Comparative", "Is the instrument on the <LR> louder than the one on the <LR>?",
                    [where(a), where(b)], yes(a.level > b.level)))
        out.append(("Audio-Visual", "Temporal", "Which sounds first, the instrument on the <LR> or the <LR>?",
                    [where(a), where(b)], where(a if a.onset < b.onset else b)))
    return out


def _make_one(job: tuple[Path, int, int, int, int]) -> None:
    path, seed, num_instruments, duration_s, size = job
    rng = np.random.default_rng(seed)
    players = _plan(rng, num_instruments)
    frames, audio = _render(players, duration_s, size, rng)
    write_video(path, frames, FPS, audio, SAMPLE_RATE, "h264", "aac")


def make_synthetic_avqa(
    root: Path,
    *,
    num_videos: int = 60,
    num_instruments: int = 4,
    duration_s: int = 10,
    size: int = 64,
    seed: int = 0,
    workers: int = 1,
) -> Path:
    """Write the synthetic MUSIC-AVQA-layout dataset under ``root`` (see module docstring); returns ``root``."""
    if not 2 <= num_instruments <= len(INSTRUMENTS):
        raise ConfigError(f"num_instruments must be in 2..{len(INSTRUMENTS)}, got {num_instruments}")
    if num_videos < 5:
        raise ConfigError(f"num_videos={num_videos} is not valid: at least 5 (train / val / test splits)")
    if duration_s < max(ONSETS_S) + 2:
        raise ConfigError(f"duration_s must be >= {max(ONSETS_S) + 2} (players start at up to {max(ONSETS_S)} s)")
    if size < 32 or size % 4:
        raise ConfigError(f"size must be a multiple of 4 and >= 32, got {size}")
    root = Path(root)
    (root / "videos").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    ids = [f"{i:08d}" for i in rng.choice(10**8, num_videos, replace=False)]
    order = rng.permutation(num_videos)
    n_val = n_test = max(1, round(0.2 * num_videos))
    split_of = {int(v): "val" for v in order[:n_val]}
    split_of.update({int(v): "test" for v in order[n_val:n_val + n_test]})
    records: dict[str, list[dict]] = {"train": [], "val": [], "test": []}
    jobs = []
    qid = 0
    for i, vid in enumerate(ids):
        video_seed = int(rng.integers(2**31))
        jobs.append((root / "videos" / f"{vid}.mp4", video_seed, num_instruments, duration_s, size))
        vrng = np.random.default_rng(video_seed)
        players = _plan(vrng, num_instruments)
        for major, minor, question, values, answer in _questions(players, np.random.default_rng([seed, i])):
            records[split_of.get(i, "train")].append({
                "video_id": vid, "question_id": qid, "type": json.dumps([major, minor]),
                "question_content": question, "templ_values": json.dumps(values), "question_deleted": 0,
                "anser": answer,
            })
            qid += 1
    run_jobs(_make_one, [(job,) for job in jobs], workers, lambda _: None)
    for split, recs in records.items():
        write_json(root / f"avqa-{split}.json", recs)
    return root
