"""AVE (Tian et al., ECCV 2018): annotation parser, split files, per-segment labels (spec sections 3.1, 5.1).

Layout of the AVE distribution (``AVE_Dataset/``)::

    AVE/<video_id>.mp4                      the 10-s videos
    Annotations.txt                         Category&VideoID&Quality&StartTime&EndTime, one row a line
    trainSet.txt, valSet.txt, testSet.txt   same format, with the header line (original release)
    train_order.h5, val_order.h5, test_order.h5   dataset 'order': row indices into Annotations.txt (LAVISH repo)

Rows, not video ids, are the unit: the real Annotations.txt lists 45 videos more than once, each time with a
different category (one row per event; 4,143 rows, 4,097 videos), and the ``*_order.h5`` files index rows. A repeated (category, video id) pair
is refused as a duplicate.

Labels: class index = order of first appearance of the category in Annotations.txt (0 "Church bell" ...
27 "Mandolin" for the real file), background = ``len(classes)``. Segment ``t`` (1 s) belongs to the event when
``start <= t < end`` (this rebuilds ``labels_closs.h5`` / ``mil_labels.h5`` exactly; the authors' ``labels.h5``
is the one-hot of :func:`segment_labels`).

Differences from the authors' code: the authors read Annotations.txt with pandas and trust every field; here a
malformed line, times outside [0, 10] or start > end stop with a :class:`DataError` naming the file and line.
Split files: ``trainSet.txt``/``valSet.txt``/``testSet.txt`` are used when all three are present, else the
``*_order.h5`` files (LAVISH uses the latter; the two describe the same AVE split).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from lavish.errors import DataError

NUM_SEGMENTS = 10
"""AVE videos are 10 s long, labelled per 1-s segment."""
HEADER = ("Category", "VideoID", "Quality", "StartTime", "EndTime")
SPLITS = ("train", "val", "test")
SPLIT_TEXT_FILES = {"train": "trainSet.txt", "val": "valSet.txt", "test": "testSet.txt"}
SPLIT_ORDER_FILES = {"train": "train_order.h5", "val": "val_order.h5", "test": "test_order.h5"}
ANNOTATIONS_FILE = "Annotations.txt"
VIDEO_DIR = "AVE"
VIDEO_SUFFIX = ".mp4"


@dataclass(frozen=True)
class AveRecord:
    """One line of an AVE annotation file: one event of one video."""

    category: str
    video_id: str
    quality: str
    start: int
    """First event segment (seconds, inclusive)."""
    end: int
    """End of the event (seconds, exclusive)."""
    line: int
    """1-based line number in the file it was read from."""

    @property
    def key(self) -> tuple[str, str]:
        """(category, video_id): unique within one annotation file."""
        return (self.category, self.video_id)


def parse_annotation_file(path: Path | str) -> list[AveRecord]:
    """Read an AVE ``&``-separated file (header line optional; blank lines ignored).

    Raises :class:`DataError` ``"<file>:<line>: ..."`` for a line without 5 fields, non-integer times,
    times outside [0, 10], start > end, or an empty category / video id. ``start == end`` is accepted: the real
    Annotations.txt has one such row (line 27, ``Church bell&VWi2ENBuTbw&good&0&0``), all of whose segments are
    background in ``labels_closs.h5``.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except (OSError, UnicodeDecodeError) as err:
        raise DataError(f"{path}: cannot read ({err})") from None
    records = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line:
            continue
        fields = [f.strip() for f in line.split("&")]
        if number == 1 and tuple(fields) == HEADER:
            continue
        where = f"{path}:{number}"
        if len(fields) != 5:
            raise DataError(f"{where}: expected 5 '&'-separated fields (Category&VideoID&Quality&StartTime&EndTime), got {len(fields)}: {line!r}")
        category, video_id, quality, start_s, end_s = fields
        if not category or not video_id:
            raise DataError(f"{where}: empty category or video id: {line!r}")
        try:
            start, end = int(start_s), int(end_s)
        except ValueError:
            raise DataError(f"{where}: start/end must be integer seconds, got {start_s!r} and {end_s!r}") from None
        if not (0 <= start <= end <= NUM_SEGMENTS):
            raise DataError(f"{where}: need 0 <= start <= end <= {NUM_SEGMENTS}, got start={start} end={end}")
        records.append(AveRecord(category, video_id, quality, start, end, number))
    return records


@dataclass(frozen=True)
class AveAnnotations:
    """All rows of Annotations.txt and the class list they define."""

    path: Path
    records: tuple[AveRecord, ...]
    classes: tuple[str, ...]
    """Event classes in order of first appearance; background is ``len(classes)``."""
    _index: dict[tuple[str, str], int] = field(default_factory=dict, repr=False, compare=False)

    @property
    def num_classes(self) -> int:
        """Event classes plus background (29 for AVE)."""
        return len(self.classes) + 1

    @property
    def background(self) -> int:
        return len(self.classes)

    def row_of(self, record: AveRecord, source: Path) -> int:
        """Row index in Annotations.txt of the same (category, video id), or DataError naming ``source``."""
        if record.category not in self.classes:
            raise DataError(f"{source}:{record.line}: unknown category {record.category!r} (not in {self.path})")
        try:
            return self._index[record.key]
        except KeyError:
            raise DataError(f"{source}:{record.line}: video {record.video_id!r} ({record.category}) is not in {self.path}") from None

    def segment_labels(self) -> np.ndarray:
        """(rows, 10) int64 class per segment, background elsewhere."""
        return segment_labels(self.records, self.classes)

    def video_labels(self) -> np.ndarray:
        """(rows,) int64 event class of each row."""
        lookup = {c: i for i, c in enumerate(self.classes)}
        return np.array([lookup[r.category] for r in self.records], dtype=np.int64)


def read_annotations(path: Path | str) -> AveAnnotations:
    """Parse Annotations.txt; classes in first-appearance order; refuses duplicate (category, id) rows."""
    path = Path(path)
    records = parse_annotation_file(path)
    if not records:
        raise DataError(f"{path}: no annotation rows")
    index: dict[tuple[str, str], int] = {}
    classes: dict[str, None] = {}
    for row, rec in enumerate(records):
        if rec.key in index:
            first = records[index[rec.key]].line
            raise DataError(f"{path}:{rec.line}: duplicate row for video {rec.video_id!r} ({rec.category}), first at line {first}")
        index[rec.key] = row
        classes.setdefault(rec.category, None)
    return AveAnnotations(path, tuple(records), tuple(classes), index)


def segment_labels(records: "list[AveRecord] | tuple[AveRecord, ...]", classes: "tuple[str, ...] | list[str]",
                   num_segments: int = NUM_SEGMENTS) -> np.ndarray:
    """(rows, num_segments) int64: class of the event for ``start <= t < end``, ``len(classes)`` elsewhere."""
    lookup = {c: i for i, c in enumerate(classes)}
    labels = np.full((len(records), num_segments), len(classes), dtype=np.int64)
    for row, rec in enumerate(records):
        labels[row, rec.start:rec.end] = lookup[rec.category]
    return labels


def one_hot(labels: np.ndarray, num_classes: int) -> np.ndarray:
    """(...,) int -> (..., num_classes) float32 one-hot (e.g. (rows, 10) -> the authors' labels.h5 (rows, 10, 29))."""
    labels = np.asarray(labels)
    return (labels[..., None] == np.arange(num_classes)).astype(np.float32)


def event_mask(labels: np.ndarray, background: int) -> np.ndarray:
    """(rows, T) float32: 1 inside the event (equals the authors' labels_closs.h5)."""
    return (np.asarray(labels) != background).astype(np.float32)


def read_order_file(path: Path | str, num_rows: int) -> np.ndarray:
    """(n,) int64 row indices from an ``*_order.h5`` file (dataset ``order``), range-checked."""
    import h5py

    path = Path(path)
    try:
        with h5py.File(path, "r") as f:
            if "order" not in f:
                raise DataError(f"{path}: no dataset 'order' (found {', '.join(f.keys()) or 'nothing'})")
            order = np.asarray(f["order"][()], dtype=np.int64).reshape(-1)
    except OSError as err:
        raise DataError(f"{path}: not a readable HDF5 file ({err})") from None
    bad = order[(order < 0) | (order >= num_rows)]
    if bad.size:
        raise DataError(f"{path}: row index {int(bad[0])} outside Annotations.txt (0..{num_rows - 1})")
    if np.unique(order).size != order.size:
        raise DataError(f"{path}: repeated row indices")
    return order


@dataclass(frozen=True)
class AveLayout:
    """Where the files of one AVE copy are."""

    root: Path
    annotations: Path
    video_dir: Path
    split_source: str
    """``"txt"`` (trainSet/valSet/testSet.txt) or ``"h5"`` (*_order.h5)."""

    def video_path(self, video_id: str) -> Path:
        return self.video_dir / f"{video_id}{VIDEO_SUFFIX}"


def discover_ave(root: Path | str) -> AveLayout:
    """Find Annotations.txt, the AVE/ video folder and a complete set of split files under ``root``.

    Raises :class:`DataError` listing exactly what is missing.
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: AVE root is not a directory")
    missing = []
    annotations = root / ANNOTATIONS_FILE
    if not annotations.is_file():
        missing.append(ANNOTATIONS_FILE)
    video_dir = root / VIDEO_DIR
    if not video_dir.is_dir():
        missing.append(f"{VIDEO_DIR}/ (folder of <video_id>{VIDEO_SUFFIX})")
    txt = all((root / n).is_file() for n in SPLIT_TEXT_FILES.values())
    h5 = all((root / n).is_file() for n in SPLIT_ORDER_FILES.values())
    if not (txt or h5):
        missing.append(
            "split files (" + "/".join(SPLIT_TEXT_FILES.values()) + " or " + "/".join(SPLIT_ORDER_FILES.values()) + ")"
        )
    if missing:
        raise DataError(f"{root}: not an AVE dataset folder, missing {'; '.join(missing)}")
    return AveLayout(root, annotations, video_dir, "txt" if txt else "h5")


def read_splits(layout: AveLayout, annotations: AveAnnotations) -> dict[str, np.ndarray]:
    """Split name -> (n,) int64 sorted-as-listed row indices into Annotations.txt; splits must be disjoint."""
    splits: dict[str, np.ndarray] = {}
    for name in SPLITS:
        if layout.split_source == "txt":
            path = layout.root / SPLIT_TEXT_FILES[name]
            rows = [annotations.row_of(rec, path) for rec in parse_annotation_file(path)]
            if len(set(rows)) != len(rows):
                raise DataError(f"{path}: the same row is listed twice")
            splits[name] = np.array(rows, dtype=np.int64)
        else:
            splits[name] = read_order_file(layout.root / SPLIT_ORDER_FILES[name], len(annotations.records))
    seen: dict[int, str] = {}
    for name, rows in splits.items():
        for row in rows.tolist():
            if row in seen:
                rec = annotations.records[row]
                raise DataError(
                    f"{layout.root}: video {rec.video_id!r} (line {rec.line} of {annotations.path.name}) is in both "
                    f"the {seen[row]} and the {name} split"
                )
            seen[row] = name
    return splits


def read_extra_features(path: Path | str, num_rows: int, num_segments: int = NUM_SEGMENTS) -> np.ndarray:
    """(rows, T, E) float32 per-second features from an AVE-style h5 file (dataset ``avadataset``, indexed by
    annotation row, e.g. the release's VGGish ``audio_feature.h5``: (4143, 10, 128)), checked against the
    annotations (Table 8). DataError naming the file for anything else."""
    import h5py

    path = Path(path)
    if not path.is_file():
        raise DataError(f"extra audio features file {path} does not exist")
    try:
        with h5py.File(path, "r") as f:
            if "avadataset" not in f:
                raise DataError(f"{path}: no dataset 'avadataset' (has {', '.join(f.keys()) or 'nothing'})")
            data = np.asarray(f["avadataset"], dtype=np.float32)
    except OSError as err:
        raise DataError(f"{path}: not a readable HDF5 file ({err})") from None
    if data.ndim != 3 or data.shape[0] < num_rows or data.shape[1] != num_segments:
        raise DataError(f"{path}: avadataset has shape {data.shape}, expected ({num_rows}, {num_segments}, E)")
    if not np.isfinite(data).all():
        raise DataError(f"{path}: avadataset holds NaN or infinite values")
    return data
