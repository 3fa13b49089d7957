"""AVS sub-commands: ``lavish train avs``, ``lavish eval avs``, AVS predictions and ``lavish demo avs``.

Training defaults are the authors' AVS-S4 README run (spec 4): Swin-V2-L, AVS adapter preset, no TPAVI
(``--tpavi all`` = their train.sh), Adam lr 1e-4, batch 4 clips, 30 epochs, patience 5; selection on the
validation split. ``--subset`` says which AVSBench subset the cache must hold (S4 trains on the first frame's
mask only, MS3 on all five; the cache knows which frames are annotated). Evaluation prints the benchmark's
mIoU and F-score (beta^2 = 0.3).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from lavish.cli.options import adapter_from_args, add_train_options, apply_config_file
from lavish.errors import ConfigError


def _tpavi_stages(name: str | None) -> tuple[int, ...]:
    from lavish.models.avs import TPAVI_PRESETS

    return TPAVI_PRESETS[name or "none"]


def info_model(args: argparse.Namespace):
    """The AVS model on the meta device (no memory, no download) and one 1-second segment of input."""
    import torch

    from lavish.media.audio import get_frontend
    from lavish.models.avs import AvsModel, AvsModelConfig
    from lavish.models.input_spec import input_spec

    adapter = adapter_from_args(args, "avs")  # also fills the model defaults
    if args.modalities not in ("av", "v"):
        raise ConfigError(f"--modalities {args.modalities} is not valid for AVS: choose av or v")
    spec = input_spec(args.backbone, "avs")
    frontend = get_frontend(spec.audio_frontend)
    with torch.device("meta"):
        model = AvsModel(AvsModelConfig(backbone=args.backbone, adapter=adapter, modalities=args.modalities,
                                        tpavi_stages=_tpavi_stages(getattr(args, "tpavi", None))))
    inputs = (
        torch.zeros(1, 1, frontend.target_frames, frontend.num_mel_bins, device="meta"),
        torch.zeros(1, 1, 3, *spec.frame_size, device="meta"),
    )
    return model, inputs


def register_train(tasks) -> None:
    from lavish.data.avs import SUBSETS
    from lavish.models.avs import TPAVI_PRESETS

    p = tasks.add_parser("avs", help="audio-visual segmentation (AVSBench S4 / MS3)", description=__doc__)
    p.add_argument("--subset", choices=list(SUBSETS), help="AVSBench subset the cache must hold (default: any)")
    _, t = add_train_options(p, task="avs", unit="clips",
                             lr_help="learning rate of everything trainable (default 1e-4)")
    t.add_argument("--tpavi", choices=list(TPAVI_PRESETS),
                   help="TPAVI stages: none (README run, default) or all four (train.sh)")
    t.add_argument("--decoder-channels", type=int, help="decoder width (default 256, the authors')")
    p.set_defaults(func=run_train, task="avs")


def _check_subset(data: str, subset: str | None) -> None:
    from lavish.data.cache import read_json
    from lavish.data.prepare import AVS_INFO

    info_path = Path(data) / AVS_INFO
    if subset and info_path.exists() and read_json(info_path).get("subset") != subset:
        raise ConfigError(f"{data}: cache holds AVSBench {read_json(info_path).get('subset')}, not --subset {subset}")


def run_train(args: argparse.Namespace) -> int:
    from lavish.models.avs import AvsModelConfig
    from lavish.tasks.avs import AvsTrainConfig, train_avs

    apply_config_file(args)
    if not args.data or not args.out:
        raise ConfigError("train needs --data (a prepared cache) and --out (a run folder)")
    _check_subset(args.data, args.subset)
    adapter = adapter_from_args(args, args.task)  # also fills the model defaults
    model_config = AvsModelConfig(backbone=args.backbone, adapter=adapter, modalities=args.modalities,
                                  tpavi_stages=_tpavi_stages(args.tpavi),
                                  decoder_channels=args.decoder_channels or 256,
                                  checkpointing=args.checkpointing or False)
    overrides = {k: getattr(args, k) for k in ("epochs", "batch_size", "lr", "patience", "seed", "precision",
                                               "devices", "num_workers") if getattr(args, k) is not None}
    if "precision" in overrides:
        overrides["precision"] = str(overrides["precision"])
    train_config = AvsTrainConfig(**overrides)
    pretrained = True if args.pretrained is None else args.pretrained
    result = train_avs(args.data, args.out, model_config, train_config,
                       pretrained=pretrained or bool(args.backbone_weights), backbone_weights=args.backbone_weights,
                       resume=args.resume, progress=args.progress)
    if result.best_val_miou is not None:
        test = result.test or {}
        print(f"best validation mIoU {result.best_val_miou:.4f} at epoch {result.best_epoch}; test mIoU "
              f"{test.get('miou', float('nan')):.4f}, F-score {test.get('fscore', float('nan')):.4f}; "
              f"adapter file {result.adapter} ({result.seconds:.0f} s)")
    return 0


def register_eval(tasks) -> None:
    p = tasks.add_parser("avs", help="benchmark mIoU and F-score on a split", description=__doc__)
    p.add_argument("--checkpoint", required=True, help="adapter file (best.safetensors of a run)")
    p.add_argument("--data", required=True, help="prepared cache folder")
    p.add_argument("--split", default="test", choices=("train", "val", "test"))
    p.add_argument("--backbone-weights", help="local timm checkpoint of the backbone, if the run used one")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run_eval, task="avs")


def run_eval(args: argparse.Namespace) -> int:
    from lavish.tasks.avs import evaluate_avs

    result = evaluate_avs(args.checkpoint, args.data, split=args.split, backbone_weights=args.backbone_weights,
                          progress=not args.json)
    if args.json:
        print(json.dumps(result))
        return 0
    print(f"{result['subset']} {args.split}: mIoU {result['miou']:.4f}, F-score {result['fscore']:.4f} "
          f"over {result['videos']} clips ({result['frames']} annotated frames)")
    return 0


def run_predict(args: argparse.Namespace) -> int:
    """``lavish predict VIDEO... --checkpoint AVS_FILE --out DIR``: per-second mask PNGs and a contact sheet."""
    import sys

    from lavish.errors import LavishError
    from lavish.tasks.avs import load_avs_model, predict_avs_video

    if not args.out:
        raise ConfigError("AVS predictions are files: pass --out DIR")
    model, meta = load_avs_model(args.checkpoint, backbone_weights=args.backbone_weights)
    results, failed = [], 0
    for video in args.videos:
        try:
            res = predict_avs_video(model, meta, video, args.out)
        except LavishError as err:
            if len(args.videos) == 1:
                raise
            print(f"error: {err}", file=sys.stderr)
            failed += 1
            continue
        results.append(res)
        if not args.json:
            print(f"{video} ({res['duration']:.1f} s{'' if res['has_audio'] else ', no audio'}): "
                  f"{len(res['masks'])} masks, coverage " + " ".join(f"{c:.2f}" for c in res["coverage"]))
            print(f"  contact sheet: {res['sheet']}")
    if args.json:
        print(json.dumps(results))
    return 1 if failed else 0


DEMO_BACKBONE = "lavish_swinv2_micro_window4_64"


def run_demo(args: argparse.Namespace) -> int:
    """``lavish demo avs``: synthetic S4-layout data -> prepare -> train (LAVISH + TPAVI, micro Swin-V2) ->
    test mIoU / F-score next to the all-background and all-object baselines -> predict one clip."""
    from lavish.data.prepare import prepare_avs
    from lavish.data.synthetic_avs import make_synthetic_avs
    from lavish.fileio import write_json
    from lavish.media.audio import get_frontend
    from lavish.media.writer import write_video
    from lavish.models.avs import AvsModelConfig
    from lavish.models.input_spec import input_spec
    from lavish.tasks.avs import (AvsTrainConfig, baseline_scores, evaluate_avs, load_avs_model,
                                  predict_avs_video, train_avs)

    if args.videos < 12:
        raise ConfigError(f"videos={args.videos} is not valid: the AVS demo needs at least 12")
    start = time.monotonic()
    backbone = DEMO_BACKBONE if args.backbone == "lavish_vit_micro_patch8_64" else args.backbone
    out = Path(args.out)
    data, cache = out / "data", out / "cache"
    print(f"[1/5] synthetic AVSBench-S4 dataset: {args.videos} clips -> {data}")
    if not (data / "s4_meta_data.csv").exists():
        make_synthetic_avs(data, num_videos=args.videos, num_classes=args.classes, seed=args.seed)
    spec = input_spec(backbone, "avs")
    print(f"[2/5] prepare -> {cache}")
    if not (cache / "manifest.json").exists():
        report = prepare_avs(data, cache, frame_size=spec.frame_size, frontend=get_frontend(spec.audio_frontend),
                             workers=args.workers, progress=args.progress)
        print("      " + report.summary().replace("\n", "\n      "))
    run_dir = out / "runs" / "avs"
    print(f"[3/5] train LAVISH + TPAVI ({backbone}) -> {run_dir}")
    if not (run_dir / "results.json").exists():
        model = AvsModelConfig(backbone=backbone, tpavi_stages=(0, 1, 2, 3), decoder_channels=64)
        train = AvsTrainConfig(epochs=args.epochs, batch_size=4, lr=1e-3, patience=args.epochs, seed=args.seed)
        train_avs(cache, run_dir, model, train, pretrained=False, progress=args.progress, test=False)
    result = evaluate_avs(run_dir / "best.safetensors", cache, split="test", progress=False)
    rows = {"LAVISH (audio-visual)": {"miou": result["miou"], "fscore": result["fscore"]},
            **baseline_scores(cache, backbone=backbone, split="test")}
    print(f"[4/5] test split ({result['videos']} clips, {result['frames']} annotated frames)")
    print(f"      {'model':<24} {'mIoU':>7} {'F-score':>8}")
    for name, r in rows.items():
        print(f"      {name:<24} {r['miou']:>7.3f} {r['fscore']:>8.3f}")
    write_json(out / "results.json", rows)
    from lavish.data.avs import read_avs
    from lavish.media.decode import read_audio

    rec = next(r for r in read_avs(data, "s4") if r.split == "test")
    import numpy as np
    from PIL import Image

    frames = np.stack([np.asarray(Image.open(p).convert("RGB")) for p in rec.frames])
    video = write_video(out / f"{rec.name}.mp4", np.repeat(frames, 4, axis=0), 4, read_audio(rec.audio))
    model, meta = load_avs_model(run_dir / "best.safetensors")
    pred = predict_avs_video(model, meta, video, out / "predict")
    print(f"[5/5] predict {video}: contact sheet {pred['sheet']}")
    print(f"table: {out / 'results.json'}; {time.monotonic() - start:.0f} s in all")
    return 0
