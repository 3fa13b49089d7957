"""The four dataset layouts of the classify task, read into one :class:`ClassifyLayout` (clips, classes, splits).

``read_layout(root, layout="auto", ...)`` reads annotations and lists folders only; it never opens a video. A clip
whose file is missing keeps its expected path (prepare lists it in failed.tsv). Per-row problems leave the row out
and are recorded in :attr:`ClassifyLayout.rejected` as ``(where, reason)``, ``where`` being ``FILE:LINE`` (1-based,
as an editor shows it) or a path; structural problems raise :class:`~lavish.errors.DataError` (one line naming the
file), options that do not apply to a layout :class:`~lavish.errors.ConfigError`. :attr:`ClassifyLayout.notes` says
what was ignored or decided: non-video files, clips without a file, carved splits, classes with no training clip.

**auto** picks the first that applies: (1) ``csv=`` is given, or ROOT is a file ending in ``.csv``: csv;
(2) ``ROOT/class_labels_indices.csv`` exists: audioset; (3) ``ROOT/vggsound.csv``: vggsound; (4)
``ROOT/labels.csv``: csv; (5) otherwise folder. A forced ``layout=`` whose files are absent is a DataError naming them.

**folder** (single-label, like torchvision's ImageFolder): ``ROOT/<class>/**/<clip>.<ext>``, or, when ROOT holds a
``train`` folder, ``ROOT/{train,val,test}/<class>/**/<clip>.<ext>``. Video extensions: ``VIDEO_EXTENSIONS`` of
:mod:`lavish.engine.predict` (any case). Names starting with ``.`` are ignored; other non-video files are ignored and
counted in a note. Classes: the sorted class folder names that hold a clip. Left out, one ``rejected`` line each: a
class folder with no clip (the class is dropped unless another split has it), a video not inside a class folder,
a subfolder that cannot be listed, and (split layout) a folder of ROOT other than train/val/test. ``where`` is the
clip's path. Beware: a class named ``train`` makes ROOT a split layout.

**csv** (the user's own): the file ``csv=``, else ROOT when it is a file, else ``ROOT/labels.csv``. Rows
``path,label[,split]``; an optional first row ``path,label`` or ``path,label,split`` is the header (a first row
whose first cell is ``path`` but is neither is a DataError). Fields may be quoted and are stripped; blank lines are
skipped. Paths are relative to the CSV's folder (absolute paths allowed). Labels are separated by ``;`` (repeats
count once); the set is multi-label when any kept row has two or more, or when ``multi_label=True``; with
``multi_label=False`` such a row is left out. ``classes_file``: one class per line (blank lines skipped; a name
twice is a DataError), giving the class order; a row with a label not in it is left out. Without it the classes
are the sorted union of the kept rows' labels. Left out: a row with a wrong field count, no path (or one holding a
NUL), no label, a label outside ``classes_file``, a split other than train/val/test, or the same file as an earlier
row (same path after ``os.path.realpath``, so symlinks and ``..`` count).

**vggsound** (single-label): ``ROOT/vggsound.csv`` as released: no header, rows
``youtube_id,start_seconds,label,split`` (labels quoted when they hold commas), split train/test (val is accepted
too). Lines starting with ``#`` are skipped. clip_id ``<youtube_id>_<start:06d>``; its file is
``<clip_id>.<ext>`` in the first of ``video_dir=``, ``ROOT/video``, ROOT (listed once with ``os.scandir``, not
searched below; of two files with the same name and different extensions, the first in name order wins). Classes:
the sorted union of labels. Left out: a wrong field count, an id that is not a YouTube id (``[A-Za-z0-9_-]+``), a
start that is not a whole number, no label, a bad split, a clip_id seen before.

**audioset** (multi-label): ``ROOT/class_labels_indices.csv`` (header ``index,mid,display_name``, indices 0, 1, ...
in order; classes = display names in that order) and one or more of ``balanced_train_segments.csv`` and
``unbalanced_train_segments.csv`` (train), ``eval_segments.csv`` (test), read in that order. Both forms are read:
the release's (three ``#`` lines, the third ``# YTID, start_seconds, end_seconds, positive_labels``; ``, ``
separators) and the normalised one (header ``YTID,start_seconds,end_seconds,positive_labels``); other ``#`` lines
are skipped. ``positive_labels`` is a quoted comma-separated list of mids. clip_id ``<YTID>_<start:06d>`` with start
= ``int(start_seconds)``. The clip's file, in the same folder as vggsound, is the first that exists of
``<clip_id>``, ``<YTID>_<start>_<end>`` (the csv's text, e.g. ``--PJHxphWEs_30.000_40.000``),
``<YTID>_<int start>_<int end>``, ``Y<YTID>``, ``<YTID>`` (each ``.<ext>``). Left out: a wrong field count, a bad
YTID, times that are not numbers >= 0, no label, a mid not in the index (named), a clip_id seen before (the
duplicate names the first's FILE:LINE; so a clip in the balanced and unbalanced files is kept once, as balanced).

**clip_id** of folder and csv clips: the path relative to ROOT (csv: as written, normalised) without its extension,
folders joined by ``__``, every character outside ``[A-Za-z0-9_.-]`` (and a leading ``.``) replaced by ``_``, cut at
96 characters; ``-`` plus the first 8 hex digits of the SHA-1 of the relative path (with its extension; UTF-8,
undecodable bytes as they are) are appended when that changed anything or when two ids would be equal ignoring case
(all of them then get one). E.g. ``dog/a.mp4`` -> ``dog__a``, ``dog/clip 1.mp4`` -> ``dog__clip_1-<hash>``. Ids are
valid cache names (:func:`lavish.data.cache.check_video_id`) and the same on every run.

**Splits**: a clip keeps the split its layout gives; the train clips and the clips without one (folder layout
without split folders, csv rows without a split) form the train pool. Each of val and test that no clip has is
carved from the pool, per class (a clip's first label), deterministically: the class's n clips, sorted by clip_id,
are shuffled by ``numpy.random.default_rng([seed, zlib.crc32(UTF-8 class name)])``; val takes the first
``round_half_up(val_fraction * n)`` (exact decimal arithmetic), then test the next ``round_half_up(test_fraction *
n)``, each capped so that at least one of the class's clips stays in train (so a class of 1 or 2 clips is not
carved at 0.1). A split whose fraction is above 0 but which every class rounded to 0 (a small set) takes one clip:
the next of the class with the most clips to spare (the first in class order on a tie). The rest of the pool is
train. Fractions lie in [0, 1) with a sum below 1; seed >= 0.
"""

from __future__ import annotations

import csv as csvlib
import hashlib
import math
import os
import re
import zlib
from collections import Counter, defaultdict
from dataclasses import dataclass, field, replace
from fractions import Fraction
from pathlib import Path

import numpy as np

from lavish.engine.predict import VIDEO_EXTENSIONS
from lavish.errors import ConfigError, DataError

LAYOUTS = ("auto", "folder", "csv", "vggsound", "audioset")
VAL_FRACTION = TEST_FRACTION = 0.1
"""share of each class's train pool carved for a missing val / test split, by default"""
SPLITS = ("train", "val", "test")
CSV_HEADERS = (("path", "label"), ("path", "label", "split"))
LABELS_CSV = "labels.csv"
VGGSOUND_CSV = "vggsound.csv"
AUDIOSET_INDEX = "class_labels_indices.csv"
AUDIOSET_SEGMENTS = {"balanced_train_segments.csv": "train", "unbalanced_train_segments.csv": "train",
                     "eval_segments.csv": "test"}
"""AudioSet's segment files and their split, in reading order."""
SEGMENTS_HEADER = ("YTID", "start_seconds", "end_seconds", "positive_labels")
INDEX_HEADER = ("index", "mid", "display_name")
VGGSOUND_FIELDS = ("youtube_id", "start_seconds", "label", "split")
"""The columns of ``vggsound.csv`` (the file has no header line)."""
MAX_ID_LENGTH = 96
_UNSAFE = re.compile(r"[^A-Za-z0-9_.\-]")
_YOUTUBE_ID = re.compile(r"^[A-Za-z0-9_\-]+$")


@dataclass(frozen=True)
class ClipRecord:
    """One labelled clip."""

    clip_id: str
    """Unique and usable as a cache file name (:func:`lavish.data.cache.check_video_id`)."""
    path: Path
    """The video file; it may not exist (prepare lists it as failed)."""
    labels: tuple[str, ...]
    """Class names; exactly one in a single-label set."""
    split: str
    """One of :data:`SPLITS`."""
    where: str
    """``FILE:LINE`` of its row (csv layouts) or its path (folder layout)."""


@dataclass
class ClassifyLayout:
    """A dataset read by :func:`read_layout`."""

    kind: str
    classes: list[str]
    multi_label: bool
    clips: list[ClipRecord]
    rejected: list[tuple[str, str]] = field(default_factory=list)
    """(where, reason) of every row or file left out."""
    notes: list[str] = field(default_factory=list)
    """One-line remarks worth printing (ignored files, carved splits, classes without a training clip)."""

    def label_array(self) -> np.ndarray:
        """(N,) int64 class indices (single-label) or (N, K) uint8 0/1 (multi-label: 1 byte a class, 1 GB for
        AudioSet's 2 M clips x 527 classes); row i is ``clips[i]``."""
        index = {name: i for i, name in enumerate(self.classes)}
        if not self.multi_label:
            return np.array([index[clip.labels[0]] for clip in self.clips], dtype=np.int64)
        out = np.zeros((len(self.clips), len(self.classes)), dtype=np.uint8)
        for row, clip in enumerate(self.clips):
            out[row, [index[name] for name in clip.labels]] = 1
        return out

    def splits(self) -> dict[str, list[int]]:
        """split -> indices into :attr:`clips`, for each of :data:`SPLITS`."""
        out: dict[str, list[int]] = {name: [] for name in SPLITS}
        for i, clip in enumerate(self.clips):
            out[clip.split].append(i)
        return out


def read_layout(root: Path | str, *, layout: str = "auto", csv: Path | str | None = None,
                classes_file: Path | str | None = None, multi_label: bool | None = None,
                video_dir: Path | str | None = None, val_fraction: float = VAL_FRACTION,
                test_fraction: float = TEST_FRACTION, seed: int = 0) -> ClassifyLayout:
    """Read a dataset in one of :data:`LAYOUTS` (rules: module docstring)."""
    if layout not in LAYOUTS:
        raise ConfigError(f"layout {layout!r}: expected one of {', '.join(LAYOUTS)}")
    for name, value in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if not 0 <= value < 1:
            raise ConfigError(f"{name} must lie in [0, 1), got {value}")
    if val_fraction + test_fraction >= 1:
        raise ConfigError(f"val_fraction + test_fraction must be below 1, got {val_fraction} + {test_fraction}")
    if seed < 0:
        raise ConfigError(f"seed must be >= 0, got {seed}")
    root = Path(root)
    kind = _detect(root, csv) if layout == "auto" else layout
    applies = {"folder": (), "csv": ("csv", "classes_file"), "vggsound": ("video_dir",), "audioset": ("video_dir",)}
    for name, value in (("csv", csv), ("classes_file", classes_file), ("video_dir", video_dir)):
        if value is not None and name not in applies[kind]:
            raise ConfigError(f"{name} does not apply to the {kind} layout")
    fixed = {"folder": False, "vggsound": False, "audioset": True}.get(kind)
    if multi_label is not None and fixed is not None and multi_label != fixed:
        raise ConfigError(f"the {kind} layout is {'multi' if fixed else 'single'}-label: "
                          f"multi_label={multi_label} does not apply")
    if kind == "folder":
        out = _read_folder(root)
    elif kind == "csv":
        path = Path(csv) if csv is not None else root if root.is_file() else root / LABELS_CSV
        out = _read_csv(path, None if classes_file is None else Path(classes_file), multi_label)
    elif kind == "vggsound":
        out = _read_vggsound(root, video_dir)
    else:
        out = _read_audioset(root, video_dir)
    _carve(out, {"val": val_fraction, "test": test_fraction}, seed)
    return out


def _detect(root: Path, csv: Path | str | None) -> str:
    if csv is not None or (root.is_file() and root.suffix.lower() == ".csv"):
        return "csv"
    if not root.is_dir():
        raise DataError(f"{root}: not a folder or a .csv file")
    for name, kind in ((AUDIOSET_INDEX, "audioset"), (VGGSOUND_CSV, "vggsound"), (LABELS_CSV, "csv")):
        if (root / name).is_file():
            return kind
    return "folder"


def _rows(path: Path):
    """(line number, stripped fields) of every row with a non-blank field; DataError for an unreadable file."""
    reader = None
    try:
        with open(path, newline="", encoding="utf-8-sig") as file:
            reader = csvlib.reader(file, skipinitialspace=True)
            for fields in reader:
                fields = [f.strip() for f in fields]
                if any(fields):
                    yield reader.line_num, fields
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except csvlib.Error as err:
        raise DataError(f"{path}:{reader.line_num if reader else 1}: cannot read ({err})") from None
    except (OSError, UnicodeDecodeError) as err:
        raise DataError(f"{path}: cannot read ({err})") from None


def _clip_ids(relative: list[str]) -> list[str]:
    """Relative paths (``/`` separated) -> unique cache-safe ids (rule: module docstring)."""
    bases = []
    for rel in relative:
        joined = "__".join(part for part in os.path.splitext(rel)[0].split("/") if part)
        safe = _UNSAFE.sub("_", joined)
        safe = "_" + safe[1:] if safe.startswith(".") else safe
        bases.append((safe[:MAX_ID_LENGTH], safe != joined or len(safe) > MAX_ID_LENGTH))
    count = Counter(base.lower() for base, _ in bases)

    def digest(rel: str) -> str:
        return hashlib.sha1(rel.encode("utf-8", "surrogateescape")).hexdigest()[:8]

    return [f"{base}-{digest(rel)}" if changed or count[base.lower()] > 1 else base
            for rel, (base, changed) in zip(relative, bases)]


def _no_clip(source: Path, rejected: list[tuple[str, str]]) -> DataError:
    first = f"; first left out: {rejected[0][0]}: {rejected[0][1]}" if rejected else ""
    return DataError(f"{source}: no clip ({len(rejected)} rows or files left out{first})")


def _read_folder(root: Path) -> ClassifyLayout:
    if not root.is_dir():
        raise DataError(f"{root}: not a folder (the folder layout is ROOT/<class>/<clip>.<ext>)")
    rejected: list[tuple[str, str]] = []
    ignored: list[Path] = []
    found: list[tuple[str, str, Path]] = []  # split ("" = to be carved), class, file
    class_folders = 0

    def visible(folder: Path) -> list[Path]:
        try:
            return sorted(p for p in folder.iterdir() if not p.name.startswith("."))
        except OSError as err:
            raise DataError(f"{folder}: cannot list ({err.strerror})") from None

    def not_in_class(path: Path) -> None:
        if path.suffix.lower() in VIDEO_EXTENSIONS:
            rejected.append((str(path), "video file outside a class folder: left out"))
        else:
            ignored.append(path)

    split_layout = (root / "train").is_dir()
    for entry in visible(root) if split_layout else ():
        if entry.is_dir() and entry.name not in SPLITS:
            rejected.append((str(entry), "not a split folder (train, val, test): left out"))
        elif not entry.is_dir():
            not_in_class(entry)
    for split, base in [(s, root / s) for s in SPLITS if (root / s).is_dir()] if split_layout else [("", root)]:
        for entry in visible(base):
            if not entry.is_dir():
                not_in_class(entry)
                continue
            class_folders += 1
            clips = []
            for folder, dirs, files in os.walk(entry, onerror=lambda err: rejected.append(
                    (str(err.filename), f"cannot list ({err.strerror}): left out"))):
                dirs[:] = sorted(d for d in dirs if not d.startswith("."))
                for name in sorted(f for f in files if not f.startswith(".")):
                    (clips if Path(name).suffix.lower() in VIDEO_EXTENSIONS else ignored).append(Path(folder, name))
            if not clips:
                rejected.append((str(entry), "class folder with no video file: left out"))
            found += [(split, entry.name, path) for path in clips]
    if not class_folders:
        raise DataError(f"{root}: no class folder (expected ROOT/<class>/<clip>.<ext> or ROOT/train/<class>/...)")
    if not found:
        raise _no_clip(root, rejected)
    ids = _clip_ids([path.relative_to(root).as_posix() for _, _, path in found])
    clips = [ClipRecord(i, path, (name,), split, str(path)) for i, (split, name, path) in zip(ids, found)]
    notes = [f"{len(ignored)} non-video files ignored (first: {ignored[0]})"] if ignored else []
    return ClassifyLayout("folder", sorted({name for _, name, _ in found}), False, clips, rejected, notes)


def _read_classes(path: Path) -> list[str]:
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except (OSError, UnicodeDecodeError) as err:
        raise DataError(f"{path}: cannot read ({err})") from None
    first: dict[str, int] = {}
    for number, line in enumerate(lines, start=1):
        name = line.strip()
        if name in first:
            raise DataError(f"{path}:{number}: class {name!r} listed twice (first at line {first[name]})")
        if name:
            first[name] = number
    if not first:
        raise DataError(f"{path}: no class names (one a line)")
    return list(first)


def _read_csv(path: Path, classes_file: Path | None, multi_label: bool | None) -> ClassifyLayout:
    if not path.is_file():
        raise DataError(f"{path}: no such CSV file (the csv layout reads path,label[,split] rows)")
    known = _read_classes(classes_file) if classes_file is not None else None
    allowed = set(known or ())
    rejected: list[tuple[str, str]] = []
    rows, rel, first = [], [], {}
    widths = (2, 3)
    for count, (line, fields) in enumerate(_rows(path)):
        where = f"{path}:{line}"
        if count == 0 and fields[0].lower() == "path":
            if tuple(f.lower() for f in fields) not in CSV_HEADERS:
                raise DataError(f"{where}: expected the header path,label or path,label,split, "
                                f"got {','.join(fields)!r}")
            widths = (len(fields),)
            continue
        name, labels, split = fields[0], (), fields[2] if len(fields) > 2 else ""
        if len(fields) in widths:
            labels = tuple(dict.fromkeys(x.strip() for x in fields[1].split(";") if x.strip()))
        file = Path(name) if os.path.isabs(name) else path.parent / name
        unknown = [x for x in labels if known is not None and x not in allowed]
        if len(fields) not in widths:
            reason = f"expected {' or '.join(','.join(CSV_HEADERS[w - 2]) for w in widths)}, got {len(fields)} fields"
        elif not name or "\0" in name:
            reason = "no path" if not name else f"path {name!r} holds a NUL character"
        elif not labels:
            reason = "no label"
        elif unknown:
            reason = f"label {', '.join(map(repr, unknown))} not in the class list ({classes_file})"
        elif multi_label is False and len(labels) > 1:
            reason = f"{len(labels)} labels in a single-label set (multi_label=False)"
        elif split and split not in SPLITS:
            reason = f"split {split!r} is not one of train, val, test"
        elif (key := os.path.realpath(file)) in first:
            reason = f"duplicate: the same file as {first[key]}"
        else:
            first[key] = where
            rows.append((file, labels, split, where))
            rel.append(os.path.normpath(name).replace(os.sep, "/"))
            continue
        rejected.append((where, reason))
    if not rows:
        raise _no_clip(path, rejected)
    classes = known if known is not None else sorted({x for _, labels, _, _ in rows for x in labels})
    multi = multi_label if multi_label is not None else any(len(labels) > 1 for _, labels, _, _ in rows)
    clips = [ClipRecord(i, *row) for i, row in zip(_clip_ids(rel), rows)]
    return ClassifyLayout("csv", classes, multi, clips, rejected, [])


def _media(root: Path, video_dir: Path | str | None) -> tuple[Path, dict[str, Path]]:
    """The clip folder and its video files by stem, listed once (the first in name order wins)."""
    folder = Path(video_dir) if video_dir is not None else root / "video" if (root / "video").is_dir() else root
    if not folder.is_dir():
        raise DataError(f"{folder}: video_dir is not a folder")
    media: dict[str, Path] = {}
    try:
        with os.scandir(folder) as entries:
            for entry in sorted(entries, key=lambda e: e.name):
                stem, ext = os.path.splitext(entry.name)
                if ext.lower() in VIDEO_EXTENSIONS and not stem.startswith(".") and entry.is_file():
                    media.setdefault(stem, Path(entry.path))
    except OSError as err:
        raise DataError(f"{folder}: cannot list ({err.strerror})") from None
    return folder, media


def _missing_note(clips: list[ClipRecord], media: dict[str, Path], folder: Path) -> list[str]:
    found = set(media.values())
    missing = sum(clip.path not in found for clip in clips)
    if not missing:
        return []
    return [f"{missing} of {len(clips)} clips have no video file in {folder} (prepare lists them as failed)"]


def _read_vggsound(root: Path, video_dir: Path | str | None) -> ClassifyLayout:
    path = root / VGGSOUND_CSV
    if not path.is_file():
        raise DataError(f"{root}: no {VGGSOUND_CSV} (the vggsound layout reads ROOT/{VGGSOUND_CSV})")
    folder, media = _media(root, video_dir)
    clips: list[ClipRecord] = []
    rejected: list[tuple[str, str]] = []
    first: dict[str, str] = {}
    for line, fields in _rows(path):
        if fields[0].startswith("#"):
            continue
        where = f"{path}:{line}"
        ytid, start, label, split = fields if len(fields) == 4 else ("", "", "", "")
        clip_id = f"{ytid}_{int(start):06d}" if start.isascii() and start.isdigit() else ""
        if len(fields) != 4:
            reason = f"expected 4 fields ({','.join(VGGSOUND_FIELDS)}), got {len(fields)}"
        elif not _YOUTUBE_ID.match(ytid):
            reason = f"youtube id {ytid!r} is not a YouTube id"
        elif not clip_id:
            reason = f"start_seconds {start!r} is not a whole number of seconds"
        elif not label:
            reason = "no label"
        elif split not in SPLITS:
            reason = f"split {split!r} is not one of train, val, test"
        elif clip_id in first:
            reason = f"duplicate of {first[clip_id]} ({clip_id})"
        else:
            first[clip_id] = where
            clips.append(ClipRecord(clip_id, media.get(clip_id, folder / f"{clip_id}.mp4"), (label,), split, where))
            continue
        rejected.append((where, reason))
    if not clips:
        raise _no_clip(path, rejected)
    classes = sorted({clip.labels[0] for clip in clips})
    return ClassifyLayout("vggsound", classes, False, clips, rejected, _missing_note(clips, media, folder))


def _read_audioset_index(path: Path) -> dict[str, str]:
    """mid -> display name, in index order."""
    names: dict[str, str] = {}
    for count, (line, fields) in enumerate(_rows(path)):
        if count == 0:
            if tuple(fields) != INDEX_HEADER:
                raise DataError(f"{path}:{line}: expected the header {','.join(INDEX_HEADER)}, got {','.join(fields)!r}")
            continue
        if len(fields) != 3 or fields[0] != str(len(names)) or not fields[1] or not fields[2]:
            raise DataError(f"{path}:{line}: expected {','.join(INDEX_HEADER)} with index {len(names)}, "
                            f"got {','.join(fields)!r}")
        if fields[1] in names or fields[2] in names.values():
            raise DataError(f"{path}:{line}: mid {fields[1]!r} or name {fields[2]!r} listed twice")
        names[fields[1]] = fields[2]
    if not names:
        raise DataError(f"{path}: no class")
    return names


def _read_audioset(root: Path, video_dir: Path | str | None) -> ClassifyLayout:
    segments = [(root / name, split) for name, split in AUDIOSET_SEGMENTS.items() if (root / name).is_file()]
    if not (root / AUDIOSET_INDEX).is_file() or not segments:
        missing = [AUDIOSET_INDEX] * (not (root / AUDIOSET_INDEX).is_file()) + \
            [" or ".join(AUDIOSET_SEGMENTS)] * (not segments)
        raise DataError(f"{root}: not an AudioSet folder, missing {' and '.join(missing)}")
    names = _read_audioset_index(root / AUDIOSET_INDEX)
    folder, media = _media(root, video_dir)
    clips: list[ClipRecord] = []
    rejected: list[tuple[str, str]] = []
    first: dict[str, str] = {}
    for path, split in segments:
        header = False
        for line, fields in _rows(path):
            where = f"{path}:{line}"
            if not header:
                header = [fields[0].lstrip("#").strip(), *fields[1:]] == list(SEGMENTS_HEADER)
                if not header and not fields[0].startswith("#"):
                    raise DataError(f"{where}: expected the header {','.join(SEGMENTS_HEADER)} (or the release's "
                                    f"'# {', '.join(SEGMENTS_HEADER)}' line), got {','.join(fields)!r}")
                continue
            if fields[0].startswith("#"):
                continue
            ytid, start, end, text = fields if len(fields) == 4 else ("", "", "", "")
            try:
                times = (float(start), float(end))
            except ValueError:
                times = (-1.0, -1.0)
            mids = tuple(dict.fromkeys(m.strip() for m in text.split(",") if m.strip()))
            unknown = [m for m in mids if m not in names]
            clip_id = f"{ytid}_{int(times[0]):06d}" if all(math.isfinite(t) and t >= 0 for t in times) else ""
            if len(fields) != 4:
                reason = f"expected 4 fields ({', '.join(SEGMENTS_HEADER)}), got {len(fields)}"
            elif not _YOUTUBE_ID.match(ytid):
                reason = f"YTID {ytid!r} is not a YouTube id"
            elif not clip_id:
                reason = f"start_seconds {start!r} and end_seconds {end!r} must be numbers >= 0"
            elif not mids:
                reason = "no label"
            elif unknown:
                reason = f"unknown label {', '.join(map(repr, unknown))} (not in {AUDIOSET_INDEX})"
            elif clip_id in first:
                reason = f"duplicate of {first[clip_id]} ({clip_id})"
            else:
                first[clip_id] = where
                stems = (clip_id, f"{ytid}_{start}_{end}", f"{ytid}_{int(times[0])}_{int(times[1])}", f"Y{ytid}", ytid)
                file = next((media[s] for s in stems if s in media), folder / f"{clip_id}.mp4")
                clips.append(ClipRecord(clip_id, file, tuple(names[m] for m in mids), split, where))
                continue
            rejected.append((where, reason))
        if not header:
            raise DataError(f"{path}: expected the header {','.join(SEGMENTS_HEADER)}, found no row")
    if not clips:
        raise _no_clip(root, rejected)
    return ClassifyLayout("audioset", list(names.values()), True, clips, rejected, _missing_note(clips, media, folder))


def _round_half_up(fraction: float, n: int) -> int:
    return math.floor(Fraction(str(float(fraction))) * n + Fraction(1, 2))


def _carve(out: ClassifyLayout, fractions: dict[str, float], seed: int) -> None:
    """Give every clip a split, carving the missing val/test from the train pool (rule: module docstring)."""
    given = {clip.split for clip in out.clips}
    unassigned = sum(not clip.split for clip in out.clips)
    missing = [name for name in ("val", "test") if name not in given]
    pool: dict[str, list[int]] = defaultdict(list)
    for i, clip in enumerate(out.clips):
        if clip.split in ("", "train"):
            pool[clip.labels[0]].append(i)
    split = {i: "train" for members in pool.values() for i in members}
    carved = Counter()
    orders: dict[str, list[int]] = {}
    starts: dict[str, int] = {}
    for name in out.classes if missing else ():
        members = sorted(pool.get(name, []), key=lambda i: out.clips[i].clip_id)
        rng = np.random.default_rng([seed, zlib.crc32(name.encode("utf-8", "surrogateescape"))])
        order = orders[name] = [members[j] for j in rng.permutation(len(members))]
        start = 0
        for part in missing:
            take = max(0, min(_round_half_up(fractions[part], len(order)), len(order) - 1 - start))
            for i in order[start:start + take]:
                split[i] = part
            start += take
            carved[part] += take
        starts[name] = start
    for part in missing:  # a small set: every class rounded to 0, but the split must not be empty
        spare = {name: len(order) - 1 - starts[name] for name, order in orders.items()}
        if fractions[part] > 0 and not carved[part] and spare and max(spare.values()) > 0:
            name = max(spare, key=lambda n: (spare[n], -out.classes.index(n)))
            split[orders[name][starts[name]]] = part
            starts[name] += 1
            carved[part] += 1
    out.clips = [replace(clip, split=split.get(i, clip.split)) for i, clip in enumerate(out.clips)]
    if unassigned and given - {""}:
        out.notes.append(f"{unassigned} clips without a split joined the train pool")
    for part in missing:
        out.notes.append(f"{part} carved from train: {carved[part]} clips ({part}_fraction {fractions[part]}, "
                         f"seed {seed}, per class)")
    trained = {name for clip in out.clips if clip.split == "train" for name in clip.labels}
    lacking = [name for name in out.classes if name not in trained]
    if lacking:
        more = ", ..." if len(lacking) > 10 else ""
        out.notes.append(f"{len(lacking)} classes with no training clip: {', '.join(map(repr, lacking[:10]))}{more}")
