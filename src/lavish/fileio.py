"""Durable, atomic file writes: every file lavish writes goes through :func:`atomic_path`.

A file is written to a hidden temporary file in its own folder (``.<name>.tmp-<pid>-<token><suffix>``), flushed
and ``fsync``-ed, renamed over the target (``os.replace``, atomic on POSIX and Windows), and then the folder is
``fsync``-ed so that the rename itself survives a power cut. A reader therefore sees the previous file or the new
one, never a half-written one, after ``kill -9`` or a crash; a write that fails (disk full, no permission) leaves
the previous file untouched, removes its temporary file, and raises :class:`lavish.errors.WriteError` naming the
file. A killed process can leave a temporary file behind: :func:`remove_stale_temp_files` clears a folder of them.

This module sits beside :mod:`lavish.errors`, below every layer, so media, data, models, tasks and cli all use it.
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from lavish.errors import WriteError

TEMP_MARK = ".tmp-"
"""What every temporary file name holds (after a leading dot and the target's name)."""


def temp_path(path: Path) -> Path:
    """A fresh hidden temporary name beside ``path`` that keeps its suffix (libraries pick formats by suffix)."""
    return path.with_name(f".{path.name}{TEMP_MARK}{os.getpid()}-{secrets.token_hex(4)}{path.suffix}")


def _fsync_folder(folder: Path) -> None:
    if os.name != "posix":  # Windows cannot open a folder; its renames are journalled by NTFS
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _commit(tmp: Path, path: Path) -> None:
    """fsync ``tmp``, rename it onto ``path``, fsync the folder."""
    with open(tmp, "rb+") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)
    _fsync_folder(path.parent)


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` for the caller (or a library) to write the whole file to; on a clean
    exit the file is made durable and renamed onto ``path``. Any OSError while writing becomes a WriteError; the
    temporary file is removed whatever happens.

    >>> with atomic_path("out/plot.png") as tmp:
    ...     fig.savefig(tmp)
    """
    path = Path(path)
    tmp = temp_path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        yield tmp
        _commit(tmp, path)
    except OSError as err:
        raise WriteError(f"cannot write {path} ({err.strerror or err}); its previous version, if any, is intact") \
            from err
    finally:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass


def write_bytes(path: str | Path, data: bytes) -> Path:
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        f.write(data)
    return Path(path)


def write_text(path: str | Path, text: str) -> Path:
    return write_bytes(path, text.encode("utf-8"))


def write_json(path: str | Path, obj: Any, *, indent: int | None = 1) -> Path:
    """``obj`` as JSON (``indent`` spaces, a final newline)."""
    return write_text(path, json.dumps(obj, indent=indent) + "\n")


def save_npy(path: str | Path, array: np.ndarray) -> Path:
    """``np.save`` without pickles (``allow_pickle=False``) of a C-contiguous copy of ``array``."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.save(f, np.ascontiguousarray(array), allow_pickle=False)
    return Path(path)


def remove_stale_temp_files(*folders: str | Path) -> int:
    """Delete the temporary files a killed process left in ``folders`` (not recursive); returns how many."""
    count = 0
    for folder in map(Path, folders):
        if folder.is_dir():
            for stale in folder.glob(f".*{TEMP_MARK}*"):
                stale.unlink(missing_ok=True)
                count += 1
    return count
