"""MUSIC-AVQA: audio-visual question answering (spec 3.3, 4), trained with Lightning.

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

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset, DistributedSampler
from torchmetrics.aggregation import MeanMetric

from lavish.data import avqa
from lavish.data.cache import audio_path, frames_path, read_json, read_manifest
from lavish.errors import ConfigError, DataError
from lavish.media.frames import normalize_frames
from lavish.models.avqa import AvqaModel, AvqaModelConfig, AvqaOutput
from lavish.tasks.checkpointing import ExportBest, load_task_model
from lavish.tasks.runner import (ADAPTER_FILE, NonFiniteLoss, SplitDataModule, TrainableCheckpoints, TrainConfig,
                                 check_run_dir, last_checkpoint, make_trainer, record_run, write_results)

MONITOR = "val/acc"
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


class AvqaTask(TrainableCheckpoints, L.LightningModule):
    """LightningModule: the AVQA model, its loss, accuracy and optimiser."""

    def __init__(self, model_config: dict, train_config: dict, pretrained: bool = False,
                 backbone_weights: str | None = None) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.model = AvqaModel(AvqaModelConfig.from_dict(model_config), pretrained=pretrained,
                               backbone_weights=backbone_weights)
        self.train_config = AvqaTrainConfig(**train_config)
        self.train_acc, self.val_acc, self.test_acc = MeanMetric(), MeanMetric(), MeanMetric()

    def forward(self, batch: dict) -> AvqaOutput:
        negatives = normalize_frames(batch["negatives"]) if "negatives" in batch else None
        return self.model(batch["audio"], normalize_frames(batch["frames"]), batch["question"], negatives)

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        out = self(batch)
        loss = avqa_loss(out, batch["answer"])
        if not torch.isfinite(loss):
            raise NonFiniteLoss(f"training loss is {loss.item()} at step {self.global_step} (epoch "
                                f"{self.current_epoch}); stopped, the last good checkpoint is kept")
        bs = batch["answer"].shape[0]
        self.train_acc.update((out.logits.argmax(-1) == batch["answer"]).float())
        self.log("train/loss", loss, prog_bar=True, batch_size=bs)
        self.log("train/acc", self.train_acc, on_step=False, on_epoch=True, batch_size=bs)
        return loss

    def _eval_step(self, batch: dict, metric, stage: str) -> None:
        out = self(batch)
        metric.update((out.logits.argmax(-1) == batch["answer"]).float())
        self.log(f"{stage}/acc", metric, prog_bar=True, batch_size=batch["answer"].shape[0])

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self._eval_step(batch, self.val_acc, "val")

    def test_step(self, batch: dict, batch_idx: int) -> None:
        self._eval_step(batch, self.test_acc, "test")

    def configure_optimizers(self):
        cfg = self.train_config
        params = [p for p in self.model.parameters() if p.requires_grad]
        optimizer = torch.optim.Adam(params, lr=cfg.scaled_lr)
        steps_per_epoch = max(1, int(self.trainer.estimated_stepping_batches) // max(1, self.trainer.max_epochs))

        def factor(step: int) -> float:
            warm = min(1.0, (step + 1) / cfg.warmup_steps) if cfg.warmup_steps else 1.0
            return warm * cfg.gamma ** ((step // steps_per_epoch) // cfg.step_size)

        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


# --------------------------------------------------------------------------------------------------- train
@dataclass
class TrainResult:
    run_dir: Path
    adapter: Path
    best_epoch: int | None
    best_val_acc: float | None
    test: dict | None
    epochs_run: int
    seconds: float


def train_avqa(data: str | Path, out: str | Path, model_config: AvqaModelConfig, train_config: AvqaTrainConfig, *,
               pretrained: bool = False, backbone_weights: str | None = None, resume: bool = False,
               progress: bool = True, test: bool = True) -> TrainResult:
    """Train an AVQA model on a prepared cache into the run folder ``out`` (see module doc)."""
    start = time.monotonic()
    out = check_run_dir(out, resume)
    L.seed_everything(train_config.seed, workers=True, verbose=False)
    dm = AvqaDataModule(data, backbone=model_config.backbone, batch_size=train_config.batch_size,
                        seed=train_config.seed, num_workers=train_config.num_workers)
    model_config = dataclasses.replace(model_config, question_vocab=len(dm.vocab.question),
                                       num_answers=len(dm.vocab.answer))
    meta = {"task": "avqa", **dm.vocab.to_meta(), "pretrained": pretrained, "backbone_weights": backbone_weights,
            "frontend": dm.manifest["frontend"]["name"], "frame_size": dm.manifest["frame_size"],
            "num_segments": dm.manifest["num_segments"]}
    record_run(out, resume, model=model_config.to_dict(), train=train_config, data=data, meta=meta)
    task = AvqaTask(model_config.to_dict(), dataclasses.asdict(train_config), pretrained, backbone_weights)
    task.model.backbone.checkpointing = model_config.checkpointing
    export = ExportBest(out / ADAPTER_FILE, MONITOR, meta)
    trainer = make_trainer(out, train_config, export, progress=progress)
    trainer.fit(task, datamodule=dm, ckpt_path=str(last_checkpoint(out)) if resume else None)
    test_result = None
    if test and trainer.is_global_zero and (out / ADAPTER_FILE).exists():
        test_result = evaluate_avqa(out / ADAPTER_FILE, data, split="test", backbone_weights=backbone_weights,
                                    progress=False)
    result = TrainResult(out, out / ADAPTER_FILE, export.best_epoch, export.best, test_result,
                         trainer.current_epoch, time.monotonic() - start)
    write_results(out, trainer, {
        "best_epoch": result.best_epoch, "best_val_acc": result.best_val_acc,
        "test": None if test_result is None else {k: test_result[k] for k in avqa.category_keys()},
        "epochs_run": result.epochs_run, "seconds": round(result.seconds, 1),
    })
    return result


# ---------------------------------------------------------------------------------------------- evaluate
def load_avqa_model(checkpoint: str | Path, *, backbone_weights: str | None = None
                    ) -> tuple[AvqaModel, dict, Vocabularies]:
    """An AvqaModel rebuilt from an adapter file, in eval mode; returns (model, meta, vocabularies)."""
    model, meta = load_task_model(checkpoint, task="avqa", config_cls=AvqaModelConfig, model_cls=AvqaModel,
                                  backbone_weights=backbone_weights)
    try:
        vocab = Vocabularies.from_meta(meta)
    except (TypeError, KeyError, ValueError) as err:
        raise ConfigError(f"checkpoint {checkpoint} holds unusable vocabularies ({err})") from None
    return model, meta, vocab


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


@torch.no_grad()
def evaluate_avqa(checkpoint: str | Path, data: str | Path, *, split: str = "test",
                  backbone_weights: str | None = None, batch_size: int = 4, progress: bool = True) -> dict:
    """Accuracy per question type on a cache split (plus the answer-prior baseline on the same questions)."""
    model, meta, vocab = load_avqa_model(checkpoint, backbone_weights=backbone_weights)
    dm = AvqaDataModule(data, backbone=model.config.backbone, batch_size=batch_size, vocab=vocab)
    ds = AvqaQuestions(data, split, vocab)
    loader = DataLoader(ds, batch_size=batch_size, collate_fn=collate)
    from tqdm import tqdm

    predictions: list[str] = []
    for batch in tqdm(loader, desc=f"eval {split}", disable=not progress, leave=False):
        out = model(batch["audio"], normalize_frames(batch["frames"]), batch["question"])
        predictions += [vocab.answer.tokens[int(k)] for k in out.logits.argmax(-1)]
    train = split_records(dm.cache_dir, "train")
    result = {"split": split, **avqa_scores(ds.records, predictions),
              "unanswerable": int((ds.answers == IGNORE).sum()), "left_out": ds.dropped,
              "prior": {k: v for k, v in avqa_scores(ds.records, prior_predictions(train, ds.records)).items()
                        if k in avqa.category_keys()}}
    return result


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
def ask(model: AvqaModel, meta: dict, vocab: Vocabularies, video: str | Path, question: str, *,
        top_k: int = 5) -> dict:
    """Answer ``question`` about ``video``: top answers with probabilities, the segments (and their times) the
    question attended to, and per segment the most attended visual token (row, col of the token grid)."""
    from lavish.media.decode import decode_clip

    ids, unknown = encode_free_question(question, vocab.question)
    clip = decode_clip(video, num_segments=int(meta.get("num_segments", 10)), frame_size=tuple(meta["frame_size"]),
                       frontend=meta["frontend"])
    frames = normalize_frames(torch.from_numpy(clip.frames))[None]
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
    return {
        "video": str(video), "question": question, "unknown_words": unknown, "has_audio": clip.has_audio,
        "answers": [{"answer": vocab.answer.tokens[int(i)], "probability": round(float(p), 4)}
                    for p, i in zip(top.values, top.indices)],
        "segments": segments,
        "spatial": spatial.reshape(spatial.shape[0], *grid).numpy(),
        "frames": clip.frames,
    }


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
    from lavish.fileio import atomic_path

    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, bbox_inches="tight", format="png")
    plt.close(fig)
    return path
