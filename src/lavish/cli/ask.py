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
    from lavish.tasks.avqa import ask, load_avqa_model

    model, meta, vocab = load_avqa_model(args.checkpoint, backbone_weights=args.backbone_weights)
    res = ask(model, meta, vocab, args.video, args.question, top_k=max(1, args.top))
    spatial, frames = res.pop("spatial"), res.pop("frames")
    if args.plot:
        from lavish.tasks.avqa import plot_attention

        res["plot"] = str(plot_attention(frames, spatial, res, args.plot))
    if args.json:
        print(json.dumps(res))
        return 0
    print(f"{res['video']}: {res['question']}" + ("" if res["has_audio"] else " (no audio stream: silence)"))
    if res["unknown_words"]:
        print(f"  words never seen in training (read as <unk>): {', '.join(res['unknown_words'])}")
    for a in res["answers"]:
        print(f"  {a['answer']:<20} {a['probability']:.3f}")
    print(f"  {'time s':>7} {'visual':>7} {'audio':>7}  attended region (row, col of grid)")
    for s in res["segments"]:
        r = s["region"]
        print(f"  {s['time_s']:>7.1f} {s['visual_weight']:>7.3f} {s['audio_weight']:>7.3f}  "
              f"({r['row']}, {r['col']}) of {r['grid'][0]}x{r['grid'][1]}, weight {r['weight']:.2f}")
    if args.plot:
        print(f"  plot: {res['plot']}")
    return 0
