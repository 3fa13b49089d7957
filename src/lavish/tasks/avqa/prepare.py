"""``lavish prepare avqa``: a MUSIC-AVQA folder into a prepared cache."""

from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

from lavish import fileio
from lavish.data import cache
from lavish.data.prepare import PrepareReport, open_cache, prepare_videos, write_failed
from lavish.errors import DataError


AVQA_SPLITS = ("train", "val", "test")
AVQA_VIDEO_SUFFIXES = (".mp4", ".mkv", ".webm", ".avi", ".mov")
AVQA_NUM_SEGMENTS = 10


def discover_avqa(root: Path) -> tuple[dict[str, Path], dict[str, Path]]:
    """(split -> json file, video id -> media file) of a MUSIC-AVQA folder; DataError listing what is missing.

    Accepted layout (the official release unpacked under ``root``)::

        avqa-train.json, avqa-val.json, avqa-test.json     at ``root`` or in ``root/json/``
        videos/<video_id>.mp4                              or one folder deeper, e.g. the release's
        videos/MUSIC-AVQA-videos-Real/<video_id>.mp4       and videos/MUSIC-AVQA-videos-Synthetic/<id>.mp4

    Suffixes .mp4, .mkv, .webm, .avi, .mov; the file stem is the video id. The same id twice is refused.
    """
    if not root.is_dir():
        raise DataError(f"{root}: MUSIC-AVQA root is not a directory")
    jsons, missing = {}, []
    for split in AVQA_SPLITS:
        name = f"avqa-{split}.json"
        found = [p for p in (root / name, root / "json" / name) if p.is_file()]
        if found:
            jsons[split] = found[0]
        else:
            missing.append(name)
    video_dir = root / "videos"
    if not video_dir.is_dir():
        missing.append("videos/ (folder of <video_id>.mp4)")
    if missing:
        raise DataError(f"{root}: not a MUSIC-AVQA folder, missing {'; '.join(missing)}")
    media: dict[str, Path] = {}
    for path in sorted([*video_dir.glob("*"), *video_dir.glob("*/*")]):
        if path.suffix.lower() in AVQA_VIDEO_SUFFIXES and path.is_file():
            if path.stem in media:
                raise DataError(f"{path}: video id {path.stem!r} also at {media[path.stem]}; keep one of them")
            media[path.stem] = path
    return jsons, media


def prepare_avqa(root: Path | str, out: Path | str, *, frame_size: tuple[int, int], frontend, workers: int = 1,
                 progress: bool = True) -> PrepareReport:
    """Prepare a MUSIC-AVQA folder (layout: :func:`discover_avqa`) into the cache folder ``out``.

    Every video named by a question of the three json files is decoded into 10 segments spread over the whole
    video with the "avqa" front-end: the authors' 1.95-s audio windows at ``linspace(0, n - 2.05 s, 10)`` (spec
    2.2, 6.4 s apart on the 60-s videos) and each segment's frame at the centre of its window
    (:func:`lavish.media.decode.frame_times`; the authors take 10 of the 1-fps frames at ``linspace(1, n, 10)``,
    up to 1.4 s from their windows). ``lavish ask`` decodes at the same instants. The json files are copied into
    the cache (``avqa-<split>.json``) so training needs only the cache; every record is parsed and tokenised first,
    so a bad question stops the run in one line naming the file and question. A question whose video is missing or cannot be decoded is left out
    (the video is listed in failed.tsv). Cache items are videos (``videos.json``); the manifest's ``classes`` is the
    answer vocabulary of the training file and its ``splits`` map each split to the items its questions use.
    """
    from lavish.tasks.avqa import layout as avqa

    start = time.monotonic()
    root, out = Path(root), Path(out)
    jsons, media = discover_avqa(root)
    records = {split: avqa.read_avqa_json(path) for split, path in jsons.items()}
    for recs in records.values():
        for rec in recs:
            avqa.tokenize(rec)
    settings = cache.CacheSettings(
        task="avqa",
        frame_size=tuple(int(v) for v in frame_size),
        frontend=asdict(frontend),
        num_segments=AVQA_NUM_SEGMENTS,
        source_root=str(root.resolve()),
    )
    open_cache(out, settings)
    ids = list(dict.fromkeys(rec.video_id for recs in records.values() for rec in recs))
    videos = {vid: media.get(vid, root / "videos" / f"{vid}.mp4") for vid in ids}
    report = PrepareReport(out=out, videos=len(videos))
    has_audio = prepare_videos(videos, out, frame_size=settings.frame_size, frontend=frontend,
                               num_segments=AVQA_NUM_SEGMENTS, workers=workers, progress=progress, report=report)
    kept = [vid for vid in ids if vid in has_audio]
    item_of = {vid: i for i, vid in enumerate(kept)}
    items = [{"video_id": vid, "has_audio": has_audio[vid]} for vid in kept]
    splits = {split: sorted({item_of[r.video_id] for r in recs if r.video_id in item_of})
              for split, recs in records.items()}
    for split, path in jsons.items():
        fileio.write_bytes(out / f"avqa-{split}.json", path.read_bytes())
    answers = list(avqa.build_answer_vocab(records["train"]).tokens)
    write_failed(out, videos, report.failed)
    cache.write_manifest(out, settings, classes=answers, items=items,
                         labels=np.zeros((len(items), 0), np.int64), splits=splits, failed=report.failed)
    report.items = sum(r.video_id in item_of for recs in records.values() for r in recs)
    report.seconds = time.monotonic() - start
    return report
