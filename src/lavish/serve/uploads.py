"""Where ``lavish serve`` keeps uploaded videos while a model runs on them, and nothing longer.

Each server process owns one folder ``<upload root>/lavish-serve-<pid>-<random>/`` (the root: ``--upload-dir``,
else the system's temporary folder). An upload is streamed into it under a random name (never the client's), its
size counted as it arrives; the file is removed when the request ends, whether it succeeded or failed, and the
folder when the server stops (SIGINT / SIGTERM). A server killed with SIGKILL cannot clean up: the next server
started on the same root removes the folders of processes that no longer run (:func:`sweep_stale`).
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import uuid
from pathlib import Path

PREFIX = "lavish-serve-"
_OWNED = re.compile(rf"^{PREFIX}(\d+)-")


class TooLarge(Exception):
    """The upload passed the size limit (raised while streaming, before it is all written)."""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def sweep_stale(root: Path) -> list[Path]:
    """Remove the upload folders under ``root`` left by servers that no longer run; returns them."""
    removed = []
    if not root.is_dir():
        return removed
    for entry in root.iterdir():
        m = _OWNED.match(entry.name)
        if m and entry.is_dir() and not entry.is_symlink() and int(m.group(1)) != os.getpid() \
                and not _alive(int(m.group(1))):
            shutil.rmtree(entry, ignore_errors=True)
            removed.append(entry)
    return removed


class UploadArea:
    """This process's upload folder (created by :meth:`open`, removed by :meth:`close`)."""

    def __init__(self, root: str | os.PathLike | None = None) -> None:
        self.root = Path(root) if root is not None else Path(tempfile.gettempdir())
        self.folder: Path | None = None

    def open(self) -> Path:
        self.root.mkdir(parents=True, exist_ok=True)
        sweep_stale(self.root)
        self.folder = Path(tempfile.mkdtemp(prefix=f"{PREFIX}{os.getpid()}-", dir=self.root))
        return self.folder

    def new_path(self, suffix: str = "") -> Path:
        """A fresh file name in the folder; the suffix is kept only when it is a short alphanumeric extension."""
        if self.folder is None:
            raise RuntimeError("upload area not opened")
        suffix = suffix.lower() if re.fullmatch(r"\.[A-Za-z0-9]{1,5}", suffix or "") else ""
        return self.folder / f"{uuid.uuid4().hex}{suffix}"

    def new_dir(self) -> Path:
        path = self.new_path()
        path.mkdir()
        return path

    def close(self) -> None:
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)
            self.folder = None


def remove(path: Path | None) -> None:
    """Remove an upload (file or folder) if it is there."""
    if path is None:
        return
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        try:
            path.unlink()
        except FileNotFoundError:
            pass
