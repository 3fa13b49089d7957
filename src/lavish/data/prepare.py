"""``lavish prepare``: decode every video of a dataset once into a prepared cache (:mod:`lavish.data.cache`).

Each video is decoded by :func:`lavish.media.decode.decode_clip` (``num_segments`` frames at the backbone's
frame size and the front-end's spectrograms, spec 2.2-2.3) in a pool of worker processes (spawn-safe). The run
is resumable: a video whose ``done/<id>.json`` exists is skipped; every file goes through a temp file and a
rename, so ``kill -9`` leaves nothing half-written. One bad video never stops the run: it is listed in
``failed.tsv`` (video id, path, reason) and its annotation rows are left out of the manifest's splits.

Where we differ from the authors: they pre-extract frames (ffmpeg, 3 fps jpgs) and wav files with separate
scripts and decode pngs/jpgs and wavs in every epoch; we decode the mp4 once, at 1 frame per segment, and
keep only what the model reads.
"""

from __future__ import annotations

import sys
import time
import warnings
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from multiprocessing import get_context
from pathlib import Path

import numpy as np

from lavish import fileio
from lavish.data import ave, cache
from lavish.errors import DataError, LavishError, WriteError

FILE_NOT_FOUND = "file not found"


@dataclass
class PrepareReport:
    """Outcome of one prepare run."""

    out: Path
    videos: int = 0
    """Distinct videos named by the annotations."""
    prepared: int = 0
    """Decoded in this run."""
    skipped: int = 0
    """Already in the cache from an earlier run."""
    failed: dict[str, str] = field(default_factory=dict)
    """video id -> reason."""
    without_audio: int = 0
    """Videos in the cache that have no audio stream (silent spectrograms)."""
    items: int = 0
    """Annotation rows in the manifest (rows of failed videos excluded)."""
    seconds: float = 0.0

    @property
    def usable(self) -> int:
        return self.prepared + self.skipped

    def summary(self) -> str:
        lines = [
            f"prepared {self.prepared}, skipped {self.skipped} (already done), failed {len(self.failed)} "
            f"of {self.videos} videos in {self.seconds:.1f} s -> {self.out}",
            f"{self.items} annotation rows in {self.out / cache.MANIFEST}",
        ]
        if self.without_audio:
            lines.append(f"{self.without_audio} videos have no audio stream (silent spectrograms)")
        if self.failed:
            lines.append(f"failures listed in {self.out / cache.FAILED}")
        return "\n".join(lines)


def _decode_one(video_id: str, path: str, out: str, frame_size: tuple[int, int], frontend, num_segments: int):
    """Worker: decode one video into the cache. Returns (video_id, reason or None, has_audio)."""
    from lavish.media.decode import decode_clip

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "no audio stream": reported through has_audio
            clip = decode_clip(path, num_segments=num_segments, frame_size=frame_size, frontend=frontend)
        cache.write_video(Path(out), video_id, clip.frames, clip.spectrograms,
                          has_audio=clip.has_audio, duration=clip.duration)
        return video_id, None, bool(clip.has_audio)
    except WriteError:
        raise  # the disk, not the video: stop the run (it resumes), do not list the video as failed
    except LavishError as err:
        return video_id, str(err), False
    except Exception as err:  # noqa: BLE001  one broken file must not stop the run; its reason goes to failed.tsv
        return video_id, f"{type(err).__name__}: {err}", False


def run_jobs(fn, jobs: list[tuple], workers: int, collect) -> None:
    """``collect(fn(*job))`` for every job, here or in a spawn pool of ``workers`` processes (results as they come).

    An exception from a job (a write that failed: the disk is full) stops the run: jobs not started are cancelled.
    """
    if workers <= 1 or len(jobs) <= 1:
        for job in jobs:
            collect(fn(*job))
        return
    with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn")) as pool:
        futures = [pool.submit(fn, *job) for job in jobs]
        try:
            for future in as_completed(futures):
                collect(future.result())
        except BaseException:
            pool.shutdown(wait=True, cancel_futures=True)
            raise


def open_cache(out: Path, settings: cache.CacheSettings) -> int:
    """Create ``out`` or reopen a cache made with the same settings (else DataError); returns stale temp files removed."""
    out.mkdir(parents=True, exist_ok=True)
    existing = cache.read_settings(out)
    if existing is not None:
        diff = settings.differences(existing)
        if diff:
            raise DataError(
                f"{out}: holds a cache prepared with other settings ({'; '.join(diff)}); "
                f"choose another --out folder or delete this one"
            )
    elif any(out.iterdir()):
        raise DataError(f"{out}: folder is not empty and is not a lavish cache; choose an empty or new --out folder")
    else:
        fileio.write_json(out / cache.SETTINGS, settings.to_json())
    return cache.remove_stale_temp_files(out)


def prepare_videos(videos: dict[str, Path], out: Path, *, frame_size: tuple[int, int], frontend, num_segments: int,
                   workers: int = 1, progress: bool = True, report: PrepareReport) -> dict[str, bool]:
    """Decode every video not yet done into ``out``; fills ``report``; returns video id -> has_audio for done ones."""
    has_audio: dict[str, bool] = {}
    todo = []
    for vid, path in videos.items():
        cache.check_video_id(vid)
        record = cache.video_done(out, vid)
        if record is not None:
            has_audio[vid] = bool(record.get("has_audio", True))
            report.skipped += 1
        elif not path.is_file():
            report.failed[vid] = FILE_NOT_FOUND
        else:
            todo.append((vid, str(path)))

    from tqdm import tqdm

    bar = tqdm(total=len(todo), desc="prepare", unit="video", disable=not progress, file=sys.stderr)
    args = (str(out), tuple(frame_size), frontend, num_segments)

    def collect(result) -> None:
        vid, reason, audio = result
        if reason is None:
            has_audio[vid] = audio
            report.prepared += 1
        else:
            report.failed[vid] = reason
        bar.update(1)

    try:
        run_jobs(_decode_one, [(vid, path, *args) for vid, path in todo], workers, collect)
    finally:
        bar.close()
    report.without_audio = sum(not a for a in has_audio.values())
    return has_audio


def write_failed(out: Path, videos: dict[str, Path], failed: dict[str, str]) -> None:
    """failed.tsv: header then ``video_id<TAB>path<TAB>reason`` (tabs/newlines in reasons replaced by spaces)."""
    lines = ["video_id\tpath\treason"]
    for vid in sorted(failed):
        reason = " ".join(failed[vid].split())
        lines.append(f"{vid}\t{videos[vid]}\t{reason}")
    fileio.write_text(out / cache.FAILED, "\n".join(lines) + "\n")


def prepare_ave(root: Path | str, out: Path | str, *, frame_size: tuple[int, int], frontend, workers: int = 1,
                progress: bool = True, extra_audio_features: Path | str | None = None) -> PrepareReport:
    """Prepare an AVE dataset folder (layout in :mod:`lavish.data.ave`) into the cache folder ``out``.

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



# --------------------------------------------------------------------------------------------------- AVQA
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
    from lavish.data import avqa

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


#: task -> prepare function (same keyword signature); the CLI looks tasks up here


# ----------------------------------------------------------------------------------------------------- AVSBench
AVS_INFO = "avs.json"
"""Extra record of an AVS cache: {"subset", "mask_size": [H, W]}; written before the manifest."""


def _avs_subset(root: Path) -> str:
    """The AVSBench subset whose meta csv is in ``root`` (the ``Single-source`` or ``Multi-sources`` folder)."""
    from lavish.data import avs

    found = [name for name, layout in avs.SUBSETS.items() if (root / layout.csv).is_file()]
    if len(found) != 1:
        csvs = " or ".join(layout.csv for layout in avs.SUBSETS.values())
        what = "both" if found else "neither"
        raise DataError(f"{root}: holds {what} of {csvs}; pass the subset's own folder (AVSBench Single-source/ "
                        f"for S4, Multi-sources/ for MS3)")
    return found[0]


def _prepare_avs_one(record, out: str, frame_size: tuple[int, int], frontend, mask_size: tuple[int, int]):
    """Worker: frames (resized to frame_size as the authors' model does, :func:`lavish.data.avs.resize_frames`),
    masks (nearest to mask_size), 5 spectrograms of the wav.

    Returns (name, reason or None)."""
    from PIL import Image

    from lavish.data import avs
    from lavish.media.audio import SAMPLE_RATE, segment_spectrograms
    from lavish.media.decode import read_audio

    try:
        sizes = [avs.image_size(p) for p in record.frames]
        for path, size in zip(record.frames, sizes):
            if size != sizes[0]:
                raise DataError(f"{path}: frame size {size} differs from {record.frames[0].name} {sizes[0]}")
        frames = []
        for path in record.frames:
            with Image.open(path) as img:
                frames.append(np.asarray(img.convert("RGB"), dtype=np.uint8))
        frames = avs.resize_frames(np.stack(frames), frame_size)
        masks = np.zeros((avs.NUM_FRAMES, *mask_size), np.uint8)
        for k, path in enumerate(record.masks):
            if path is None:
                continue
            mask = avs.load_mask(path, sizes[0]).astype(np.uint8)
            if mask.shape != tuple(mask_size):
                mask = np.asarray(Image.fromarray(mask).resize((mask_size[1], mask_size[0]), Image.NEAREST))
            masks[k] = mask
        try:
            wave = read_audio(record.audio)
        except LavishError as err:
            raise DataError(str(err)) from None
        seconds = wave.size / SAMPLE_RATE
        if seconds + 1e-3 < avs.CLIP_SECONDS:
            raise DataError(f"{record.audio}: audio is {seconds:.2f} s long, needs at least {avs.CLIP_SECONDS:g} s")
        spectrograms = segment_spectrograms(wave, avs.NUM_FRAMES, frontend)
        fileio.save_npy(Path(out) / "masks" / f"{record.name}.npy", masks)  # before the done marker
        cache.write_video(Path(out), record.name, frames, spectrograms, has_audio=True, duration=seconds)
        return record.name, None
    except WriteError:
        raise  # the disk, not the clip: stop the run (it resumes)
    except LavishError as err:
        return record.name, str(err)
    except Exception as err:  # noqa: BLE001  one broken file must not stop the run; its reason goes to failed.tsv
        return record.name, f"{type(err).__name__}: {err}"


def prepare_avs(root: Path | str, out: Path | str, *, frame_size: tuple[int, int], frontend, workers: int = 1,
                progress: bool = True) -> PrepareReport:
    """Prepare an AVSBench S4 or MS3 folder (layouts in :mod:`lavish.data.avs`) into the cache folder ``out``.

    ``root`` is the subset's folder (the one holding ``s4_meta_data.csv`` or ``ms3_meta_data.csv``). Cache: the
    AVE cache layout (frames (5, H, W, 3) at ``frame_size``, spectrograms (5, F, M) of 1-s windows spread over
    the 5-s wav, spec 2.2), plus ``masks/<name>.npy`` (5, H_m, W_m) uint8 0/1 at the dataset's frame size (the
    first clip's; the benchmark's 224), ``labels.npy`` (clips, 5) = 1 where the frame has a ground-truth mask,
    and ``avs.json`` (subset, mask size). Bad clips (missing files, masks of the wrong size or not binary, wav
    shorter than 5 s) are listed in failed.tsv and left out.
    """
    from lavish.data import avs

    start = time.monotonic()
    root, out = Path(root), Path(out)
    subset = _avs_subset(root)
    records, failed = avs.scan_avs(root, subset)
    settings = cache.CacheSettings(
        task="avs",
        frame_size=tuple(int(v) for v in frame_size),
        frontend=asdict(frontend),
        num_segments=avs.NUM_FRAMES,
        source_root=str(root.resolve()),
    )
    open_cache(out, settings)
    previous = cache.read_json(out / AVS_INFO) if (out / AVS_INFO).exists() else None
    mask_size = tuple(previous["mask_size"]) if previous else (avs.image_size(records[0].frames[0]) if records
                                                               else tuple(frame_size))
    fileio.write_json(out / AVS_INFO, {"subset": subset, "mask_size": list(mask_size)})
    report = PrepareReport(out=out, videos=len(records) + len(failed), failed=dict(failed))
    todo = []
    for rec in records:
        try:
            cache.check_video_id(rec.name)
        except DataError as err:
            report.failed[rec.name] = str(err)
            continue
        if cache.video_done(out, rec.name) is not None and (out / "masks" / f"{rec.name}.npy").exists():
            report.skipped += 1
        else:
            todo.append(rec)
    from tqdm import tqdm

    bar = tqdm(total=len(todo), desc="prepare", unit="clip", disable=not progress, file=sys.stderr)
    args = (str(out), tuple(settings.frame_size), frontend, mask_size)

    def collect(result) -> None:
        name, reason = result
        if reason is None:
            report.prepared += 1
        else:
            report.failed[name] = reason
        bar.update(1)

    try:
        run_jobs(_prepare_avs_one, [(rec, *args) for rec in todo], workers, collect)
    finally:
        bar.close()
    kept = [rec for rec in records if rec.name not in report.failed]
    items = [{"video_id": rec.name, "row": rec.line, "category": rec.category, "split": rec.split,
              "has_audio": True} for rec in kept]
    labels = np.array([[m is not None for m in rec.masks] for rec in kept], dtype=np.int64).reshape(-1, avs.NUM_FRAMES)
    splits = {s: [i for i, rec in enumerate(kept) if rec.split == s] for s in avs.SPLITS}
    paths = dict.fromkeys(report.failed, root / avs.SUBSETS[subset].csv)
    write_failed(out, paths, report.failed)
    classes = sorted({rec.category for rec in kept if rec.category})
    cache.write_manifest(out, settings, classes=classes, items=items, labels=labels, splits=splits,
                         failed=report.failed)
    report.items = len(items)
    report.seconds = time.monotonic() - start
    return report




# ----------------------------------------------------------------------------------------------------- LLP (AVVP)
def prepare_avvp(root: Path | str, out: Path | str, *, frame_size: tuple[int, int], frontend, workers: int = 1,
                 progress: bool = True, csv_dir: Path | str | None = None) -> PrepareReport:
    """Prepare an LLP copy (layout and csv rules: :mod:`lavish.data.llp`) into the cache folder ``out``.

    Every clip of the three split files is decoded as an AVE video (10 one-second segments, each frame at the
    centre of its second's audio window). Items are clips, train then val then test in file order
    (``videos.json``: video_id = the csv ``filename``, split, has_audio); the manifest's classes are
    :data:`lavish.data.llp.CLASSES`. ``labels.npy`` (items, 2, 10, 25) int64 holds the [audio, visual] per-second
    labels of val/test clips and -1 everywhere for train clips (unknown); ``video_labels.npy`` (items, 25) int64
    the weak labels of the split files. A clip whose file is missing (``file not found``) or cannot be decoded is
    listed in failed.tsv and left out; DataError when none of the clips has a file, for bad csv files, or an
    ``out`` holding a cache with other settings.
    """
    from lavish.data import llp

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


