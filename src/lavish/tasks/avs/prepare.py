"""``lavish prepare avs``: an AVSBench S4 / MS3 folder into a prepared cache (frames, masks, spectrograms)."""

from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

from lavish import fileio
from lavish.data import cache
from lavish.data.prepare import PrepareReport, open_cache, run_jobs, write_failed
from lavish.errors import DataError, LavishError, WriteError


AVS_INFO = "avs.json"
"""Extra record of an AVS cache: {"subset", "mask_size": [H, W]}; written before the manifest."""


def _avs_subset(root: Path) -> str:
    """The AVSBench subset whose meta csv is in ``root`` (the ``Single-source`` or ``Multi-sources`` folder)."""
    from lavish.tasks.avs import layout as avs

    found = [name for name, layout in avs.SUBSETS.items() if (root / layout.csv).is_file()]
    if len(found) != 1:
        csvs = " or ".join(layout.csv for layout in avs.SUBSETS.values())
        what = "both" if found else "neither"
        raise DataError(f"{root}: holds {what} of {csvs}; pass the subset's own folder (AVSBench Single-source/ "
                        f"for S4, Multi-sources/ for MS3)")
    return found[0]


def _prepare_avs_one(record, out: str, frame_size: tuple[int, int], frontend, mask_size: tuple[int, int]):
    """Worker: frames (resized to frame_size as the authors' model does, :func:`lavish.tasks.avs.layout.resize_frames`),
    masks (nearest to mask_size), 5 spectrograms of the wav.

    Returns (name, reason or None)."""
    from PIL import Image

    from lavish.tasks.avs import layout as avs
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
    """Prepare an AVSBench S4 or MS3 folder (layouts in :mod:`lavish.tasks.avs.layout`) into the cache folder ``out``.

    ``root`` is the subset's folder (the one holding ``s4_meta_data.csv`` or ``ms3_meta_data.csv``). Cache: the
    AVE cache layout (frames (5, H, W, 3) at ``frame_size``, spectrograms (5, F, M) of 1-s windows spread over
    the 5-s wav, spec 2.2), plus ``masks/<name>.npy`` (5, H_m, W_m) uint8 0/1 at the dataset's frame size (the
    first clip's; the benchmark's 224), ``labels.npy`` (clips, 5) = 1 where the frame has a ground-truth mask,
    and ``avs.json`` (subset, mask size). Bad clips (missing files, masks of the wrong size or not binary, wav
    shorter than 5 s) are listed in failed.tsv and left out.
    """
    from lavish.tasks.avs import layout as avs

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
    args = (str(out), tuple(settings.frame_size), frontend, mask_size)

    def collect(result) -> None:
        name, reason = result
        if reason is None:
            report.prepared += 1
        else:
            report.failed[name] = reason

    run_jobs(_prepare_avs_one, [(rec, *args) for rec in todo], workers, collect,
             progress="prepare" if progress else None, unit="clip")
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
