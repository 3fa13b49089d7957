"""The prepared cache: decoded frames and spectrograms on disk, one file per video, plus labels and a manifest.

``lavish prepare`` decodes every video once (frames at the backbone's size, spectrograms from its audio
front-end, spec 2.2-2.3) so that training reads arrays instead of decoding mp4s each epoch. Layout::

    <cache>/settings.json          what the cache is made for (task, frame size, front-end, ...), written first
    <cache>/frames/<id>.npy        (T, H, W, 3) uint8 RGB frames at 1 per segment
    <cache>/audio/<id>.npy         (T, F, M) float16 normalised log-mel spectrograms
    <cache>/done/<id>.json         {"has_audio": ..., "duration": ...}: written after both arrays, marks the video done
    <cache>/videos.json            one item per annotation row: {"video_id", "row", "category", "has_audio"}
    <cache>/labels.npy             (items, T) int64 per-segment class, background = len(classes)
                                   (a multi-label clip set: (items, K) uint8 0/1)
                                   (AVVP: (items, 2, T, C) int64 [audio, visual] per-second labels, -1 for train)
    <cache>/video_labels.npy       AVVP only: (items, C) int64 video-level (weak) labels
    <cache>/failed.tsv             video_id, path, reason of the videos that could not be prepared
    <cache>/extra_audio.npy        optional (items, T, E) float32 per-second features (AVE Table 8, VGGish)
    <cache>/manifest.json          settings + classes + splits (item indices) + failures, written LAST

Every file is written through :func:`lavish.fileio.atomic_path` (hidden temp file in the same folder, fsync,
rename, fsync of the folder), so a killed run or a full disk leaves whole files or stale temp files (removed by
the next run), never half files. A video counts as done only when its ``done/<id>.json`` exists. The frames and
audio of a video are shared by every annotation row of that video (AVE lists 45 videos twice, with two events).

Spectrograms are stored as float16 (halves the size; the normalised values lie within a few units of 0,
where float16 keeps ~3 significant digits) and returned as float32. Normalisation of frames (ImageNet
mean/std) happens in the model, not here.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from lavish import fileio
from lavish.errors import DataError

FORMAT_VERSION = 2
"""2: frames at the centre of their segment's audio window (lavish.media.decode.frame_times) and AVS frames resized
as the authors' model does; caches of version 1 hold other frames and are refused."""
MANIFEST = "manifest.json"
SETTINGS = "settings.json"
VIDEOS = "videos.json"
LABELS = "labels.npy"
FAILED = "failed.tsv"
EXTRA_AUDIO = "extra_audio.npy"
"""optional (items, T, E) float32 extra per-second audio features (AVE Table 8), aligned with videos.json"""
VIDEO_LABELS = "video_labels.npy"
"""AVVP: (items, C) int64 video-level labels, aligned with videos.json"""
_SAFE_ID = re.compile(r"^[A-Za-z0-9_\-][A-Za-z0-9_.\-]*$")  # YouTube ids may start with - or _


# ------------------------------------------------------------------------------------------------ stale files
def remove_stale_temp_files(cache_dir: Path) -> int:
    """Delete temp files left by a killed run in the cache's folders; returns how many."""
    cache_dir = Path(cache_dir)
    return fileio.remove_stale_temp_files(*(cache_dir / sub for sub in ("", "frames", "audio", "done", "masks")))


# ------------------------------------------------------------------------------------------------ settings
@dataclass(frozen=True)
class CacheSettings:
    """What a cache was prepared for; two caches with different settings are not interchangeable."""

    task: str
    frame_size: tuple[int, int]
    """(height, width) of the stored frames."""
    frontend: dict
    """The :class:`lavish.media.audio.AudioFrontend` fields (name, mel bins, shift, window, frames, mean, std)."""
    num_segments: int
    source_root: str
    format_version: int = FORMAT_VERSION

    def to_json(self) -> dict:
        d = asdict(self)
        d["frame_size"] = list(self.frame_size)
        return d

    @classmethod
    def from_json(cls, d: dict, source: Path) -> "CacheSettings":
        try:
            return cls(
                task=str(d["task"]),
                frame_size=tuple(int(v) for v in d["frame_size"]),
                frontend=dict(d["frontend"]),
                num_segments=int(d["num_segments"]),
                source_root=str(d["source_root"]),
                format_version=int(d["format_version"]),
            )
        except (KeyError, TypeError, ValueError) as err:
            raise DataError(f"{source}: not a lavish cache settings record ({err!r})") from None

    def differences(self, other: "CacheSettings") -> list[str]:
        """Human-readable ``name: ours vs theirs`` for every setting that differs."""
        out = []
        for name in ("format_version", "task", "frame_size", "num_segments", "source_root"):
            a, b = getattr(self, name), getattr(other, name)
            if a != b:
                out.append(f"{name} {b!r} (cache) vs {a!r} (requested)")
        if self.frontend != other.frontend:
            keys = [k for k in sorted(set(self.frontend) | set(other.frontend)) if self.frontend.get(k) != other.frontend.get(k)]
            out.append(
                "audio front-end " + ", ".join(f"{k} {other.frontend.get(k)!r} (cache) vs {self.frontend.get(k)!r} (requested)" for k in keys)
            )
        return out


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise DataError(f"{path}: corrupt json ({err})") from None


def read_settings(cache_dir: Path) -> CacheSettings | None:
    """Settings of a cache folder (from settings.json), or None if the folder holds no cache yet."""
    path = Path(cache_dir) / SETTINGS
    if not path.exists():
        return None
    return CacheSettings.from_json(read_json(path), path)


# ---------------------------------------------------------------------------------------------- per video
def check_video_id(video_id: str) -> None:
    """Video ids become file names: refuse anything with a path separator or a leading dot."""
    if not _SAFE_ID.match(video_id):
        raise DataError(f"video id {video_id!r} cannot be used as a file name in the cache")


def frames_path(cache_dir: Path, video_id: str) -> Path:
    return Path(cache_dir) / "frames" / f"{video_id}.npy"


def audio_path(cache_dir: Path, video_id: str) -> Path:
    return Path(cache_dir) / "audio" / f"{video_id}.npy"


def done_path(cache_dir: Path, video_id: str) -> Path:
    return Path(cache_dir) / "done" / f"{video_id}.json"


def write_video(cache_dir: Path, video_id: str, frames: np.ndarray, spectrograms: np.ndarray, *,
                has_audio: bool, duration: float) -> None:
    """Store one decoded video: frames (T,H,W,3) uint8, spectrograms (T,F,M) (saved float16), then the done marker."""
    check_video_id(video_id)
    fileio.save_npy(frames_path(cache_dir, video_id), np.asarray(frames, dtype=np.uint8))
    fileio.save_npy(audio_path(cache_dir, video_id), np.asarray(spectrograms).astype(np.float16))
    fileio.write_json(done_path(cache_dir, video_id), {"has_audio": bool(has_audio), "duration": float(duration)})


def video_done(cache_dir: Path, video_id: str) -> dict | None:
    """The done record of a finished video (None when it must be (re)prepared)."""
    marker = done_path(cache_dir, video_id)
    if not (marker.exists() and frames_path(cache_dir, video_id).exists() and audio_path(cache_dir, video_id).exists()):
        return None
    try:
        return json.loads(marker.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None


# ------------------------------------------------------------------------------------------------ manifest
def write_manifest(cache_dir: Path, settings: CacheSettings, *, classes: list[str], items: list[dict],
                   labels: np.ndarray, splits: dict[str, list[int]], failed: dict[str, str]) -> None:
    """Write videos.json, labels.npy, then manifest.json (last: its presence means the cache is complete).

    items: one dict per annotation row kept; labels: (len(items), ...) int64, or uint8 where 0/1 flags are many
    (a multi-label set's (items, K): 8x smaller; the dataset returns int64 either way); splits: split -> item indices;
    failed: video id -> reason (their rows are not in ``items``).
    """
    from lavish import __version__

    cache_dir = Path(cache_dir)
    fileio.write_json(cache_dir / VIDEOS, items)
    labels = np.asarray(labels)
    fileio.save_npy(cache_dir / LABELS, labels if labels.dtype == np.uint8 else labels.astype(np.int64))
    manifest = {
        **settings.to_json(),
        "lavish_version": __version__,
        "classes": list(classes),
        "background": len(classes),
        "num_items": len(items),
        "splits": {k: [int(i) for i in v] for k, v in splits.items()},
        "failed": dict(sorted(failed.items())),
    }
    fileio.write_json(cache_dir / MANIFEST, manifest)


def read_manifest(cache_dir: Path | str) -> dict:
    """manifest.json of a finished cache; DataError saying how to finish or make it otherwise."""
    cache_dir = Path(cache_dir)
    path = cache_dir / MANIFEST
    if not cache_dir.is_dir():
        raise DataError(f"{cache_dir}: no such folder; make a cache with lavish.prepare(task, root, {str(cache_dir)!r}) (lavish prepare TASK --root DATASET --out {cache_dir})")
    if not path.exists():
        if (cache_dir / SETTINGS).exists():
            raise DataError(f"{cache_dir}: cache is incomplete (prepare did not finish); run lavish.prepare (lavish prepare) into {cache_dir} again to complete it")
        raise DataError(f"{cache_dir}: not a prepared cache (no {MANIFEST}); make one with lavish.prepare (lavish prepare)")
    manifest = read_json(path)
    if not isinstance(manifest, dict) or manifest.get("format_version") != FORMAT_VERSION:
        version = manifest.get("format_version") if isinstance(manifest, dict) else None
        raise DataError(f"{path}: cache format version {version!r}, this lavish reads {FORMAT_VERSION}; prepare it again")
    return manifest


def check_manifest(cache_dir: Path | str, *, task: str, frame_size: tuple[int, int], frontend_name: str) -> dict:
    """The manifest, after checking that the cache was made for this task, frame size and audio front-end."""
    manifest = read_manifest(cache_dir)
    wanted = {"task": task, "frame_size": list(frame_size), "audio front-end": frontend_name}
    found = {"task": manifest.get("task"), "frame_size": manifest.get("frame_size"),
             "audio front-end": (manifest.get("frontend") or {}).get("name")}
    diff = [f"{k} {found[k]!r} (cache) vs {wanted[k]!r} (needed)" for k in wanted if found[k] != wanted[k]]
    if diff:
        raise DataError(
            f"{cache_dir}: cache was prepared for other settings: {'; '.join(diff)}; prepare it again "
            f"(lavish.prepare({task!r}, ..., backbone=...); lavish prepare {task} --backbone ...) into a new folder"
        )
    return manifest


# ------------------------------------------------------------------------------------------------ dataset
class CacheDataset(Dataset):
    """One split of a prepared cache (any task), read with memory maps.

    ``ds[i]`` -> dict(frames=uint8 (T,H,W,3), audio=float32 (T,F,M), labels=int64 (T,), index=int (item index
    in the cache, row of labels.npy), video_id=str, has_audio=bool).
    """

    def __init__(self, cache_dir: Path | str, split: str) -> None:
        self.cache_dir = Path(cache_dir)
        self.manifest = read_manifest(self.cache_dir)
        splits = self.manifest["splits"]
        if split not in splits:
            raise DataError(f"{self.cache_dir}: no split {split!r} in the cache (has {', '.join(splits)})")
        self.split = split
        self.items: list[dict] = read_json(self.cache_dir / VIDEOS)
        try:
            self.labels = np.load(self.cache_dir / LABELS, mmap_mode="r")
        except (OSError, ValueError) as err:
            raise DataError(f"{self.cache_dir / LABELS}: unreadable ({err})") from None
        if len(self.items) != self.manifest["num_items"] or self.labels.shape[0] != len(self.items):
            raise DataError(
                f"{self.cache_dir}: manifest lists {self.manifest['num_items']} items but {VIDEOS} has "
                f"{len(self.items)} and {LABELS} {self.labels.shape[0]}; prepare the cache again"
            )
        self.indices = [int(i) for i in splits[split]]
        missing = [
            p for i in self.indices for p in (frames_path(self.cache_dir, self.items[i]["video_id"]),
                                              audio_path(self.cache_dir, self.items[i]["video_id"]))
            if not p.exists()
        ]
        if missing:
            raise DataError(
                f"{self.cache_dir}: cache is incomplete, {len(missing)} files of split {split!r} are missing "
                f"(first: {missing[0].relative_to(self.cache_dir)}); rerun `lavish prepare` into this folder"
            )

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> dict:
        index = self.indices[i]
        item = self.items[index]
        vid = item["video_id"]
        frames = np.load(frames_path(self.cache_dir, vid), mmap_mode="r")
        audio = np.load(audio_path(self.cache_dir, vid), mmap_mode="r")
        return {
            "frames": torch.from_numpy(np.array(frames, dtype=np.uint8)),
            "audio": torch.from_numpy(np.asarray(audio, dtype=np.float32)),
            "labels": torch.from_numpy(np.array(self.labels[index], dtype=np.int64)),
            "index": index,
            "video_id": vid,
            "has_audio": bool(item["has_audio"]),
        }


AveCacheDataset = CacheDataset
"""The name of :class:`CacheDataset` before the tasks had their own folders (the first cache was AVE's)."""
