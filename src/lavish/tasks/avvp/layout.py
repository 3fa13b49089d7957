"""LLP (Tian, Li, Xu, ECCV 2020), the audio-visual video parsing (AVVP) benchmark: csv parser, labels, layout.

Files of the release (``github:YapengTian/AVVP-ECCV20``, ``data/``), tab-separated, header line first::

    AVVP_train.csv        filename  event_labels                  10,000 clips, weak (video-level) labels
    AVVP_val_pd.csv       filename  event_labels                     649 clips
    AVVP_test_pd.csv      filename  event_labels                   1,200 clips
    AVVP_eval_audio.csv   filename  onset  offset  event_labels    per-second audio ground truth of val + test
    AVVP_eval_visual.csv  filename  onset  offset  event_labels    per-second visual ground truth of val + test

``filename`` is ``<youtube id>_<start>_<end>``; ``event_labels`` is a comma-separated list of class names in the
split files and one name in the eval files. Class index = position in :data:`CLASSES` (the benchmark's
``dataloader.ids_to_multinomial`` list). A second ``t`` of a clip belongs to an eval row when
``onset <= t < offset`` (``GT[idx, onset:offset] = 1`` in the benchmark's ``main_avvp.eval``).

What the real files hold, and what we do with it (decisions; the tests check each on the real files):

* Eval rows are looked up by exact ``filename`` in the benchmark, so a row naming no val/test clip never reaches
  its ground truth. The real eval files have 14 audio and 11 visual such rows over 8 clip names, all typos of
  val/test names (``VMTJRpjbE_150_160`` for ``1-VMTJRpjbE_150_160``, ``19jWnmYnlD8_30_400`` for
  ``19jWnmYnlD8_30_40``, ...). They are ignored here too, and listed in :attr:`LlpAnnotations.ignored`. An eval row
  naming a *train* clip is refused (the splits and the eval files disagree).
* Eval rows whose class is not among the clip's video-level labels (76 audio rows over 44 clips, 51 visual rows
  over 34 clips of the real files) are kept: the benchmark's ground truth is built from the eval rows alone, and
  the video-level labels stay the split file's. The counts are in :attr:`LlpAnnotations.outside_video_labels`.
* ``onset >= offset`` is an empty event, as the benchmark's ``GT[idx, onset:offset]`` slice is empty: the real
  audio file has 5 rows with ``onset == offset`` (e.g. line 48, ``CaC2xvdLC34_250_260  9  9  Speech``; one of
  them names no clip) and one with ``onset > offset`` (line 3770, ``8DF2PxdT5tE_390_400  9  0  Cheering``). They are kept as empty and listed
  in :attr:`LlpAnnotations.empty`; times outside [0, 10] or not integers are refused.
* A class repeated in one ``event_labels`` list (``LcFWKgFphXI_20_30  Clapping,Clapping`` in the test file) counts
  once, as in the benchmark's multi-hot.

Layout on disk (:func:`discover_llp`): the five csv files in ``csv_dir`` when given, else in ``root`` when it holds
``AVVP_train.csv``, else in ``root/data`` (the release's repository). Clips: the first of the folders in
:data:`VIDEO_DIRS` (relative to ``root``) that holds at least one video file (suffix in :data:`VIDEO_SUFFIXES`);
a clip's file is ``<filename>.<suffix>``, or ``<filename[:11]>.<suffix>`` (the youtube id, as the release's
``scripts/download_dataset.py`` names them) when there is no file of the whole name.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from lavish.errors import DataError

CLASSES: tuple[str, ...] = (
    "Speech", "Car", "Cheering", "Dog", "Cat", "Frying_(food)", "Basketball_bounce", "Fire_alarm", "Chainsaw",
    "Cello", "Banjo", "Singing", "Chicken_rooster", "Violin_fiddle", "Vacuum_cleaner", "Baby_laughter",
    "Accordion", "Lawn_mower", "Motorcycle", "Helicopter", "Acoustic_guitar", "Telephone_bell_ringing",
    "Baby_cry_infant_cry", "Blender", "Clapping",
)
"""The 25 event classes in the benchmark's order (``dataloader.ids_to_multinomial``), spelled as in the csv files."""
NUM_CLASSES = len(CLASSES)
NUM_SEGMENTS = 10
"""LLP clips are 10 s long, labelled per 1-s segment."""
SPLITS = ("train", "val", "test")
SPLIT_FILES = {"train": "AVVP_train.csv", "val": "AVVP_val_pd.csv", "test": "AVVP_test_pd.csv"}
EVAL_FILES = ("AVVP_eval_audio.csv", "AVVP_eval_visual.csv")
MODALITIES = ("audio", "visual")
"""Order of the modalities in :data:`EVAL_FILES` and in the per-second label arrays."""
SPLIT_HEADER = ("filename", "event_labels")
EVAL_HEADER = ("filename", "onset", "offset", "event_labels")
VIDEO_SUFFIXES = (".mp4", ".mkv", ".webm", ".avi", ".mov")
VIDEO_DIRS = ("LLP_dataset/video", "data/LLP_dataset/video", "video", "videos", ".")
"""Where clips are looked for, relative to the root, in this order (the first holding a video file wins)."""
YOUTUBE_ID_LENGTH = 11
_CLASS_INDEX = {name: i for i, name in enumerate(CLASSES)}


@dataclass(frozen=True)
class LlpSplit:
    """One split: clips in file order, their weak labels and (val/test) per-second labels."""

    name: str
    path: Path
    filenames: tuple[str, ...]
    video_labels: np.ndarray
    """(n, 25) int64 multi-hot video-level labels from the split file."""
    audio: np.ndarray | None = None
    """(n, 10, 25) int64 per-second audio labels (val/test; None for train)."""
    visual: np.ndarray | None = None
    """(n, 10, 25) int64 per-second visual labels (val/test; None for train)."""

    def __len__(self) -> int:
        return len(self.filenames)

    def segment_labels(self) -> np.ndarray:
        """(n, 2, 10, 25) int64: [audio, visual] per-second labels, -1 everywhere for a split without them."""
        if self.audio is None or self.visual is None:
            return np.full((len(self), len(MODALITIES), NUM_SEGMENTS, NUM_CLASSES), -1, dtype=np.int64)
        return np.stack([self.audio, self.visual], axis=1)


@dataclass(frozen=True)
class LlpAnnotations:
    """The five csv files of one LLP copy."""

    csv_dir: Path
    splits: dict[str, LlpSplit]
    ignored: tuple[str, ...] = ()
    """``"<file>:<line>: <filename>"`` of every eval row naming no val/test clip (not used, as in the benchmark)."""
    outside_video_labels: dict[str, int] = field(default_factory=dict)
    """modality -> eval rows whose class is not among the clip's video-level labels (kept)."""
    empty: tuple[str, ...] = ()
    """``"<file>:<line>: <filename>"`` of every eval row of a val/test clip with onset >= offset (no second)."""

    def __getitem__(self, split: str) -> LlpSplit:
        return self.splits[split]


def _read_rows(path: Path, header: tuple[str, ...]) -> list[tuple[int, list[str]]]:
    """(line number, tab-separated fields) of every non-blank line after the header; DataError for a bad file."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except (OSError, UnicodeDecodeError) as err:
        raise DataError(f"{path}: cannot read ({err})") from None
    lines = text.splitlines()
    found = tuple(f.strip() for f in lines[0].split("\t")) if lines else ()
    if found != header:
        raise DataError(f"{path}:1: expected the tab-separated header {' '.join(header)!r}, got {lines[0] if lines else ''!r}")
    rows = []
    for number, raw in enumerate(lines[1:], start=2):
        if not raw.strip():
            continue
        fields = [f.strip() for f in raw.split("\t")]
        if len(fields) != len(header):
            raise DataError(f"{path}:{number}: expected {len(header)} tab-separated fields "
                            f"({', '.join(header)}), got {len(fields)}: {raw!r}")
        if not fields[0]:
            raise DataError(f"{path}:{number}: empty filename")
        rows.append((number, fields))
    return rows


def _class_index(name: str, where: str) -> int:
    try:
        return _CLASS_INDEX[name]
    except KeyError:
        raise DataError(f"{where}: unknown class {name!r} (LLP has {NUM_CLASSES}: {', '.join(CLASSES)})") from None


def read_split_file(path: Path | str, name: str = "") -> LlpSplit:
    """One of AVVP_train.csv / AVVP_val_pd.csv / AVVP_test_pd.csv (no per-second labels yet)."""
    path = Path(path)
    filenames: list[str] = []
    first: dict[str, int] = {}
    labels = []
    for number, (filename, events) in _read_rows(path, SPLIT_HEADER):
        where = f"{path}:{number}"
        if filename in first:
            raise DataError(f"{where}: duplicate filename {filename!r}, first at line {first[filename]}")
        names = [e.strip() for e in events.split(",")]
        if not events or not all(names):
            raise DataError(f"{where}: empty event label in {events!r}")
        row = np.zeros(NUM_CLASSES, dtype=np.int64)
        row[[_class_index(e, where) for e in names]] = 1
        first[filename] = number
        filenames.append(filename)
        labels.append(row)
    if not filenames:
        raise DataError(f"{path}: no clips")
    return LlpSplit(name, path, tuple(filenames), np.stack(labels))


def read_llp(csv_dir: Path | str) -> LlpAnnotations:
    """Parse the five csv files in ``csv_dir`` (decisions on the real files' quirks: module docstring).

    DataError ``"<file>:<line>: ..."`` for a missing file, a bad header or field count, an unknown class, a
    duplicate filename, a clip in two splits, non-integer times or times outside [0, 10], and an eval row naming a
    train clip.
    """
    csv_dir = Path(csv_dir)
    splits = {name: read_split_file(csv_dir / file, name) for name, file in SPLIT_FILES.items()}
    where_is: dict[str, tuple[str, int]] = {}
    for name, split in splits.items():
        for i, filename in enumerate(split.filenames):
            if filename in where_is:
                other = splits[where_is[filename][0]].path.name
                raise DataError(f"{split.path}: clip {filename!r} (row {i + 1}) is also in {other}")
            where_is[filename] = (name, i)
    per_second = {name: {m: np.zeros((len(splits[name]), NUM_SEGMENTS, NUM_CLASSES), dtype=np.int64)
                         for m in MODALITIES} for name in ("val", "test")}
    ignored: list[str] = []
    empty: list[str] = []
    outside = dict.fromkeys(MODALITIES, 0)
    for modality, file in zip(MODALITIES, EVAL_FILES):
        path = csv_dir / file
        for number, (filename, onset_s, offset_s, event) in _read_rows(path, EVAL_HEADER):
            where = f"{path}:{number}"
            try:
                onset, offset = int(onset_s), int(offset_s)
            except ValueError:
                raise DataError(f"{where}: onset/offset must be integer seconds, got {onset_s!r} and {offset_s!r}") from None
            if not (0 <= onset <= NUM_SEGMENTS and 0 <= offset <= NUM_SEGMENTS):
                raise DataError(f"{where}: onset and offset must lie in [0, {NUM_SEGMENTS}], got onset={onset} offset={offset}")
            index = _class_index(event, where)
            split, row = where_is.get(filename, (None, -1))
            if split is None:
                ignored.append(f"{where}: {filename}")
                continue
            if split == "train":
                raise DataError(f"{where}: clip {filename!r} is in the train split ({splits['train'].path.name}), "
                                "which has no per-second labels")
            if onset >= offset:
                empty.append(f"{where}: {filename}")
            per_second[split][modality][row, onset:offset, index] = 1
            outside[modality] += int(not splits[split].video_labels[row, index])
    for name, arrays in per_second.items():
        splits[name] = LlpSplit(name, splits[name].path, splits[name].filenames, splits[name].video_labels,
                                arrays["audio"], arrays["visual"])
    return LlpAnnotations(csv_dir, splits, tuple(ignored), outside, tuple(empty))


@dataclass(frozen=True)
class LlpLayout:
    """Where the files of one LLP copy are."""

    root: Path
    csv_dir: Path
    video_dir: Path
    media: dict[str, Path]
    """file stem -> video file in ``video_dir``."""

    def video_path(self, filename: str) -> Path:
        """The clip's file: ``<filename>.<suffix>``, else ``<youtube id>.<suffix>``; ``<filename>.mp4`` (not
        existing) when neither is there."""
        found = self.media.get(filename) or self.media.get(filename[:YOUTUBE_ID_LENGTH])
        return found if found is not None else self.video_dir / f"{filename}.mp4"


def _videos_in(folder: Path) -> dict[str, Path]:
    media: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if path.suffix.lower() in VIDEO_SUFFIXES and path.is_file():
            if path.stem in media:
                raise DataError(f"{path}: clip {path.stem!r} also at {media[path.stem].name}; keep one of them")
            media[path.stem] = path
    return media


def discover_llp(root: Path | str, csv_dir: Path | str | None = None) -> LlpLayout:
    """Find the five csv files and the clip folder of an LLP copy (rules: module docstring).

    DataError naming what is missing: a csv file, or any video file in all the folders of :data:`VIDEO_DIRS`.
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: LLP root is not a directory")
    if csv_dir is not None:
        csvs = Path(csv_dir)
    else:
        csvs = root if (root / SPLIT_FILES["train"]).is_file() else root / "data"
    names = [*SPLIT_FILES.values(), *EVAL_FILES]
    missing = [n for n in names if not (csvs / n).is_file()]
    if missing:
        raise DataError(f"{csvs}: not an LLP annotation folder, missing {', '.join(missing)}")
    for sub in VIDEO_DIRS:
        folder = (root / sub) if sub != "." else root
        if folder.is_dir():
            media = _videos_in(folder)
            if media:
                return LlpLayout(root, csvs, folder, media)
    looked = ", ".join(str(root / sub) if sub != "." else str(root) for sub in VIDEO_DIRS)
    raise DataError(f"{root}: no video files ({'/'.join(VIDEO_SUFFIXES)}) in any of {looked}")
