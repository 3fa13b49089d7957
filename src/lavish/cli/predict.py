"""``lavish predict VIDEO|DIR|GLOB|@LIST... --checkpoint FILE``: run a trained model on your own videos, of any length
and in any number.

The task is the adapter file's: AVE prints a label per second and the events as time ranges (``--plot``: a timeline
PNG, a page a minute on a long video), AVVP the events heard and the events seen in each second (``--plot``: a
timeline with an audio and a visual row), AVS writes a mask per second and a contact sheet (``--out DIR``), AVQA
models answer questions instead (``lavish ask``). Every video is decoded and run window by window: memory does not
grow with its length.

Many videos: a folder (every video file below it; other files are skipped and listed), a glob pattern, or @LIST (a
text file, one path a line). ``--out results.jsonl`` appends one JSON line per video as it finishes (the ``--json``
schema), durably; ``--resume`` skips the videos already in it; ``failed.tsv`` beside it lists the videos that failed
with the reason (a video that breaks in the middle keeps a line for the seconds before the break, with an ``error``
key). ``--workers N`` decodes in N processes while the model runs. Exit code 0 when every video worked, 1 with a
summary otherwise. Without ``--out FILE.jsonl`` the results are printed (``--json``: one JSON list at the end).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from lavish.cli.options import task_option_values
from lavish.errors import ConfigError
from lavish.engine.registry import TASKS

#: predict's own options that a task may write to, and the task attribute value that says it does
OUTPUT_OPTIONS = {"plot": "--plot", "out": "--out"}


def register(sub) -> None:
    p = sub.add_parser("predict", help="run a trained model on your videos (AVE: label every second; AVVP: heard / seen "
                                           "events; a clip classifier: the top labels)",
                       description=__doc__)
    p.add_argument("videos", nargs="+", metavar="VIDEO",
                   help="video files, folders (every video below), glob patterns or @LIST files (a path a line)")
    p.add_argument("--checkpoint", required=True, help="adapter file (best.safetensors of a run)")
    p.add_argument("--backbone-weights", help="local timm checkpoint of the backbone, if the run used one")
    p.add_argument("--json", action="store_true", help="print a JSON list, one entry per video")
    p.add_argument("--plot", help="the task's PNG per video: AVE, AVVP a timeline, a clip classifier the top labels' "
                                  "bars (several videos: the video's stem is appended)")
    p.add_argument("--out", help="results file FILE.jsonl: a JSON line per video as it finishes (any task); or, for "
                                  "AVS, the folder for the mask PNGs and contact sheets (with FILE.jsonl they go to "
                                  "FILE-masks/ beside it)")
    p.add_argument("--resume", action="store_true", help="with --out FILE.jsonl: skip the videos already in it")
    p.add_argument("--workers", type=int, default=0,
                   help="processes that decode videos while the model runs (default: %(default)s, decode in this one)")
    p.add_argument("--batch-size", type=int, default=1,
                   help="windows of the task's clip length per model call (default: %(default)s)")
    p.add_argument("--no-progress", dest="progress", action="store_false", default=None,
                   help="no progress bar (default: shown on a terminal)")
    seen = {"--plot", "--out"}
    g = p.add_argument_group("task options")
    for task in TASKS.values():
        for option in task.options:
            if "predict" in option.commands and option.flags[0] not in seen:
                seen.add(option.flags[0])
                g.add_argument(*option.flags, **option.kwargs)
    p.set_defaults(func=run)


def _refuse_foreign(args: argparse.Namespace, task) -> dict:
    """The options of the file's task; any other given option is refused."""
    own = task_option_values(task, args, "predict")
    for name, flag in OUTPUT_OPTIONS.items():
        if getattr(args, name) is not None and name not in task.predict_outputs:
            raise ConfigError(f"{flag} does not apply to {task.name.upper()} predictions")
    for other in TASKS.values():
        for option in other.options:
            if ("predict" in option.commands and option.dest not in own
                    and getattr(args, option.dest, None) is not None):
                raise ConfigError(f"{option.flags[0]} does not apply to {task.name.upper()} predictions")
    if "out" in task.predict_outputs and args.out is None:
        raise ConfigError(f"{task.name.upper()} predictions are files: pass --out DIR")
    return own


def run(args: argparse.Namespace) -> int:
    from lavish.api import load
    from lavish.engine.predict import ResultsFile, expand_inputs, predict_many

    results_file = args.out is not None and Path(args.out).suffix.lower() == ".jsonl"
    if args.resume and not results_file:
        raise ConfigError("--resume continues a results file: give --out FILE.jsonl")
    inputs = expand_inputs(args.videos)
    if not inputs.videos:
        raise ConfigError(f"no video to run: {len(inputs.skipped)} file(s) given, none a video")
    model = load(args.checkpoint, backbone_weights=args.backbone_weights)
    task = model.task
    if getattr(task, "prediction_cls", None) is None:
        task.predict(model.model, model.meta, inputs.videos[0])  # the task's own refusal (AVQA: use lavish ask)
    out = args.out
    if results_file:
        args.out = None if "out" not in task.predict_outputs else str(Path(out).with_name(Path(out).stem + "-masks"))
    options = _refuse_foreign(args, task)
    single = len(inputs.videos) == 1 and len(args.videos) == 1 and not results_file

    def options_for(video) -> dict:
        per_video = dict(options)
        if args.plot is not None:
            plot = Path(args.plot)
            if not single and video is not None:
                plot = plot.with_name(f"{plot.stem}-{Path(video).stem}{plot.suffix or '.png'}")
            per_video["plot"] = plot
        if args.out is not None:
            per_video["out"] = args.out
        return per_video

    if single:
        res = model.predict(inputs.videos[0], batch_size=args.batch_size, **options_for(inputs.videos[0]))
        print(json.dumps([res]) if args.json else "\n".join(task.predict_lines(res)))
        return 0
    sink = ResultsFile(out, checkpoint=args.checkpoint, resume=args.resume) if results_file else Printed()
    progress = sys.stderr.isatty() if args.progress is None else args.progress
    printer = None if results_file or args.json else (lambda res: print("\n".join(task.predict_lines(res)), flush=True))
    summary = predict_many(task, model.model, model.meta, inputs, sink, workers=args.workers,
                           batch_size=args.batch_size, progress=progress, options_for=options_for, on_result=printer)
    if args.json and not results_file:
        print(json.dumps(sink.results))
    if summary.skipped:
        print(f"skipped {len(summary.skipped)} file(s) that are not videos" +
              (f" (listed in {sink.failed_path})" if results_file else ": " +
               ", ".join(p for p, _ in summary.skipped[:5]) + (" ..." if len(summary.skipped) > 5 else "")),
              file=sys.stderr)
    total = len(inputs.videos)
    if results_file:
        print(f"{summary.done} video(s) done, {summary.resumed} already in {out}, {len(summary.failed)} failed"
              f"{f' (listed in {sink.failed_path})' if summary.failed else ''}; {summary.video_seconds:.0f} s of "
              f"video in {summary.seconds:.0f} s", file=sys.stderr)
    elif summary.failed:
        print(f"{len(summary.failed)} of {total} video(s) failed", file=sys.stderr)
    return 0 if summary.ok else 1


class Printed:
    """Where results go without a results file: kept for ``--json`` (printed as they finish otherwise)."""

    def __init__(self) -> None:
        self.done: set[str] = set()
        self.results: list[dict] = []

    def append(self, result: dict) -> None:
        from lavish.engine.predict import _plain

        self.results.append(_plain(result))

    def fail(self, video: str, reason: str) -> None:
        print(f"error: {reason}", file=sys.stderr, flush=True)
