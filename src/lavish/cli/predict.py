"""``lavish predict``: per-second AVE labels of your own videos, and a timeline plot."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from lavish.errors import LavishError


def register(sub) -> None:
    p = sub.add_parser("predict", help="run a trained model on your videos (AVE: label every second)",
                       description=__doc__)
    p.add_argument("videos", nargs="+", metavar="VIDEO")
    p.add_argument("--checkpoint", required=True, help="adapter file (best.safetensors of a run)")
    p.add_argument("--backbone-weights", help="local timm checkpoint of the backbone, if the run used one")
    p.add_argument("--json", action="store_true", help="print a JSON list, one entry per video")
    p.add_argument("--plot", help="timeline PNG (several videos: VIDEO stem is appended)")
    p.add_argument("--out", help="output folder, for tasks whose predictions are files (AVS masks)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Dispatch on the checkpoint's task: AVE here, other tasks in ``lavish.cli.<task>.run_predict``."""
    from lavish.models.weights import read_adapter

    task = read_adapter(args.checkpoint)[1].get("task", "ave")
    if task != "ave":
        import importlib

        return importlib.import_module(f"lavish.cli.{task}").run_predict(args)
    return run_ave(args)


def run_ave(args: argparse.Namespace) -> int:
    from lavish.tasks.ave import load_ave_model
    from lavish.tasks.plots import plot_timeline
    from lavish.tasks.predict import predict_video

    model, meta = load_ave_model(args.checkpoint, backbone_weights=args.backbone_weights)
    results, failed = [], 0
    for video in args.videos:
        try:
            res = predict_video(model, meta, video)
        except LavishError as err:
            if len(args.videos) == 1:
                raise
            print(f"error: {err}", file=__import__("sys").stderr)
            failed += 1
            continue
        frames = res.pop("frames")
        if args.plot:
            plot = Path(args.plot)
            if len(args.videos) > 1:
                plot = plot.with_name(f"{plot.stem}-{Path(video).stem}{plot.suffix or '.png'}")
            res["plot"] = str(plot_timeline(res["seconds"], frames, Path(video).name, plot))
        results.append(res)
        if not args.json:
            print(f"{video} ({res['duration']:.1f} s{'' if res['has_audio'] else ', no audio'})")
            for s in res["seconds"]:
                print(f"  {s['second']:>4d} s  {s['label']:<40} {s['probability']:.3f}")
            if args.plot:
                print(f"  timeline: {res['plot']}")
    if args.json:
        print(json.dumps(results))
    return 1 if failed else 0
