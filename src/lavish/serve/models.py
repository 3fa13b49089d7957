"""The trained models a server holds, and one request's run of one of them.

Every prediction goes through :class:`lavish.TrainedModel` (``predict`` / ``ask``), the code ``lavish predict
--json`` and ``lavish ask --json`` run, so the numbers are theirs. What differs for the web is only the form of
what the CLI writes to files: the AVS mask PNGs and contact sheet come back inline as ``data:image/png;base64``
URLs under the same keys (``masks``, ``sheet``), since a server's temporary files are removed after the request;
and ``video`` is the uploaded file's name instead of a local path.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from pathlib import Path

from lavish.errors import ConfigError, LavishError, MediaError


@dataclass
class Served:
    """One loaded adapter file: ``id`` (its position on the command line, "0", "1"...), the TrainedModel."""

    id: str
    path: Path
    trained: object  # lavish.TrainedModel

    @property
    def task(self) -> str:
        return self.trained.task.name

    @property
    def asks(self) -> bool:
        """AVQA models answer questions (``ask``) instead of predicting."""
        return hasattr(self.trained.task, "ask")

    @property
    def takes_top_k(self) -> bool:
        """The model lists its top answers or labels (AVQA, and any task with a ``--top-k`` predict option)."""
        return self.asks or any(o.dest == "top_k" and "predict" in o.commands for o in self.trained.task.options)

    def describe(self) -> dict:
        meta = self.trained.meta
        return {"id": self.id, "task": self.task, "title": self.trained.task.title, "file": str(self.path),
                "asks": self.asks,
                "classes": list(meta.get("classes", [])) if not self.asks else []}


def load_models(paths: list[str], backbone_weights: str | None = None) -> list[Served]:
    """Each adapter file loaded once (``lavish.load``; safetensors, nothing unpickled)."""
    from lavish.api import load

    return [Served(str(k), Path(p), load(p, backbone_weights=backbone_weights)) for k, p in enumerate(paths)]


def _data_url(path: str | Path) -> str:
    return "data:image/png;base64," + base64.b64encode(Path(path).read_bytes()).decode("ascii")


def _rename(err: LavishError, local: Path, shown: str) -> LavishError:
    """The same error with the server's temporary path replaced by the name the client gave."""
    return type(err)(str(err).replace(str(local), shown))


def check_media(video: Path, shown: str, max_duration_s: float) -> None:
    """Refuse, in one line, a file that is not media, has no video stream or is longer than the limit."""
    from lavish.media.decode import probe

    try:
        info = probe(video)
    except LavishError as err:
        raise _rename(err, video, shown) from None
    if not info.has_video:
        raise MediaError(f"{shown}: no video stream (an audio-only file cannot be shown or analysed)")
    if info.duration > max_duration_s:
        raise DurationError(f"{shown}: {info.duration:.1f} s is longer than this server's limit of "
                            f"{max_duration_s:g} s (--max-duration-s)")


class DurationError(ConfigError):
    """The video is longer than ``--max-duration-s``."""


def run(served: Served, video: Path, shown: str, *, question: str | None, top_k: int, scratch: Path) -> dict:
    """The model's answer on ``video`` as the CLI's ``--json`` prints it (see the module doc for the two
    differences). ``scratch``: a folder for what the task writes (AVS masks), removed by the caller."""
    try:
        if served.asks:
            if question is None:
                raise ConfigError("this is an AVQA model: ask a question (the question field)")
            result = served.trained.ask(video, question, top_k=top_k)
        else:
            if question is not None:
                raise ConfigError(f"a question does not apply to an {served.task.upper()} model (only AVQA answers "
                                  "questions)")
            if "out" in served.trained.task.predict_outputs:
                result = served.trained.predict(video, out=scratch)
                result["masks"] = [_data_url(p) for p in result["masks"]]
                result["sheet"] = _data_url(result["sheet"])
            else:
                result = served.trained.predict(video, **({"top_k": top_k} if served.takes_top_k else {}))
    except LavishError as err:
        raise _rename(err, video, shown) from None
    result["video"] = shown
    return result
