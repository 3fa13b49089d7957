"""MUSIC-AVQA: audio-visual question answering (spec 3.3, 4) on the Task interface.

Recipe (the authors' README command, ``AVQA/net_grd_avst/main_avst.py``): Adam, lr 8e-5 for everything trainable
(adapters, head, Swin LayerNorms), StepLR(8 epochs, 0.1), batch 1 question (10 segments), loss
``CE(answer) + 0.5 * CE(match)`` where the match rows are the B*T positive (own frames, label 1) and B*T negative
(frames of other videos, label 0) segments, 30 epochs, early stopping after 5. Accuracy per question type as
their ``test()`` (:func:`lavish.data.avqa.category_accuracy`).

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
import time
import warnings
from collections import Counter
from dataclasses import dataclass
from pathlib import Path


import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset, DistributedSampler
from torchmetrics.aggregation import MeanMetric

from lavish.data import avqa
from lavish.data.cache import audio_path, frames_path, read_json, read_manifest
from lavish.data.prepare import prepare_avqa
from lavish.errors import CheckpointError, ConfigError, DataError
from lavish.media.frames import normalize_frames
from lavish.models.avqa import AvqaModel, AvqaModelConfig, AvqaOutput
from lavish.tasks.base import DemoOptions, Evaluation, Option, Task, TaskModule, TrainResult
from lavish.tasks.runner import SplitDataModule, TrainConfig

LR_RULES = {"constant": lambda r: 1.0, "sqrt": math.sqrt, "linear": lambda r: r}
MATCH_WEIGHT = 0.5
IGNORE = -1
"""answer id of a question whose answer is not in the training answers (ignored by the loss, counted wrong)."""


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


# --------------------------------------------------------------------------------------------------- data
@dataclass(frozen=True)
class Vocabularies:
    """Question and answer vocabularies of a model (built from the training json, stored in the adapter file)."""

    question: avqa.Vocab
    answer: avqa.Vocab

    def to_meta(self) -> dict:
        return {"question_vocab": list(self.question.tokens), "answers": list(self.answer.tokens)}

    @classmethod
    def from_meta(cls, meta: dict) -> "Vocabularies":
        tokens = tuple(meta["question_vocab"])
        return cls(avqa.Vocab(tokens, unknown=tokens.index(avqa.UNK)), avqa.Vocab(tuple(meta["answers"])))

    @classmethod
    def from_records(cls, train: list[avqa.AvqaRecord]) -> "Vocabularies":
        return cls(avqa.build_question_vocab(train), avqa.build_answer_vocab(train))


def split_records(cache_dir: Path, split: str) -> list[avqa.AvqaRecord]:
    """Every question of ``split`` (the json copied into the cache by ``lavish prepare avqa``)."""
    return avqa.read_avqa_json(Path(cache_dir) / f"avqa-{split}.json")


class EpochSampler(DistributedSampler):
    """DistributedSampler yielding ``(index, epoch)``, so datasets draw per-epoch randomness in any worker."""

    def __iter__(self):
        epoch = self.epoch
        return ((i, epoch) for i in super().__iter__())


class AvqaQuestions(Dataset):
    """Questions of one split of a prepared AVQA cache whose video was prepared.

    ``ds[i]`` or ``ds[(i, epoch)]`` -> dict(frames uint8 (T,H,W,3), audio float32 (T,F,M), question int64 (L,),
    answer int64 (IGNORE if not in the answer vocabulary), index int, negatives uint8 (T,H,W,3) if ``negatives``).
    """

    def __init__(self, cache_dir: Path | str, split: str, vocab: Vocabularies, *, negatives: bool = False,
                 seed: int = 0) -> None:
        self.cache_dir = Path(cache_dir)
        manifest = read_manifest(self.cache_dir)
        items = read_json(self.cache_dir / "videos.json")
        prepared = {it["video_id"] for it in items}
        all_records = split_records(self.cache_dir, split)
        self.records = [r for r in all_records if r.video_id in prepared]
        self.dropped = len(all_records) - len(self.records)
        self.videos = sorted({r.video_id for r in self.records})
        self.video_index = {v: i for i, v in enumerate(self.videos)}
        self.questions = np.stack([avqa.encode_question(r, vocab.question) for r in self.records]) \
            if self.records else np.zeros((0, avqa.MAX_LEN), np.int64)
        self.answers = np.array([vocab.answer.id(r.answer) if r.answer in vocab.answer else IGNORE
                                 for r in self.records], dtype=np.int64)
        self.negatives, self.seed = negatives, seed
        self.num_segments = int(manifest["num_segments"])
        if negatives and len(self.videos) < 2:
            raise DataError(f"{self.cache_dir}: split {split!r} has {len(self.videos)} prepared video(s); negatives "
                            "come from other videos, at least 2 are needed")

    def __len__(self) -> int:
        return len(self.records)

    def _frames(self, vid: str) -> np.ndarray:
        return np.load(frames_path(self.cache_dir, vid), mmap_mode="r")

    def negative_frames(self, i: int, epoch: int) -> np.ndarray:
        """(T, H, W, 3): per position, a random segment of a random other video (seeded by seed, epoch, i)."""
        rng = np.random.default_rng([self.seed, epoch, i])
        own = self.video_index[self.records[i].video_id]
        others = rng.integers(0, len(self.videos) - 1, self.num_segments)
        others = others + (others >= own)  # skip the question's own video
        segments = rng.integers(0, self.num_segments, self.num_segments)
        return np.stack([np.asarray(self._frames(self.videos[v])[s]) for v, s in zip(others, segments)])

    def __getitem__(self, key) -> dict:
        i, epoch = key if isinstance(key, tuple) else (key, 0)
        rec = self.records[i]
        item = {
            "frames": torch.from_numpy(np.array(self._frames(rec.video_id), dtype=np.uint8)),
            "audio": torch.from_numpy(np.asarray(np.load(audio_path(self.cache_dir, rec.video_id)), np.float32)),
            "question": torch.from_numpy(self.questions[i].copy()),
            "answer": torch.tensor(int(self.answers[i])),
            "index": i,
        }
        if self.negatives:
            item["negatives"] = torch.from_numpy(self.negative_frames(i, epoch))
        return item


def collate(items: list[dict]) -> dict:
    keys = [k for k in ("frames", "audio", "question", "answer", "negatives") if k in items[0]]
    out = {k: torch.stack([it[k] for it in items]) for k in keys}
    out["index"] = [it["index"] for it in items]
    return out


class AvqaDataModule(SplitDataModule):
    """Train (with negatives) / val / test questions of a prepared AVQA cache."""

    TASK, COLLATE, ITEMS, SAMPLER = "avqa", collate, "question with a prepared video", EpochSampler

    def __init__(self, cache_dir: str | Path, *, backbone: str, batch_size: int = 1, seed: int = 1,
                 num_workers: int = 0, vocab: Vocabularies | None = None) -> None:
        super().__init__(cache_dir, backbone=backbone, batch_size=batch_size, seed=seed, num_workers=num_workers)
        self.vocab = vocab or Vocabularies.from_records(split_records(self.cache_dir, "train"))

    def make_dataset(self, split: str) -> AvqaQuestions:
        return AvqaQuestions(self.cache_dir, split, self.vocab, negatives=split == "train", seed=self.seed)


# --------------------------------------------------------------------------------------------------- model
def avqa_loss(out: AvqaOutput, answers: torch.Tensor) -> torch.Tensor:
    """CE(answer) + 0.5 * CE(match), in float32. Match rows interleaved [posi_0, nega_0, posi_1, ...] as the
    authors, labels 1 / 0. answers: (B,) int64 (IGNORE rows do not count)."""
    with torch.autocast(device_type=out.logits.device.type, enabled=False):
        loss = F.cross_entropy(out.logits.float(), answers, ignore_index=IGNORE)
        if out.match_nega is not None:
            match = torch.stack([out.match_posi, out.match_nega], dim=1).flatten(0, 1).float()
            labels = torch.ones(match.shape[0], dtype=torch.long, device=match.device)
            labels[1::2] = 0
            loss = loss + MATCH_WEIGHT * F.cross_entropy(match, labels)
    return loss


# ---------------------------------------------------------------------------------------------- evaluate
def vocabularies(meta: dict, checkpoint: str | Path) -> Vocabularies:
    """The question / answer vocabularies an AVQA adapter file's meta holds."""
    try:
        return Vocabularies.from_meta(meta)
    except (TypeError, KeyError, ValueError) as err:
        raise CheckpointError(f"checkpoint {checkpoint} holds unusable vocabularies ({err})") from None


def avqa_scores(records: list[avqa.AvqaRecord], predictions: list[str]) -> dict:
    """Accuracy per question type (fractions; spec 3.3) and question counts of predicted answer strings.

    Returns {<each key of category_keys()>: accuracy, "counts": {key: questions}, "questions": n}.
    """
    if len(predictions) != len(records):
        raise ValueError(f"{len(predictions)} predictions for {len(records)} questions")
    correct = [p == r.answer for p, r in zip(predictions, records)]
    return {**avqa.category_accuracy(records, correct), "counts": avqa.category_counts(records),
            "questions": len(records)}


def answer_prior(train: list[avqa.AvqaRecord]) -> dict[tuple[str, str], str]:
    """Most frequent training answer per (major, minor) question type (ties: first seen)."""
    counts: dict[tuple[str, str], Counter] = {}
    for rec in train:
        counts.setdefault((rec.major, rec.minor), Counter())[rec.answer] += 1
    return {k: c.most_common(1)[0][0] for k, c in counts.items()}


def prior_predictions(train: list[avqa.AvqaRecord], records: list[avqa.AvqaRecord]) -> list[str]:
    """The answer-prior baseline's answer to each record ('' for a type the training file never asks)."""
    prior = answer_prior(train)
    return [prior.get((r.major, r.minor), "") for r in records]


class AvqaEvaluation(Evaluation):
    """Accuracy per question type on a split, and the answer-prior baseline on the same questions."""

    def __init__(self, ds: "AvqaQuestions", vocab: Vocabularies, train: list[avqa.AvqaRecord], split: str) -> None:
        self.ds, self.vocab, self.train, self.split = ds, vocab, train, split
        self.predictions: list[str] = []

    def update(self, out: AvqaOutput, batch: dict) -> None:
        self.predictions += [self.vocab.answer.tokens[int(k)] for k in out.logits.argmax(-1)]

    def result(self) -> dict:
        ds = self.ds
        prior = avqa_scores(ds.records, prior_predictions(self.train, ds.records))
        return {"split": self.split, **avqa_scores(ds.records, self.predictions),
                "unanswerable": int((ds.answers == IGNORE).sum()), "left_out": ds.dropped,
                "prior": {k: v for k, v in prior.items() if k in avqa.category_keys()}}


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
    from lavish.media.decode import decode_clip

    vocab = vocabularies(meta, "the model")
    ids, unknown = encode_free_question(question, vocab.question)
    clip = decode_clip(video, num_segments=int(meta.get("num_segments", 10)), frame_size=tuple(meta["frame_size"]),
                       frontend=meta["frontend"])
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
        "video": str(video), "question": question, "unknown_words": unknown, "has_audio": clip.has_audio,
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


def plot_attention(frames: np.ndarray, spatial: np.ndarray, result: dict, path: str | Path) -> Path:
    """PNG: each segment's frame (T, H, W, 3) with its audio-guided attention map (T, gh, gw) overlaid, titled by
    time and question-guided visual weight; the top answer in the title. Written atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    t = len(frames)
    fig, axes = plt.subplots(1, t, figsize=(1.6 * t, 2.0), squeeze=False)
    h, w = frames.shape[1:3]
    for k, ax in enumerate(axes[0]):
        ax.imshow(frames[k])
        ax.imshow(spatial[k], extent=(0, w, h, 0), alpha=0.45, cmap="jet", interpolation="bilinear")
        seg = result["segments"][k]
        ax.set_title(f"{seg['time_s']:.0f}s  {seg['visual_weight']:.2f}", fontsize=7)
        ax.axis("off")
    best = result["answers"][0]
    fig.suptitle(f"{result['question']}  ->  {best['answer']} ({best['probability']:.2f})", fontsize=8)
    from lavish.tasks.plots import save_figure

    return save_figure(fig, path, dpi=100)


def format_table(result: dict, prior: dict | None = None) -> list[str]:
    """Rows 'key  questions  accuracy  prior' in the authors' order (percentages)."""
    pct = lambda v: "    -" if v != v else f"{100 * v:5.1f}"  # noqa: E731  (NaN: no question of that type)
    lines = [f"  {'question type':<28} {'n':>6} {'acc %':>6}" + (f" {'prior %':>8}" if prior else "")]
    for key in avqa.category_keys():
        row = f"  {key:<28} {result['counts'][key]:>6} {pct(result[key]):>6}"
        lines.append(row + (f" {pct(prior[key]):>8}" if prior else ""))
    return lines


class AvqaTask(Task):
    """Audio-visual question answering: one of 42 answers to a question about a 60-s music video."""

    name = "avqa"
    title = "audio-visual question answering (MUSIC-AVQA)"
    unit = "questions"
    model_config_cls = AvqaModelConfig
    model_cls = AvqaModel
    train_config_cls = AvqaTrainConfig
    data_module_cls = AvqaDataModule
    prepare = staticmethod(prepare_avqa)
    summary = (("overall", "accuracy"),)
    monitor = "acc"
    eval_loss = False  # validation has no negatives: its loss is not the training loss
    lr_help = "learning rate at --base-batch-size (default 8e-5)"
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
        Option(("--base-batch-size",), {"type": int, "help": "batch size the --lr is meant for (default 1)"}),
        Option(("--warmup-steps",), {"type": int, "help": "linear lr warm-up over this many steps (default 0)"}),
        Option(("--step-size",), {"type": int, "help": "StepLR period in epochs (default 8)"}),
        Option(("--gamma",), {"type": float, "help": "StepLR factor (default 0.1)"}),
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
        from lavish.fileio import write_json
        from lavish.data.synthetic_avqa import make_synthetic_avqa
        from lavish.models.adapters import PRESETS
        from lavish.tasks.base import evaluate, load, train

        start = time.monotonic()
        backbone = options.backbone or self.demo_backbone
        out = Path(options.out)
        data, cache, run_dir = out / "avqa-data", out / "avqa-cache", out / "runs" / "avqa"
        print(f"[1/4] synthetic MUSIC-AVQA-layout dataset: {options.videos} videos -> {data}")
        if not (data / "avqa-test.json").exists():
            make_synthetic_avqa(data, num_videos=options.videos, seed=options.seed, workers=options.workers)
        self.demo_cache(data, cache, backbone, options, "2/4")
        print(f"[3/4] train {backbone} with LAVISH adapters -> {run_dir}")
        if not (run_dir / "results.json").exists():
            model = AvqaModelConfig(backbone=backbone, adapter=PRESETS["avqa_paper"])
            cfg = AvqaTrainConfig(epochs=options.epochs, batch_size=8, lr=1e-3, lr_rule="constant",
                                  step_size=options.epochs, patience=options.epochs, seed=options.seed)
            train(self, cache, run_dir, model, cfg, pretrained=False, progress=options.progress, test=False)
        result = evaluate(run_dir / "best.safetensors", cache, split="test", progress=False)
        print(f"[4/4] test accuracy per question type ({result['questions']} questions) vs the answer prior "
              "(most frequent training answer per type)")
        print("\n".join("      " + line for line in format_table(result, result["prior"])))
        write_json(out / "avqa-results.json", result)
        _, model, meta = load(run_dir / "best.safetensors")
        video = sorted((data / "videos").glob("*.mp4"))[0]
        question = "How many instruments are sounding in the video?"
        best = ask(model, meta, video, question)["answers"][0]
        print(f"ask {video.name} {question!r}: {best['answer']} ({best['probability']:.2f})")
        print(f"table: {out / 'avqa-results.json'}; {time.monotonic() - start:.0f} s in all")
        print(self.real_run)
        return 0
