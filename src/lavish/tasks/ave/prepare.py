"""``lavish prepare ave``: an AVE folder (:mod:`lavish.tasks.ave.layout`) into a prepared cache."""

from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

from lavish import fileio
from lavish.data import cache
from lavish.data.prepare import PrepareReport, open_cache, prepare_videos, write_failed
from lavish.tasks.ave import layout as ave


def prepare_ave(root: Path | str, out: Path | str, *, frame_size: tuple[int, int], frontend, workers: int = 1,
                progress: bool = True, extra_audio_features: Path | str | None = None) -> PrepareReport:
    """Prepare an AVE dataset folder (layout in :mod:`lavish.tasks.ave.layout`) into the cache folder ``out``.

    frame_size: (H, W) of the stored frames; frontend: :class:`lavish.media.audio.AudioFrontend`;
    extra_audio_features: an h5 file of per-second features indexed by annotation row (Table 8: the release's
    VGGish ``audio_feature.h5``), stored as ``extra_audio.npy`` aligned with the cache's items. Raises
    DataError for a bad dataset folder or features file, or an ``out`` holding a cache with other settings; bad
    videos are reported, not raised.
    """
    start = time.monotonic()
    root, out = Path(root), Path(out)
    layout = ave.discover_ave(root)
    annotations = ave.read_annotations(layout.annotations)
    splits = ave.read_splits(layout, annotations)
    extra = None
    if extra_audio_features is not None:  # checked before any video is decoded
        extra = ave.read_extra_features(extra_audio_features, len(annotations.records))
    settings = cache.CacheSettings(
        task="ave",
        frame_size=tuple(int(v) for v in frame_size),
        frontend=asdict(frontend),
        num_segments=ave.NUM_SEGMENTS,
        source_root=str(root.resolve()),
    )
    open_cache(out, settings)
    videos = {rec.video_id: layout.video_path(rec.video_id) for rec in annotations.records}
    report = PrepareReport(out=out, videos=len(videos))
    has_audio = prepare_videos(videos, out, frame_size=settings.frame_size, frontend=frontend,
                               num_segments=ave.NUM_SEGMENTS, workers=workers, progress=progress, report=report)

    labels_all = annotations.segment_labels()
    item_of_row: dict[int, int] = {}
    items = []
    for row, rec in enumerate(annotations.records):
        if rec.video_id in has_audio:
            item_of_row[row] = len(items)
            items.append({"video_id": rec.video_id, "row": row, "category": rec.category,
                          "has_audio": has_audio[rec.video_id]})
    labels = labels_all[list(item_of_row)] if items else np.zeros((0, ave.NUM_SEGMENTS), np.int64)
    item_splits = {name: [item_of_row[r] for r in rows.tolist() if r in item_of_row] for name, rows in splits.items()}
    if extra is not None:
        fileio.save_npy(out / cache.EXTRA_AUDIO, extra[list(item_of_row)])
    else:
        (out / cache.EXTRA_AUDIO).unlink(missing_ok=True)  # a rerun without the option: the cache has none
    write_failed(out, videos, report.failed)
    cache.write_manifest(out, settings, classes=list(annotations.classes), items=items, labels=labels,
                         splits=item_splits, failed=report.failed)
    report.items = len(items)
    report.seconds = time.monotonic() - start
    return report
