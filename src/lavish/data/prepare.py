"""The prepare machinery every task shares: decode every video of a dataset once into a prepared cache (:mod:`lavish.data.cache`).

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
import warnings
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path

from lavish import fileio
from lavish.data import cache
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


def _decode_one(video_id: str, path: str, out: str, frame_size: tuple[int, int], frontend, num_segments: int,
                min_duration: float = 0.0):
    """Worker: decode one video into the cache (unless it lasts less than ``min_duration`` s). Returns (video_id,
    reason or None, has_audio)."""
    from lavish.media.decode import decode_clip

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "no audio stream": reported through has_audio
            clip = decode_clip(path, num_segments=num_segments, frame_size=frame_size, frontend=frontend)
        if clip.duration < min_duration:
            return video_id, f"the clip lasts {clip.duration:.2f} s, shorter than {min_duration:g} s", False
        cache.write_video(Path(out), video_id, clip.frames, clip.spectrograms,
                          has_audio=clip.has_audio, duration=clip.duration)
        return video_id, None, bool(clip.has_audio)
    except WriteError:
        raise  # the disk, not the video: stop the run (it resumes), do not list the video as failed
    except LavishError as err:
        return video_id, str(err), False
    except Exception as err:  # noqa: BLE001  one broken file must not stop the run; its reason goes to failed.tsv
        return video_id, f"{type(err).__name__}: {err}", False


def run_jobs(fn, jobs: list[tuple], workers: int, collect, *, progress: str | None = None,
             unit: str = "video") -> None:
    """``collect(fn(*job))`` for every job, here or in a spawn pool of ``workers`` processes (results as they come).

    ``progress``: the title of a progress bar (on stderr) counting the jobs done; None: no bar. An exception from a
    job (a write that failed: the disk is full) stops the run: jobs not started are cancelled.
    """
    from tqdm import tqdm

    bar = tqdm(total=len(jobs), desc=progress, unit=unit, disable=progress is None, file=sys.stderr)

    def done(result) -> None:
        collect(result)
        bar.update(1)

    try:
        if workers <= 1 or len(jobs) <= 1:
            for job in jobs:
                done(fn(*job))
            return
        with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn")) as pool:
            futures = [pool.submit(fn, *job) for job in jobs]
            try:
                for future in as_completed(futures):
                    done(future.result())
            except BaseException:
                pool.shutdown(wait=True, cancel_futures=True)
                raise
    finally:
        bar.close()


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
                   workers: int = 1, progress: bool = True, report: PrepareReport,
                   min_duration: float = 0.0) -> dict[str, bool]:
    """Decode every video not yet done into ``out``; fills ``report``; returns video id -> has_audio for done ones.

    A video shorter than ``min_duration`` seconds fails (nothing of it is written)."""
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

    args = (str(out), tuple(frame_size), frontend, num_segments, min_duration)

    def collect(result) -> None:
        vid, reason, audio = result
        if reason is None:
            has_audio[vid] = audio
            report.prepared += 1
        else:
            report.failed[vid] = reason

    run_jobs(_decode_one, [(vid, path, *args) for vid, path in todo], workers, collect,
             progress="prepare" if progress else None)
    report.without_audio = sum(not a for a in has_audio.values())
    return has_audio


def write_failed(out: Path, videos: dict[str, Path], failed: dict[str, str]) -> None:
    """failed.tsv: header then ``video_id<TAB>path<TAB>reason`` (tabs/newlines in reasons replaced by spaces)."""
    lines = ["video_id\tpath\treason"]
    for vid in sorted(failed):
        reason = " ".join(failed[vid].split())
        lines.append(f"{vid}\t{videos[vid]}\t{reason}")
    fileio.write_text(out / cache.FAILED, "\n".join(lines) + "\n")
