"""``lavish ask VIDEO "question" --checkpoint FILE``: ask a trained AVQA model about your own video.

Prints the top answers with their probabilities, then per segment (10 over the video, as in training) its time,
how much the question attended to it (visual and audio temporal attention) and the image region the sound
attended to (row, column of the backbone's token grid). ``--json`` prints one object; ``--plot PNG`` draws the
frames with the attended region heat maps. Unknown words map to '<unk>' and are listed; a template placeholder
(``<Object>``) or an empty question is refused in one line.
"""

from __future__ import annotations

import argparse
import json


def register(sub) -> None:
    p = sub.add_parser("ask", help="ask a trained AVQA model a question about a video", description=__doc__)
    p.add_argument("video", metavar="VIDEO")
    p.add_argument("question", metavar="QUESTION")
    p.add_argument("--checkpoint", required=True, help="AVQA adapter file (best.safetensors of a run)")
    p.add_argument("--backbone-weights", help="local timm checkpoint of the backbone, if the run used one")
    p.add_argument("--top", type=int, default=5, help="answers to show (default: %(default)s)")
    p.add_argument("--plot", help="PNG of the frames with the attended regions")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from lavish.api import load

    model = load(args.checkpoint, backbone_weights=args.backbone_weights, task="avqa")
    res = model.ask(args.video, args.question, top_k=max(1, args.top), plot=args.plot)
    print(json.dumps(res) if args.json else "\n".join(model.task.ask_lines(res)))
    return 0
