"""AVQA data: the questions of a split over the prepared video cache (tokenised with the training vocabularies), the negatives of the match loss, the collate and the data module."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset, DistributedSampler

from lavish.tasks.avqa import layout as avqa
from lavish.data.cache import audio_path, frames_path, read_json, read_manifest
from lavish.errors import DataError
from lavish.engine.runner import SplitDataModule


IGNORE = -1
"""answer id of a question whose answer is not in the training answers (ignored by the loss, counted wrong)."""


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
