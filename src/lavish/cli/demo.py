"""``lavish demo``: the whole AVE pipeline on a synthetic dataset it makes itself, in minutes on a CPU.

1. writes a small dataset in the official AVE layout (real mp4 files with sound; an event second needs the
   class's object on screen AND its sound; background seconds hold the object without its sound, the sound
   without the object, or neither), 2. prepares it, 3. trains the micro ViT backbone three times, audio-visual
   LAVISH, vision-only and audio-only (Table 7's comparison), 4. evaluates each on the test split and writes a
   table and a bar plot, 5. runs ``predict`` on one test clip and plots its timeline.

The micro backbone has no pretrained weights, so the demo uses larger learning rates than the paper's recipe;
a real run uses a pretrained backbone and the AVE dataset (see the README).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from lavish.errors import ConfigError

REAL_RUN = (
    "A real run uses pretrained weights and the AVE dataset: download AVE (4,143 videos, Tian et al. ECCV 2018), then\n"
    "  lavish prepare ave --root AVE_ROOT --out ave-cache --workers 8\n"
    "  lavish train ave --data ave-cache --out runs/ave-swinv2-l      # Swin-V2-L, the paper's recipe\n"
    "(offline machines: add --backbone-weights swinv2_large_window12_192.safetensors). See docs/reproduce.md."
)

VARIANTS = {"audio-visual (LAVISH)": "av", "vision only": "v", "audio only": "a"}


def register(sub) -> None:
    p = sub.add_parser("demo", help="synthetic AVE end to end: generate, prepare, train, evaluate, predict",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("task", nargs="?", default="ave", choices=("ave", *TASK_DEMOS),
                   help="which benchmark to demo (default: %(default)s)")
    p.add_argument("--out", default="lavish-demo", help="folder for everything the demo writes (default: %(default)s)")
    p.add_argument("--videos", type=int, default=48, help="synthetic videos (default: %(default)s)")
    p.add_argument("--classes", type=int, default=4, help="event classes (default: %(default)s)")
    p.add_argument("--epochs", type=int, default=6, help="epochs per run (default: %(default)s)")
    p.add_argument("--backbone", default="lavish_vit_micro_patch8_64", help="backbone (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=2, help="processes to generate and prepare data")
    p.add_argument("--no-progress", dest="progress", action="store_false")
    p.set_defaults(func=dispatch)


#: task -> module whose ``run_demo(args)`` runs that task's demo (AVE: :func:`run` below)
TASK_DEMOS = {"avqa": "lavish.cli.avqa", "avs": "lavish.cli.avs"}


def dispatch(args: argparse.Namespace) -> int:
    import importlib

    module = TASK_DEMOS.get(args.task)
    return importlib.import_module(module).run_demo(args) if module else run(args)


def run(args: argparse.Namespace) -> int:
    from lavish.data.prepare import prepare_ave
    from lavish.data.synthetic_ave import make_synthetic_ave
    from lavish.fileio import write_json
    from lavish.media.audio import get_frontend
    from lavish.models.adapters import PRESETS
    from lavish.models.ave import AveModelConfig
    from lavish.models.input_spec import input_spec
    from lavish.tasks.ave import AveTrainConfig, evaluate_ave, load_ave_model, train_ave
    from lavish.tasks.plots import plot_bars, plot_timeline
    from lavish.tasks.predict import predict_video

    if args.videos < 10:
        raise ConfigError(f"videos={args.videos} is not valid: the demo needs at least 10 (train/val/test splits)")
    start = time.monotonic()
    out = Path(args.out)
    data, cache = out / "data", out / "cache"
    print(f"[1/5] synthetic AVE-layout dataset: {args.videos} videos, {args.classes} classes -> {data}")
    if not (data / "Annotations.txt").exists():
        make_synthetic_ave(data, num_videos=args.videos, num_classes=args.classes, seed=args.seed,
                           workers=args.workers)
    spec = input_spec(args.backbone, "ave")
    print(f"[2/5] prepare -> {cache}")
    if not (cache / "manifest.json").exists():
        report = prepare_ave(data, cache, frame_size=spec.frame_size, frontend=get_frontend(spec.audio_frontend),
                             workers=args.workers, progress=args.progress)
        print("      " + report.summary().replace("\n", "\n      "))
    rows = []
    for name, modalities in VARIANTS.items():
        run_dir = out / "runs" / modalities
        print(f"[3/5] train {name} -> {run_dir}")
        if not (run_dir / "results.json").exists():
            model = AveModelConfig(backbone=args.backbone, adapter=PRESETS["ave"], modalities=modalities)
            train = AveTrainConfig(epochs=args.epochs, batch_size=4, lr=1e-3, lr_head=1e-3, patience=args.epochs,
                                   seed=args.seed)
            train_ave(cache, run_dir, model, train, pretrained=False, progress=args.progress, test=False)
        result = evaluate_ave(run_dir / "best.safetensors", cache, split="test", progress=False)
        rows.append((name, result["accuracy"], json.loads((run_dir / "results.json").read_text())["best_val_acc"]))
    print("[4/5] test accuracy (segments, background included)")
    print(f"      {'model':<24} {'val acc':>8} {'test acc':>9}")
    for name, test_acc, val_acc in rows:
        print(f"      {name:<24} {val_acc:>8.3f} {test_acc:>9.3f}")
    table = {name: {"test_accuracy": t, "val_accuracy": v} for name, t, v in rows}
    write_json(out / "results.json", table)
    plot = plot_bars([r[0].split(" (")[0] for r in rows], [r[1] for r in rows],
                     "Synthetic AVE: test accuracy", out / "demo.png")
    model, meta = load_ave_model(out / "runs" / "av" / "best.safetensors")
    from lavish.data.cache import AveCacheDataset

    clip_id = AveCacheDataset(cache, "test").items[AveCacheDataset(cache, "test").indices[0]]["video_id"]
    video = data / "AVE" / f"{clip_id}.mp4"
    pred = predict_video(model, meta, video)
    timeline = plot_timeline(pred["seconds"], pred["frames"], f"{video.name} (audio-visual LAVISH)",
                             out / "timeline.png")
    print(f"[5/5] predict {video}: " + " ".join(s["label"].split(" ")[0][:6] for s in pred["seconds"]))
    print(f"plots: {plot}, {timeline}; table: {out / 'results.json'}; {time.monotonic() - start:.0f} s in all")
    print(REAL_RUN)
    return 0
