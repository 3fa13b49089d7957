"""Errors that reach the user as one line.

Every layer raises a subclass of :class:`LavishError` for bad input (a file that cannot be read, a config
value out of range, a checkpoint for another model). The CLI prints ``error: <message>`` and exits with code 2;
it never shows a traceback for these. Messages name the file (and line, where there is one) and what is wrong.

The family: ``LavishError`` > ``MediaError`` (a video or audio file), ``DataError`` (a dataset or cache file),
``ConfigError`` (a setting or argument; ``ShapeError``, also a ``ValueError``: a tensor of the wrong shape, dtype or
size), ``CheckpointError`` (an adapter or weights file: corrupt, or made for another backbone, adapter, task or
model), ``WriteError`` (a file could not be written; the previous one is intact). Python callers catch
``lavish.LavishError``; the CLI prints ``error: <message>`` and exits with code 2.
"""

from __future__ import annotations


class LavishError(Exception):
    """Base class: bad input that the user can fix. ``str(err)`` is the one-line message."""


class MediaError(LavishError):
    """A media file cannot be decoded or lacks what the task needs."""


class DataError(LavishError):
    """A dataset file (annotation, csv, json, cache) is missing, malformed or inconsistent."""


class ConfigError(LavishError):
    """A configuration value is invalid (unknown name, out of range)."""


class CheckpointError(LavishError):
    """A weights file is corrupt, or belongs to another backbone, adapter or task."""


class WriteError(LavishError):
    """A file could not be written (disk full, no permission, read-only folder); the previous file is intact."""


class ShapeError(ConfigError, ValueError):
    """A tensor given to a model has the wrong shape, dtype or size (names what was expected and what was given).

    Also a ``ValueError``, as torch users expect of a bad argument."""
