"""``lavish eval ave``: segment accuracy (background included), per-class accuracy, confusion matrix PNG."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def register(sub) -> None:
    p = sub.add_parser("eval", help="evaluate an adapter file on a prepared split", description=__doc__)
    p.add_argument("task", choices=("ave",))
    p.add_argument("--checkpoint", required=True, help="adapter file (best.safetensors of a run)")
    p.add_argument("--data", required=True, help="prepared cache folder")
    p.add_argument("--split", default="test", choices=("train", "val", "test"))
    p.add_argument("--backbone-weights", help="local timm checkpoint of the backbone, if the run used one")
    p.add_argument("--confusion", help="confusion matrix PNG (default: next to the checkpoint)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from lavish.tasks.ave import evaluate_ave

    png = Path(args.confusion) if args.confusion else Path(args.checkpoint).with_name(f"confusion-{args.split}.png")
    result = evaluate_ave(args.checkpoint, args.data, split=args.split, backbone_weights=args.backbone_weights,
                          confusion_png=png, progress=not args.json)
    result["confusion_png"] = str(png)
    if args.json:
        print(json.dumps(result))
        return 0
    print(f"{args.split}: accuracy {result['accuracy']:.4f} over {result['segments']} segments")
    for name, acc in result["per_class"].items():
        print(f"  {name:<40} {'-' if acc is None else f'{acc:.3f}'}")
    print(f"confusion matrix: {png}")
    return 0
