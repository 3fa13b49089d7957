"""MUSIC-AVQA: audio-visual question answering (spec 3.3, 4) on the Task interface.

Recipe (the authors' README command, ``AVQA/net_grd_avst/main_avst.py``): Adam, lr 8e-5 for everything trainable
(adapters, head, Swin LayerNorms), StepLR(8 epochs, 0.1), batch 1 question (10 segments), loss
``CE(answer) + 0.5 * CE(match)`` where the match rows are the B*T positive (own frames, label 1) and B*T negative
(frames of other videos, label 0) segments, 30 epochs, early stopping after 5. Accuracy per question type as
their ``test()`` (:func:`lavish.tasks.avqa.layout.category_accuracy`).

Negatives (spec 2.3): for each of the T positions, the frame at a random segment of a random OTHER video of the
same split, drawn from a generator seeded by (seed, epoch, question index): deterministic per seed, new every
epoch, the same under any number of workers or processes (the epoch travels with the index from the sampler).

Larger batches (issue 7 item 5, docs/avqa.md): ``lr_rule`` scales the learning rate with the batch size relative to
``base_batch_size`` (the authors' 1): ``constant`` (lr as given), ``sqrt`` (lr * sqrt(B / B0), the default: keeps
the update noise of Adam roughly constant without the instability users met when scaling lr linearly) or ``linear``
(lr * B / B0, use with ``warmup_steps``). ``warmup_steps`` ramps the lr linearly from 0 over the first steps.

Where we differ from the authors' script, on purpose: model selection and early stopping on the validation
split's overall accuracy (theirs too), but the test categories are read from the records of the evaluated split
(theirs from a hard-coded test json by batch index, misaligned during training: quirk 13); unknown words map to
``'<unk>'``; val/test questions whose answer never occurs in the training file count as wrong (the model cannot
output it) and are reported as ``unanswerable``; questions whose video could not be prepared are left out and counted.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from dataclasses import dataclass
from pathlib import Path


import numpy as np
import torch
from torchmetrics.aggregation import MeanMetric

from lavish.engine.module import TaskModule
from lavish.engine.runner import TrainConfig
from lavish.engine.task import DemoOptions, Option, Task, TrainResult
from lavish.errors import CheckpointError, ConfigError
from lavish.media.frames import normalize_frames
from lavish.tasks.avqa import layout as avqa
from lavish.tasks.avqa.dataset import AvqaDataModule, Vocabularies, split_records
from lavish.tasks.avqa.metrics import AvqaEvaluation, format_table
from lavish.tasks.avqa.model import AvqaModel, AvqaModelConfig, AvqaOutput, avqa_loss
from lavish.tasks.avqa.plots import plot_attention
from lavish.tasks.avqa.prepare import prepare_avqa
from lavish.tasks.avqa.synthetic import make_synthetic_avqa

LR_RULES = {"constant": lambda r: 1.0, "sqrt": math.sqrt, "linear": lambda r: r}


@dataclass
class AvqaTrainConfig(TrainConfig):
    """Training settings; defaults are the authors' AVQA recipe."""

    epochs: int = 30
    batch_size: int = 1
    lr: float = 8e-5
    """learning rate at ``base_batch_size``; scaled by ``lr_rule`` for other batch sizes"""
    seed: int = 1
    lr_rule: str = "sqrt"
    base_batch_size: int = 1
    warmup_steps: int = 0
    step_size: int = 8
    """StepLR: multiply the lr by ``gamma`` every ``step_size`` epochs"""
    gamma: float = 0.1

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("base_batch_size", "step_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"{name.replace('_', '-')}={value!r} is not valid: it must be a positive integer")
        if not (isinstance(self.gamma, (int, float)) and 0 < self.gamma <= 1):
            raise ConfigError(f"gamma={self.gamma!r} is not valid: it must be in (0, 1]")
        if self.lr_rule not in LR_RULES:
            raise ConfigError(f"lr-rule={self.lr_rule!r} is not valid: choose one of {', '.join(LR_RULES)}")
        if self.lr_rule == "constant" and self.base_batch_size != 1:
            raise ConfigError(f"base-batch-size={self.base_batch_size} does not apply with lr-rule constant, which "
                              "uses --lr as given at any batch size")
        if not isinstance(self.warmup_steps, int) or self.warmup_steps < 0:
            raise ConfigError(f"warmup-steps={self.warmup_steps!r} is not valid: it must be an integer >= 0")

    @property
    def scaled_lr(self) -> float:
        """The lr the optimiser starts from (before warm-up and steps): lr * rule(batch / base)."""
        return self.lr * LR_RULES[self.lr_rule](self.batch_size / self.base_batch_size)


# ---------------------------------------------------------------------------------------------- evaluate
def vocabularies(meta: dict, checkpoint: str | Path) -> Vocabularies:
    """The question / answer vocabularies an AVQA adapter file's meta holds."""
    try:
        return Vocabularies.from_meta(meta)
    except (TypeError, KeyError, ValueError) as err:
        raise CheckpointError(f"checkpoint {checkpoint} holds unusable vocabularies ({err})") from None


# --------------------------------------------------------------------------------------------------- ask
def encode_free_question(text: str, vocab: avqa.Vocab) -> tuple[np.ndarray, list[str]]:
    """A user's question -> ((14,) ids, words not in the vocabulary (mapped to '<unk>')).

    The question is tokenised as the training ones (no template values: a placeholder like ``<Object>`` is
    refused, write the instrument's name instead); an empty question is refused.
    """
    if not text.strip() or not text.strip().rstrip("?？").strip():
        raise ConfigError("empty question: ask something, e.g. \"How many instruments are sounding?\"")
    text = text.rstrip()
    if text[-1] not in "?？":
        text += "?"  # the tokeniser drops the last character, as the authors' (the question mark)
    record = avqa.AvqaRecord("", 0, "Audio", "Counting", text, (), "", source="question")
    if any("<" in w for w in text.split(" ")):
        raise ConfigError(f"question {text!r} has a template placeholder: write the value (e.g. the instrument) instead")
    unknown = [w for w in avqa.tokenize(record) if w not in vocab]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a question longer than 14 tokens is truncated, as in training
        return avqa.encode_question(record, vocab), unknown


@torch.no_grad()
def ask(model: AvqaModel, meta: dict, video: str | Path, question: str, *, top_k: int = 5, plot=None,
        arrays: bool = False) -> dict:
    """Answer ``question`` about ``video``: {video, question, unknown_words, has_audio, answers: [{answer,
    probability}] (top ``top_k``), segments: [{segment, time_s, visual_weight, audio_weight, region: {row, col,
    grid, weight}}]}: the segments (and their times) the question attended to, and per segment the most attended
    visual token (row, col of the token grid). ``plot``: also draw the frames with the attended regions into this
    PNG (``plot`` key); ``arrays``: add ``spatial`` (T, gh, gw) attention maps and ``frames`` (T, H, W, 3) uint8.
    """
    from lavish.media.stream import VideoStream

    vocab = vocabularies(meta, "the model")
    ids, unknown = encode_free_question(question, vocab.question)
    stream = VideoStream(video, num_segments=int(meta.get("num_segments", 10)), frame_size=tuple(meta["frame_size"]),
                         frontend=meta["frontend"])  # T segments over the whole video, decoded in bounded memory
    (clip,) = stream.windows(stream.num_segments)
    frames = normalize_frames(torch.from_numpy(clip.frames), *model.backbone.frame_stats)[None]
    audio = torch.from_numpy(clip.spectrograms)[None]
    out = model(audio, frames, torch.from_numpy(ids)[None])
    probs = out.logits[0].float().softmax(-1)
    k = min(top_k, probs.numel())
    top = probs.topk(k)
    spatial = out.spatial[0]  # (T, N)
    n = spatial.shape[-1]
    side = int(round(math.sqrt(n)))
    grid = (side, n // side) if side * (n // side) == n else (1, n)
    segments = []
    for t in range(spatial.shape[0]):
        cell = int(spatial[t].argmax())
        segments.append({
            "segment": t, "time_s": round(float(clip.times[t]), 2),
            "visual_weight": round(float(out.temporal_visual[0, t]), 4),
            "audio_weight": round(float(out.temporal_audio[0, t]), 4),
            "region": {"row": cell // grid[1], "col": cell % grid[1], "grid": list(grid),
                       "weight": round(float(spatial[t, cell]), 4)},
        })
    result = {
        "video": str(video), "question": question, "unknown_words": unknown, "has_audio": stream.has_audio,
        "answers": [{"answer": vocab.answer.tokens[int(i)], "probability": round(float(p), 4)}
                    for p, i in zip(top.values, top.indices)],
        "segments": segments,
    }
    maps = spatial.reshape(spatial.shape[0], *grid).numpy()
    if plot is not None:
        result["plot"] = str(plot_attention(clip.frames, maps, result, plot))
    if arrays:
        result.update(spatial=maps, frames=clip.frames)
    return result


class AvqaTask(Task):
    """Audio-visual question answering: one of 42 answers to a question about a 60-s music video."""

    name = "avqa"
    demo_clips = "avqa-data/videos"
    order = 2
    title = "audio-visual question answering (MUSIC-AVQA)"
    unit = "questions"
    model_config_cls = AvqaModelConfig
    model_cls = AvqaModel
    train_config_cls = AvqaTrainConfig
    data_module_cls = AvqaDataModule
    prepare = staticmethod(prepare_avqa)
    synthetic = staticmethod(make_synthetic_avqa)
    summary = (("overall", "accuracy"),)
    monitor = "acc"
    eval_loss = False  # validation has no negatives: its loss is not the training loss
    lr_help = "learning rate at --base-batch-size"
    options = (
        Option(("--frozen-norms",), {"dest": "train_norms", "action": "store_false", "default": None,
                                     "help": "keep the backbone LayerNorms frozen (the authors train them: "
                                             "--is_vit_ln 1)"}),
        Option(("--train-norms",), {"dest": "train_norms", "action": "store_true", "default": None,
                                    "help": "train the backbone LayerNorms (the default; overrides train_norms: "
                                            "false in a --config file)"}),
        Option(("--lr-rule",), {"choices": tuple(LR_RULES),
                                "help": "scale lr with batch/base-batch: constant, sqrt (default), linear "
                                        "(add --warmup-steps)"}),
        Option(("--base-batch-size",), {"type": int, "help": "batch size the --lr is meant for"}),
        Option(("--warmup-steps",), {"type": int, "help": "linear lr warm-up over this many steps"}),
        Option(("--step-size",), {"type": int, "help": "StepLR period in epochs"}),
        Option(("--gamma",), {"type": float, "help": "StepLR factor"}),
    )
    real_run = ("A real run: lavish prepare avqa --root MUSIC-AVQA --out avqa-cache --workers 8; "
                "lavish train avqa --data avqa-cache --out runs/avqa (see docs/avqa.md)")

    def data_module(self, data, *, backbone, batch_size, seed=1, num_workers=0, model_config=None, meta=None):
        vocab = vocabularies(meta, "the checkpoint") if meta is not None else None
        return AvqaDataModule(data, backbone=backbone, batch_size=batch_size, seed=seed, num_workers=num_workers,
                              vocab=vocab)

    def fit_model_config(self, model_config: AvqaModelConfig, dm: AvqaDataModule):
        config = dataclasses.replace(model_config, question_vocab=len(dm.vocab.question),
                                     num_answers=len(dm.vocab.answer))
        return config, dm.vocab.to_meta()

    def info_inputs(self, model_config, frontend, frame_size):
        """One segment and a 14-token question (the official vocabularies: 94 question tokens, 42 answers)."""
        return (*super().info_inputs(model_config, frontend, frame_size),
                torch.zeros(1, avqa.MAX_LEN, dtype=torch.long, device="meta"))

    def forward(self, model: AvqaModel, batch: dict) -> AvqaOutput:
        negatives = normalize_frames(batch["negatives"], *model.backbone.frame_stats) if "negatives" in batch else None
        return model(batch["audio"], normalize_frames(batch["frames"], *model.backbone.frame_stats), batch["question"], negatives)

    def loss(self, out: AvqaOutput, batch: dict) -> torch.Tensor:
        return avqa_loss(out, batch["answer"])

    def batch_size(self, batch: dict) -> int:
        return int(batch["answer"].shape[0])

    def metrics(self, stage: str, model: AvqaModel) -> dict:
        return {"acc": MeanMetric()}

    def update_metrics(self, metrics, out: AvqaOutput, batch: dict) -> None:
        metrics["acc"].update((out.logits.argmax(-1) == batch["answer"]).float())

    def configure_optimizers(self, module: TaskModule):
        cfg = module.train_config
        params = [p for p in module.model.parameters() if p.requires_grad]
        optimizer = torch.optim.Adam(params, lr=cfg.scaled_lr)
        trainer = module.trainer
        steps_per_epoch = max(1, int(trainer.estimated_stepping_batches) // max(1, trainer.max_epochs))

        def factor(step: int) -> float:
            warm = min(1.0, (step + 1) / cfg.warmup_steps) if cfg.warmup_steps else 1.0
            return warm * cfg.gamma ** ((step // steps_per_epoch) // cfg.step_size)

        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def results(self, result: TrainResult) -> dict:
        test = None if result.test is None else {k: result.test[k] for k in avqa.category_keys()}
        return {"best_epoch": result.best_epoch, "best_val_acc": result.best_value, "test": test,
                "epochs_run": result.epochs_run, "seconds": round(result.seconds, 1)}

    def evaluation(self, model, meta, dm: AvqaDataModule, split: str) -> AvqaEvaluation:
        return AvqaEvaluation(dm.dataset(split), dm.vocab, split_records(dm.cache_dir, "train"), split)

    def eval_lines(self, result: dict) -> list[str]:
        return [f"{result['split']}: {result['questions']} questions ({result['unanswerable']} with an answer never "
                f"seen in training, {result['left_out']} left out: video not prepared)",
                *format_table(result, result["prior"])]

    def predict(self, model, meta, video, **options) -> dict:
        raise ConfigError("this is an AVQA model: ask it a question with "
                          "`lavish ask VIDEO \"question\" --checkpoint FILE`")

    def ask(self, model: AvqaModel, meta: dict, video, question: str, **options) -> dict:
        return ask(model, meta, video, question, **options)

    def ask_lines(self, res: dict) -> list[str]:
        lines = [f"{res['video']}: {res['question']}" + ("" if res["has_audio"] else " (no audio stream: silence)")]
        if res["unknown_words"]:
            lines.append(f"  words never seen in training (read as <unk>): {', '.join(res['unknown_words'])}")
        lines += [f"  {a['answer']:<20} {a['probability']:.3f}" for a in res["answers"]]
        lines.append(f"  {'time s':>7} {'visual':>7} {'audio':>7}  attended region (row, col of grid)")
        for s in res["segments"]:
            r = s["region"]
            lines.append(f"  {s['time_s']:>7.1f} {s['visual_weight']:>7.3f} {s['audio_weight']:>7.3f}  "
                         f"({r['row']}, {r['col']}) of {r['grid'][0]}x{r['grid'][1]}, weight {r['weight']:.2f}")
        if res.get("plot"):
            lines.append(f"  plot: {res['plot']}")
        return lines

    def demo(self, options: DemoOptions) -> int:
        """Synthetic MUSIC-AVQA-layout data, prepare, train the micro backbone, evaluate per question type against
        the answer-prior baseline, ask one question."""
        from lavish.engine.demo import Demo
        from lavish.fileio import write_json
        from lavish.models.adapters import PRESETS

        demo = Demo(self, options, steps=4, data="avqa-data", cache="avqa-cache")
        demo.dataset(f"synthetic MUSIC-AVQA-layout dataset: {options.videos} videos", "avqa-test.json",
                     lambda data: make_synthetic_avqa(data, num_videos=options.videos, seed=options.seed,
                                                      workers=options.workers))
        demo.prepare()
        adapter = demo.train(f"{demo.backbone} with LAVISH adapters", demo.out / "runs" / "avqa",
                             AvqaModelConfig(backbone=demo.backbone, adapter=PRESETS["avqa_paper"]),
                             AvqaTrainConfig(epochs=options.epochs, batch_size=8, lr=1e-3, lr_rule="constant",
                                             step_size=options.epochs, patience=options.epochs, seed=options.seed))
        result = demo.evaluate(adapter)
        print(f"[4/4] test accuracy per question type ({result['questions']} questions) vs the answer prior "
              "(most frequent training answer per type)")
        print("\n".join("      " + line for line in format_table(result, result["prior"])))
        write_json(demo.out / "avqa-results.json", result)
        _, model, meta = demo.load(adapter)
        video = sorted((demo.data / "videos").glob("*.mp4"))[0]
        question = "How many instruments are sounding in the video?"
        best = ask(model, meta, video, question)["answers"][0]
        print(f"ask {video.name} {question!r}: {best['answer']} ({best['probability']:.2f})")
        return demo.finish(f"table: {demo.out / 'avqa-results.json'}")


