"""Settings of a ``lavish serve`` server (importable without the ``serve`` extra: the CLI reads its defaults)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from lavish.errors import ConfigError

#: file extensions listed from ``--examples``
VIDEO_EXTENSIONS = (".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi")


@dataclass(frozen=True)
class ServeConfig:
    """Limits of a server (the ``lavish serve`` flags; these defaults are the documented ones)."""

    max_upload_mb: float = 200.0
    """largest upload accepted, MiB"""
    max_duration_s: float = 600.0
    """longest video accepted, seconds (10 minutes: the AVE / LLP clips are 10 s, a talk is longer)"""
    max_queue: int = 8
    """requests admitted at once, the running one included; more get 503"""
    upload_dir: str | None = None
    """root of the upload folder (None: the system's temporary folder)"""
    examples: str | None = None
    """folder of example clips (None: no examples)"""

    def check(self) -> None:
        for name in ("max_upload_mb", "max_duration_s", "max_queue"):
            if getattr(self, name) <= 0:
                flag = "--" + name.replace("_", "-")
                raise ConfigError(f"{flag} {getattr(self, name)} is not valid: it must be positive")
        if self.examples is not None and not Path(self.examples).is_dir():
            raise ConfigError(f"--examples {self.examples}: not a folder")
