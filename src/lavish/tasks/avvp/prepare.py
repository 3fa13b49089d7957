"""``lavish prepare avvp``: an LLP folder (:mod:`lavish.tasks.avvp.layout`) into a prepared cache."""

from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

from lavish import fileio
from lavish.data import cache
from lavish.data.prepare import PrepareReport, open_cache, prepare_videos, write_failed
from lavish.errors import DataError


def prepare_avvp(root: Path | str, out: Path | str, *, frame_size: tuple[int, int], frontend, workers: int = 1,
                 progress: bool = True, csv_dir: Path | str | None = None) -> PrepareReport:
    """Prepare an LLP copy (layout and csv rules: :mod:`lavish.tasks.avvp.layout`) into the cache folder ``out``.

    Every clip of the three split files is decoded as an AVE video (10 one-second segments, each frame at the
    centre of its second's audio window). Items are clips, train then val then test in file order
    (``videos.json``: video_id = the csv ``filename``, split, has_audio); the manifest's classes are
    :data:`lavish.tasks.avvp.layout.CLASSES`. ``labels.npy`` (items, 2, 10, 25) int64 holds the [audio, visual] per-second
    labels of val/test clips and -1 everywhere for train clips (unknown); ``video_labels.npy`` (items, 25) int64
    the weak labels of the split files. A clip whose file is missing (``file not found``) or cannot be decoded is
    listed in failed.tsv and left out; DataError when none of the clips has a file, for bad csv files, or an
    ``out`` holding a cache with other settings.
    """
    from lavish.tasks.avvp import layout as llp

    start = time.monotonic()
    root, out = Path(root), Path(out)
    layout = llp.discover_llp(root, csv_dir)
    annotations = llp.read_llp(layout.csv_dir)
    videos = {name: layout.video_path(name) for split in llp.SPLITS for name in annotations[split].filenames}
    if not any(path.is_file() for path in videos.values()):
        raise DataError(f"{layout.video_dir}: none of the {len(videos)} clips of {layout.csv_dir} is there "
                        f"(expected <filename>.mp4 or <youtube id>.mp4, e.g. {next(iter(videos))}.mp4)")
    settings = cache.CacheSettings(
        task="avvp",
        frame_size=tuple(int(v) for v in frame_size),
        frontend=asdict(frontend),
        num_segments=llp.NUM_SEGMENTS,
        source_root=str(root.resolve()),
    )
    open_cache(out, settings)
    report = PrepareReport(out=out, videos=len(videos))
    has_audio = prepare_videos(videos, out, frame_size=settings.frame_size, frontend=frontend,
                               num_segments=llp.NUM_SEGMENTS, workers=workers, progress=progress, report=report)
    items: list[dict] = []
    splits: dict[str, list[int]] = {}
    labels, weak = [], []
    for name in llp.SPLITS:
        split = annotations[name]
        keep = [i for i, clip in enumerate(split.filenames) if clip in has_audio]
        splits[name] = list(range(len(items), len(items) + len(keep)))
        items += [{"video_id": split.filenames[i], "split": name, "has_audio": has_audio[split.filenames[i]]}
                  for i in keep]
        labels.append(split.segment_labels()[keep])
        weak.append(split.video_labels[keep])
    write_failed(out, videos, report.failed)
    fileio.save_npy(out / cache.VIDEO_LABELS, np.concatenate(weak).astype(np.int64))  # before the manifest
    cache.write_manifest(out, settings, classes=list(llp.CLASSES), items=items, labels=np.concatenate(labels),
                         splits=splits, failed=report.failed)
    report.items = len(items)
    report.seconds = time.monotonic() - start
    return report
