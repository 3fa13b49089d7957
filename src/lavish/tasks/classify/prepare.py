"""``lavish prepare classify``: a labelled set of clips (:mod:`lavish.tasks.classify.layout`) into a prepared cache.

Every clip is decoded once into ``segments`` (default 10) one-second segments spread over the clip, whatever its
length (:func:`lavish.media.decode.decode_clip`: T audio windows spread over the soundtrack by the authors' rule,
each segment's frame at the centre of its window). Besides the generic cache files (frames, audio, ``labels.npy``:
(N,) class indices or (N, K) 0/1, the manifest with the class names and splits, ``failed.tsv``) it writes
``rejected.tsv``: the annotation rows (or files) the reader left out, ``where<TAB>reason``.

What is left out, and where it is said (one line each; the rest of the set is prepared):
* a row the reader refuses (no label, an unknown label, a duplicate path, a split other than train/val/test): in
  ``rejected.tsv`` and the summary;
* a clip that is missing, unreadable, or shorter than one segment (1 s): in ``failed.tsv`` and the summary;
* a clip without an audio stream is kept with silent audio images, and named in the summary.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from lavish import fileio
from lavish.data import cache
from lavish.data.prepare import PrepareReport, open_cache, prepare_videos, write_failed
from lavish.engine.predict import positive_int
from lavish.errors import DataError
from lavish.tasks.classify.layout import TEST_FRACTION, VAL_FRACTION, read_layout

NUM_SEGMENTS = 10
"""segments per clip by default (VGGSound and AudioSet clips last 10 s: one per second)"""
MIN_SECONDS = 1.0
"""a clip shorter than one segment is left out"""
REJECTED = "rejected.tsv"
SHOWN = 20
"""lines of each kind the summary shows (all of them are in the files)"""


@dataclass
class ClassifyReport(PrepareReport):
    """:class:`PrepareReport` plus what the layout reader left out and what it noticed."""

    layout: str = ""
    classes: int = 0
    multi_label: bool = False
    rejected: list[tuple[str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def summary(self) -> str:
        kind = "multi-label" if self.multi_label else "single-label"
        lines = [f"{self.layout} layout: {self.classes} classes, {kind}", *self.notes]
        lines += [f"left out {where}: {reason}" for where, reason in self.rejected[:SHOWN]]
        if len(self.rejected) > SHOWN:
            lines.append(f"... {len(self.rejected) - SHOWN} more rows left out")
        if self.rejected:
            lines.append(f"{len(self.rejected)} rows left out, listed in {self.out / REJECTED}")
        failed = sorted(self.failed.items())
        lines += [f"failed {vid}: {reason}" for vid, reason in failed[:SHOWN]]
        return "\n".join([*lines, super().summary()])


def prepare_classify(root: Path | str, out: Path | str, *, frame_size: tuple[int, int], frontend, workers: int = 1,
                     progress: bool = True, layout: str = "auto", csv: Path | str | None = None,
                     classes_file: Path | str | None = None, multi_label: bool | None = None,
                     video_dir: Path | str | None = None, segments: int = NUM_SEGMENTS,
                     val_fraction: float = VAL_FRACTION, test_fraction: float = TEST_FRACTION,
                     split_seed: int = 0) -> ClassifyReport:
    """Prepare a labelled set (``layout``: auto, folder, csv, vggsound, audioset) into the cache folder ``out``.

    frame_size: (H, W) of the stored frames; frontend: :class:`lavish.media.audio.AudioFrontend`; segments: T
    one-second segments per clip; the rest are the layout reader's settings
    (:func:`lavish.tasks.classify.layout.read_layout`). Raises DataError for a set it cannot read at all (nothing is
    written then) or an ``out`` holding a cache with other settings; bad rows and bad clips are reported.
    """
    start = time.monotonic()
    root, out = Path(root), Path(out)
    segments = positive_int(segments, "segments")
    found = read_layout(root, layout=layout, csv=csv, classes_file=classes_file, multi_label=multi_label,
                        video_dir=video_dir, val_fraction=val_fraction, test_fraction=test_fraction,
                        seed=split_seed)
    if not found.clips:
        raise DataError(f"{root}: no usable clip ({len(found.rejected)} rows left out; first: "
                        f"{': '.join(found.rejected[0]) if found.rejected else 'none'})")
    settings = cache.CacheSettings(task="classify", frame_size=tuple(int(v) for v in frame_size),
                                   frontend=asdict(frontend), num_segments=segments,
                                   source_root=str(root.resolve()))
    open_cache(out, settings)
    videos = {clip.clip_id: clip.path for clip in found.clips}
    report = ClassifyReport(out=out, videos=len(videos), layout=found.kind, classes=len(found.classes),
                            multi_label=found.multi_label, rejected=list(found.rejected), notes=list(found.notes))
    has_audio = prepare_videos(videos, out, frame_size=settings.frame_size, frontend=frontend,
                               num_segments=segments, workers=workers, progress=progress, report=report,
                               min_duration=MIN_SECONDS)
    silent = [clip for clip in found.clips if has_audio.get(clip.clip_id) is False]
    report.without_audio = len(silent)
    report.notes += [f"{clip.path}: no audio stream; its audio images are silence" for clip in silent[:SHOWN]]

    labels_all = found.label_array()
    keep = [i for i, clip in enumerate(found.clips) if clip.clip_id in has_audio]
    new_index = {old: new for new, old in enumerate(keep)}
    items = [{"video_id": found.clips[i].clip_id, "row": i, "category": "; ".join(found.clips[i].labels),
              "has_audio": has_audio[found.clips[i].clip_id]} for i in keep]
    labels = labels_all[keep]
    splits = {name: [new_index[i] for i in rows if i in new_index] for name, rows in found.splits().items()}
    write_failed(out, videos, report.failed)
    fileio.write_text(out / REJECTED, "".join(f"{' '.join(w.split())}\t{' '.join(r.split())}\n"
                                              for w, r in [("where", "reason"), *found.rejected]))
    cache.write_manifest(out, settings, classes=list(found.classes), items=items, labels=labels, splits=splits,
                         failed=report.failed)
    report.items = len(items)
    report.seconds = time.monotonic() - start
    return report

