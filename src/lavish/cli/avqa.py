"""AVQA sub-commands: ``lavish train avqa``, ``lavish eval avqa``, ``lavish demo avqa`` (and ``lavish info --task avqa``).

Training defaults are the authors' AVQA recipe (spec section 4: the avqa preset m=64, r=8, G=4, Swin LayerNorms
trained, Adam lr 8e-5, StepLR 8/0.1, batch 1). Evaluation prints accuracy per question type (Audio, Visual,
Audio-Visual, their sub-types, overall) next to the answer-prior baseline. Questions about your own videos:
``lavish ask VIDEO "question" --checkpoint FILE``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from lavish.cli.options import adapter_from_args, add_train_options, apply_config_file
from lavish.errors import ConfigError


def info_model(args: argparse.Namespace):
    """The AVQA model on the meta device and one 1-second segment of input (+ a 14-token question).

    The official vocabularies are assumed: 94 question tokens (93 + '<unk>') and 42 answers.
    """
    import torch

    from lavish.media.audio import get_frontend
    from lavish.models.avqa import AvqaModel, AvqaModelConfig
    from lavish.models.input_spec import input_spec

    adapter = adapter_from_args(args, "avqa")
    spec = input_spec(args.backbone, "avqa")
    frontend = get_frontend(spec.audio_frontend)
    with torch.device("meta"):
        model = AvqaModel(AvqaModelConfig(backbone=args.backbone, adapter=adapter))
    inputs = (
        torch.zeros(1, 1, frontend.target_frames, frontend.num_mel_bins, device="meta"),
        torch.zeros(1, 1, 3, *spec.frame_size, device="meta"),
        torch.zeros(1, 14, dtype=torch.long, device="meta"),
    )
    return model, inputs


def register_train(tasks) -> None:
    p = tasks.add_parser("avqa", help="audio-visual question answering (MUSIC-AVQA)", description=__doc__)
    g, t = add_train_options(p, task="avqa", unit="questions",
                             lr_help="learning rate at --base-batch-size (default 8e-5)")
    g.add_argument("--frozen-norms", dest="train_norms", action="store_false", default=None,
                   help="keep the backbone LayerNorms frozen (the authors train them: --is_vit_ln 1)")
    t.add_argument("--lr-rule", choices=("constant", "sqrt", "linear"),
                   help="scale lr with batch/base-batch: constant, sqrt (default), linear (add --warmup-steps)")
    t.add_argument("--base-batch-size", type=int, help="batch size the --lr is meant for (default 1)")
    t.add_argument("--warmup-steps", type=int, help="linear lr warm-up over this many steps (default 0)")
    t.add_argument("--step-size", type=int, help="StepLR period in epochs (default 8)")
    t.add_argument("--gamma", type=float, help="StepLR factor (default 0.1)")
    p.set_defaults(func=run_train, task="avqa")


TRAIN_KEYS = ("epochs", "batch_size", "lr", "lr_rule", "base_batch_size", "warmup_steps", "step_size", "gamma",
              "patience", "seed", "precision", "devices", "num_workers")


def run_train(args: argparse.Namespace) -> int:
    from lavish.models.avqa import AvqaModelConfig
    from lavish.tasks.avqa import AvqaTrainConfig, train_avqa

    apply_config_file(args)
    if not args.data or not args.out:
        raise ConfigError("train needs --data (a prepared cache) and --out (a run folder)")
    adapter = adapter_from_args(args, "avqa")
    model_config = AvqaModelConfig(backbone=args.backbone, adapter=adapter, checkpointing=args.checkpointing or False,
                                   train_norms=args.train_norms is not False)
    overrides = {k: getattr(args, k) for k in TRAIN_KEYS if getattr(args, k) is not None}
    if "precision" in overrides:
        overrides["precision"] = str(overrides["precision"])
    pretrained = (True if args.pretrained is None else args.pretrained) or bool(args.backbone_weights)
    result = train_avqa(args.data, args.out, model_config, AvqaTrainConfig(**overrides), pretrained=pretrained,
                        backbone_weights=args.backbone_weights, resume=args.resume, progress=args.progress)
    if result.best_val_acc is not None:
        test = result.test["overall"] if result.test else None
        print(f"best validation accuracy {result.best_val_acc:.4f} at epoch {result.best_epoch}; test accuracy "
              f"{test if test is None else round(test, 4)}; adapter file {result.adapter} ({result.seconds:.0f} s)")
    return 0


def register_eval(tasks) -> None:
    p = tasks.add_parser("avqa", help="accuracy per question type (Audio / Visual / Audio-Visual)",
                         description=__doc__)
    p.add_argument("--checkpoint", required=True, help="adapter file (best.safetensors of a run)")
    p.add_argument("--data", required=True, help="prepared cache folder")
    p.add_argument("--split", default="test", choices=("train", "val", "test"))
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--backbone-weights", help="local timm checkpoint of the backbone, if the run used one")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run_eval, task="avqa")


def format_table(result: dict, prior: dict | None = None) -> list[str]:
    """Rows 'key  questions  accuracy  prior' in the authors' order (percentages)."""
    from lavish.data.avqa import category_keys

    pct = lambda v: "    -" if v != v else f"{100 * v:5.1f}"  # noqa: E731  (NaN: no question of that type)
    lines = [f"  {'question type':<28} {'n':>6} {'acc %':>6}" + (f" {'prior %':>8}" if prior else "")]
    for key in category_keys():
        row = f"  {key:<28} {result['counts'][key]:>6} {pct(result[key]):>6}"
        lines.append(row + (f" {pct(prior[key]):>8}" if prior else ""))
    return lines


def run_eval(args: argparse.Namespace) -> int:
    from lavish.tasks.avqa import evaluate_avqa

    result = evaluate_avqa(args.checkpoint, args.data, split=args.split, backbone_weights=args.backbone_weights,
                           batch_size=args.batch_size, progress=not args.json)
    if args.json:
        print(json.dumps(result))
        return 0
    print(f"{args.split}: {result['questions']} questions ({result['unanswerable']} with an answer never seen in "
          f"training, {result['left_out']} left out: video not prepared)")
    print("\n".join(format_table(result, result["prior"])))
    return 0


def run_predict(args: argparse.Namespace) -> int:
    raise ConfigError(f"{args.checkpoint} is an AVQA model: ask it a question with "
                      f"`lavish ask VIDEO \"question\" --checkpoint {args.checkpoint}`")


# ------------------------------------------------------------------------------------------------- demo
def run_demo(args: argparse.Namespace) -> int:
    """``lavish demo avqa``: synthetic MUSIC-AVQA-layout data, prepare, train the micro backbone, evaluate per
    question type against the answer-prior baseline, ask one question."""
    from lavish.data.prepare import prepare_avqa
    from lavish.data.synthetic_avqa import make_synthetic_avqa
    from lavish.fileio import write_json
    from lavish.media.audio import get_frontend
    from lavish.models.adapters import PRESETS
    from lavish.models.avqa import AvqaModelConfig
    from lavish.models.input_spec import input_spec
    from lavish.tasks.avqa import AvqaTrainConfig, ask, evaluate_avqa, load_avqa_model, train_avqa

    start = time.monotonic()
    out = Path(args.out)
    data, cache, run_dir = out / "avqa-data", out / "avqa-cache", out / "runs" / "avqa"
    videos, epochs, backbone = args.videos, args.epochs, args.backbone
    print(f"[1/4] synthetic MUSIC-AVQA-layout dataset: {videos} videos -> {data}")
    if not (data / "avqa-test.json").exists():
        make_synthetic_avqa(data, num_videos=videos, seed=args.seed, workers=args.workers)
    spec = input_spec(backbone, "avqa")
    print(f"[2/4] prepare -> {cache}")
    if not (cache / "manifest.json").exists():
        report = prepare_avqa(data, cache, frame_size=spec.frame_size, frontend=get_frontend(spec.audio_frontend),
                              workers=args.workers, progress=args.progress)
        print("      " + report.summary().replace("\n", "\n      "))
    print(f"[3/4] train {backbone} with LAVISH adapters -> {run_dir}")
    if not (run_dir / "results.json").exists():
        model = AvqaModelConfig(backbone=backbone, adapter=PRESETS["avqa_paper"])
        train = AvqaTrainConfig(epochs=epochs, batch_size=8, lr=1e-3, lr_rule="constant", step_size=epochs,
                                patience=epochs, seed=args.seed)
        train_avqa(cache, run_dir, model, train, pretrained=False, progress=args.progress, test=False)
    result = evaluate_avqa(run_dir / "best.safetensors", cache, split="test", progress=False)
    print(f"[4/4] test accuracy per question type ({result['questions']} questions) vs the answer prior "
          "(most frequent training answer per type)")
    print("\n".join("      " + line for line in format_table(result, result["prior"])))
    write_json(out / "avqa-results.json", result)
    model, meta, vocab = load_avqa_model(run_dir / "best.safetensors")
    video = sorted((data / "videos").glob("*.mp4"))[0]
    question = "How many instruments are sounding in the video?"
    answer = ask(model, meta, vocab, video, question)
    best = answer["answers"][0]
    print(f"ask {video.name} {question!r}: {best['answer']} ({best['probability']:.2f})")
    print(f"table: {out / 'avqa-results.json'}; {time.monotonic() - start:.0f} s in all")
    print("A real run: lavish prepare avqa --root MUSIC-AVQA --out avqa-cache --workers 8; "
          "lavish train avqa --data avqa-cache --out runs/avqa (see docs/avqa.md)")
    return 0
