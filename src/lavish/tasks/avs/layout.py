"""AVSBench (Zhou et al., ECCV 2022) S4 and MS3 layouts: meta csv, frames, masks, wavs (spec sections 3.2, 5.2).

S4 (``Single-source/``)::

    s4_meta_data.csv                                        header; col 0 = name, columns 'category', 'split'
    s4_data/visual_frames/<split>/<category>/<name>/<name>_<1..5>.png   224x224 RGB, 1 frame per second
    s4_data/gt_masks/<split>/<category>/<name>/<name>_<k>.png           binary; train: k=1 only, val/test: 1..5
    s4_data/audio_wav/<split>/<category>/<name>.wav                     16 kHz, 5 s

MS3 (``Multi-sources/``), as AVSBench's released MS3 code reads and writes it (``avs_scripts/avs_ms3/config.py``
and ``dataloader.py``, ``preprocess_scripts/preprocess_ms3.py``, github:OpenNLPLab/AVSBench; the LAVISH authors
released S4 code only): no category level; frames in one folder per clip, not split by split, named after the raw
video FILE (``<name>.mp4``, the preprocess script's ``os.listdir`` name) plus ``_<k>``; masks and wavs under the
split; all 5 frames annotated in every split (the loader reads 5 masks for train too and the training loss is BCE
over the 5 frames)::

    ms3_meta_data.csv                                       header; col 0 = name, column 'split' (col 1)
    ms3_data/visual_frames/<name>/<name>.mp4_<1..5>.png     224x224 RGB, 1 frame per second
    ms3_data/gt_masks/<split>/<name>/<name>_<1..5>.png      binary, every frame of every split
    ms3_data/audio_wav/<split>/<name>.wav                   16 kHz, 5 s

Both subsets: AVSBench's extraction keeps, in each second, the 16th of 16 evenly spaced frames (near the end of the
second) resized to 224x224 by ``cv2.resize``. The csv's first column is the name (their loaders'
``df_one_video[0]``) and ``split`` is found by header name (their ``df['split']``); S4's ``category`` too (their
loader takes column 2 of ``name,start_time,category,split``).

:func:`read_avs` parses the csv and checks that every file exists (cheap); :func:`check_record` opens the
masks and the wav (size, binary values, duration >= 5 s). Both raise :class:`DataError` with one line naming the
file. The authors' loader (and AVSBench's) opens files lazily and crashes mid-epoch on a missing one; they also
load the unused VGGish ``audio_log_mel`` pickles, which we ignore. :func:`resize_frames` is the authors' model-side
frame resize (224 -> 192), done once at prepare time.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lavish.errors import DataError, LavishError

NUM_FRAMES = 5
CLIP_SECONDS = 5.0
SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class AvsSubset:
    """Where one AVSBench subset keeps its files (patterns take ``split``, ``category``, ``name``, ``k``)."""

    name: str
    csv: str
    data_dir: str
    frame: str
    mask: str
    audio: str
    annotated: dict[str, tuple[int, ...]]
    """split -> 1-based frame numbers that have a ground-truth mask."""
    has_category: bool


SUBSETS: dict[str, AvsSubset] = {
    "s4": AvsSubset(
        name="s4",
        csv="s4_meta_data.csv",
        data_dir="s4_data",
        frame="visual_frames/{split}/{category}/{name}/{name}_{k}.png",
        mask="gt_masks/{split}/{category}/{name}/{name}_{k}.png",
        audio="audio_wav/{split}/{category}/{name}.wav",
        annotated={"train": (1,), "val": (1, 2, 3, 4, 5), "test": (1, 2, 3, 4, 5)},
        has_category=True,
    ),
    "ms3": AvsSubset(
        name="ms3",
        csv="ms3_meta_data.csv",
        data_dir="ms3_data",
        frame="visual_frames/{name}/{name}.mp4_{k}.png",
        mask="gt_masks/{split}/{name}/{name}_{k}.png",
        audio="audio_wav/{split}/{name}.wav",
        annotated={"train": (1, 2, 3, 4, 5), "val": (1, 2, 3, 4, 5), "test": (1, 2, 3, 4, 5)},
        has_category=False,
    ),
}


@dataclass(frozen=True)
class AvsRecord:
    """One 5-s AVSBench clip."""

    name: str
    category: str
    """Sound-source category ('' for MS3)."""
    split: str
    frames: tuple[Path, ...]
    """The 5 frame pngs, in time order."""
    masks: tuple[Path | None, ...]
    """Ground-truth mask per frame, None where the frame is not annotated."""
    audio: Path
    line: int
    """Line of the record in the meta csv (1-based, header = line 1)."""

    @property
    def annotated(self) -> tuple[int, ...]:
        """0-based indices of the frames that have a mask."""
        return tuple(i for i, m in enumerate(self.masks) if m is not None)


def scan_avs(root: Path | str, subset: str = "s4") -> tuple[list[AvsRecord], dict[str, str]]:
    """(clips of the subset's meta csv whose files all exist, name -> one-line reason for every other row).

    A bad csv as a whole (missing, empty, header without the needed columns) raises DataError; a bad row (too
    few fields, empty name, unknown split, missing file) is reported, named by csv path and line number.
    """
    if subset not in SUBSETS:
        raise DataError(f"unknown AVSBench subset {subset!r}: choose one of {', '.join(SUBSETS)}")
    layout = SUBSETS[subset]
    root = Path(root)
    csv_path = root / layout.csv
    data = root / layout.data_dir
    if not csv_path.is_file():
        raise DataError(f"{root}: not an AVSBench {subset.upper()} folder, missing {layout.csv}")
    if not data.is_dir():
        raise DataError(f"{root}: not an AVSBench {subset.upper()} folder, missing {layout.data_dir}/")
    with open(csv_path, newline="", encoding="utf-8-sig") as f:
        rows = list(csv.reader(f))
    if not rows:
        raise DataError(f"{csv_path}: empty file")
    header = [h.strip() for h in rows[0]]
    needed = ["split"] + (["category"] if layout.has_category else [])
    lacking = [c for c in needed if c not in header]
    if lacking:
        raise DataError(f"{csv_path}:1: header lacks column(s) {', '.join(lacking)} (found {', '.join(header)})")
    col = {c: header.index(c) for c in needed}
    records, failed = [], {}
    for number, row in enumerate(rows[1:], start=2):
        if not any(cell.strip() for cell in row):
            continue
        name = row[0].strip()
        where = f"{csv_path}:{number}"
        if len(row) < len(header):
            failed[name or f"line{number}"] = f"{where}: {len(row)} fields, header has {len(header)}"
            continue
        if not name:
            failed[f"line{number}"] = f"{where}: empty video name"
            continue
        split = row[col["split"]].strip()
        category = row[col["category"]].strip() if layout.has_category else ""
        if split not in SPLITS:
            failed[name] = f"{where}: split {split!r} is not one of {', '.join(SPLITS)}"
            continue
        fill = dict(split=split, category=category, name=name)
        frames = tuple(data / layout.frame.format(k=k, **fill) for k in range(1, NUM_FRAMES + 1))
        masks = tuple(
            data / layout.mask.format(k=k, **fill) if k in layout.annotated[split] else None
            for k in range(1, NUM_FRAMES + 1)
        )
        audio = data / layout.audio.format(**fill)
        missing = [p for p in (*frames, *(m for m in masks if m is not None), audio) if not p.is_file()]
        if missing:
            failed[name] = f"{where}: video {name!r} ({split}): missing file {missing[0]}"
            continue
        records.append(AvsRecord(name, category, split, frames, masks, audio, number))
    return records, failed


def read_avs(root: Path | str, subset: str = "s4") -> list[AvsRecord]:
    """All clips listed in the subset's meta csv under ``root``; DataError at the first bad row."""
    records, failed = scan_avs(root, subset)
    if failed:
        raise DataError(next(iter(failed.values())))
    return records


def load_mask(path: Path | str, size: tuple[int, int] | None = None) -> np.ndarray:
    """(H, W) bool mask from a png with two values (0 and one other); DataError for wrong size or grey levels.

    size: expected (H, W), usually that of the frame it annotates.
    """
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    try:
        with Image.open(path) as img:
            mode = img.mode
            arr = np.asarray(img if mode in ("1", "L", "P", "I", "I;16") else img.convert("L"))
    except (OSError, UnidentifiedImageError) as err:
        raise DataError(f"{path}: cannot read mask image ({err})") from None
    if size is not None and arr.shape[:2] != tuple(size):
        raise DataError(f"{path}: mask is {arr.shape[1]}x{arr.shape[0]}, its frame is {size[1]}x{size[0]}")
    values = np.unique(arr)
    if values.size > 2 or (values.size == 2 and values[0] != 0):
        shown = ", ".join(str(v) for v in values[:6].tolist())
        raise DataError(f"{path}: mask is not binary (values {shown}{', ...' if values.size > 6 else ''})")
    return arr != 0


def image_size(path: Path) -> tuple[int, int]:
    """(H, W) of an image from its header."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            return img.height, img.width
    except (OSError, UnidentifiedImageError) as err:
        raise DataError(f"{path}: cannot read image ({err})") from None


def check_record(record: AvsRecord, min_audio_s: float = CLIP_SECONDS) -> None:
    """Open the record's frames (headers), masks and wav: same frame sizes, binary masks of the frame's size,
    audio at least ``min_audio_s`` long. DataError naming the first bad file."""
    from lavish.media.decode import probe

    sizes = [image_size(p) for p in record.frames]
    if len(set(sizes)) != 1:
        bad = next(p for p, s in zip(record.frames, sizes) if s != sizes[0])
        raise DataError(f"{bad}: frame size {sizes[record.frames.index(bad)]} differs from {record.frames[0].name} {sizes[0]}")
    for mask in record.masks:
        if mask is not None:
            load_mask(mask, sizes[0])
    try:
        info = probe(record.audio)
    except LavishError as err:
        raise DataError(str(err)) from None
    if not info.has_audio:
        raise DataError(f"{record.audio}: no audio stream")
    if info.duration + 1e-3 < min_audio_s:
        raise DataError(f"{record.audio}: audio is {info.duration:.2f} s long, needs at least {min_audio_s:g} s")


def resize_frames(frames: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(T, H, W, 3) uint8 -> (T, h, w, 3) uint8 at ``size`` = (h, w): the authors' AVS resize, done once.

    The authors' AVS model resizes the normalised 224x224 frames to the backbone's 192x192 with
    ``F.interpolate(x, size=[192, 192], mode='bicubic')`` (align_corners False, no antialias;
    AVS/avs_scripts/avs_s4/model/PVT_AVSModel.py L435). Bicubic weights sum to 1 and the ImageNet normalisation is
    a per-channel affine map, so resizing the 0-255 values with the same op and normalising at load time gives the
    same tensor, up to what uint8 storage changes: rounding (at most 0.5/255, 0.0087 in normalised units) and the
    bicubic overshoot beyond [0, 255] at sharp edges, which is clipped (docs/avs.md has the measured difference).
    """
    import torch
    import torch.nn.functional as F

    x = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).to(torch.float32)
    y = F.interpolate(x, size=tuple(size), mode="bicubic", align_corners=False, antialias=False)
    return y.round_().clamp_(0, 255).to(torch.uint8).permute(0, 2, 3, 1).contiguous().numpy()
