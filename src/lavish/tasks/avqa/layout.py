"""MUSIC-AVQA (Li et al., CVPR 2022): question records, the authors' tokeniser, vocabularies, per-category
accuracy (spec sections 3.3 and 5.3).

A json file is a list of records whose ``type`` and ``templ_values`` fields are *strings* holding lists
(``"[\\"Audio\\", \\"Counting\\"]"``), whose answer field is spelled ``anser``, and whose question may contain
placeholders (``<Object>``, ``<LR>``, ...) filled in order from ``templ_values``.

Tokeniser = the authors' (AVQA/dataloader_avst.py L41-61): ``rstrip``, split on single spaces, drop the last
character of the last word (the ``?`` or full-width ``？``), replace every token containing ``<`` by the next
template value (a multi-word value stays ONE token). Question vocabulary: ``'<pad>'`` first, then tokens in
order of first appearance in the training file; answer vocabulary: answers in order of first appearance.

Where we differ from the authors' code, and why:

- unknown words (a test question with a word not seen in training) map to ``'<unk>'``, appended as the LAST
  question-vocabulary entry (so every trained word keeps the authors' id; the vocabulary has one more row than
  theirs, 94 instead of 93). The authors' code raises KeyError.
- questions longer than ``max_len`` (14) are truncated to their first 14 tokens with a warning; the authors
  never truncate, which breaks batching (no val/test question is longer than 14 tokens, so the two agree there).
- more placeholders than template values, an empty question, an unknown question type, an answer missing
  from the answer vocabulary or malformed json raise :class:`DataError` naming the file and question id.
"""

from __future__ import annotations

import ast
import json
import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from lavish.errors import DataError

MAX_LEN = 14
PAD = "<pad>"
UNK = "<unk>"

#: major question type (as in the json) -> (key used in metric dicts, its sub-types in the authors' order)
QUESTION_TYPES: dict[str, tuple[str, tuple[str, ...]]] = {
    "Audio": ("audio", ("Counting", "Comparative")),
    "Visual": ("visual", ("Counting", "Location")),
    "Audio-Visual": ("audio_visual", ("Existential", "Counting", "Location", "Comparative", "Temporal")),
}


@dataclass(frozen=True)
class AvqaRecord:
    """One question of a MUSIC-AVQA json file."""

    video_id: str
    question_id: int
    major: str
    """``Audio``, ``Visual`` or ``Audio-Visual``."""
    minor: str
    """Sub-type, e.g. ``Counting``, ``Temporal``."""
    question: str
    templ_values: tuple[str, ...]
    answer: str
    source: str = ""
    """``<file>`` the record was read from (for error messages)."""

    @property
    def category(self) -> str:
        """Metric key of the sub-type, e.g. ``audio_visual_temporal``."""
        return f"{QUESTION_TYPES[self.major][0]}_{self.minor.lower()}"

    @property
    def where(self) -> str:
        return f"{self.source}: question {self.question_id}"


def _literal_list(text: object, where: str, name: str) -> list:
    if isinstance(text, list):
        return text
    try:
        value = ast.literal_eval(text) if isinstance(text, str) else None
    except (ValueError, SyntaxError):
        value = None
    if not isinstance(value, list):
        raise DataError(f"{where}: field {name!r} must be a string holding a list, got {text!r}")
    return value


def parse_record(item: object, source: str = "", position: int = 0) -> AvqaRecord:
    """One json object -> :class:`AvqaRecord`; DataError naming ``source`` and the question for bad fields."""
    if not isinstance(item, dict):
        raise DataError(f"{source}: record {position} is not a json object")
    qid = item.get("question_id", f"#{position}")
    where = f"{source}: question {qid}"
    for key in ("video_id", "question_id", "type", "question_content", "templ_values", "anser"):
        if key not in item:
            raise DataError(f"{where}: missing field {key!r}")
    kind = _literal_list(item["type"], where, "type")
    if len(kind) != 2 or kind[0] not in QUESTION_TYPES or kind[1] not in QUESTION_TYPES[kind[0]][1]:
        raise DataError(f"{where}: unknown question type {item['type']!r}")
    question = item["question_content"]
    if not isinstance(question, str) or not question.strip():
        raise DataError(f"{where}: empty question")
    values = tuple(str(v) for v in _literal_list(item["templ_values"], where, "templ_values"))
    return AvqaRecord(
        video_id=str(item["video_id"]),
        question_id=int(item["question_id"]),
        major=kind[0],
        minor=kind[1],
        question=question,
        templ_values=values,
        answer=str(item["anser"]),
        source=source,
    )


def read_avqa_json(path: Path | str) -> list[AvqaRecord]:
    """All records of a MUSIC-AVQA json file, in file order."""
    path = Path(path)
    try:
        items = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except json.JSONDecodeError as err:
        raise DataError(f"{path}:{err.lineno}: malformed json ({err.msg})") from None
    if not isinstance(items, list):
        raise DataError(f"{path}: expected a json list of question records")
    return [parse_record(item, str(path), i) for i, item in enumerate(items)]


def tokenize(record: AvqaRecord) -> list[str]:
    """The authors' tokeniser (see module docstring); DataError if placeholders outnumber template values."""
    words = record.question.rstrip().split(" ")
    words[-1] = words[-1][:-1]
    values = iter(record.templ_values)
    for pos, word in enumerate(words):
        if "<" in word:
            try:
                words[pos] = next(values)
            except StopIteration:
                raise DataError(
                    f"{record.where}: more placeholders than template values ({len(record.templ_values)}) "
                    f"in {record.question!r}"
                ) from None
    return words


@dataclass(frozen=True)
class Vocab:
    """Token list with a lookup table; ``unknown`` is the id for unseen tokens (None: refuse them)."""

    tokens: tuple[str, ...]
    unknown: int | None = None
    _ids: dict[str, int] = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        self._ids.update({t: i for i, t in enumerate(self.tokens)})

    def __len__(self) -> int:
        return len(self.tokens)

    def __contains__(self, token: str) -> bool:
        return token in self._ids

    def id(self, token: str) -> int | None:
        """Id of ``token``, else ``unknown`` (which may be None)."""
        return self._ids.get(token, self.unknown)


def build_question_vocab(records: Iterable[AvqaRecord]) -> Vocab:
    """``'<pad>'``, tokens in order of first appearance, then ``'<unk>'`` (unknown words map to it)."""
    tokens: dict[str, None] = {PAD: None}
    for rec in records:
        for word in tokenize(rec):
            tokens.setdefault(word, None)
    tokens.pop(UNK, None)
    ordered = tuple(tokens) + (UNK,)
    return Vocab(ordered, unknown=len(ordered) - 1)


def build_answer_vocab(records: Iterable[AvqaRecord]) -> Vocab:
    """Answers in order of first appearance (no unknown id: an unseen answer is refused)."""
    answers: dict[str, None] = {}
    for rec in records:
        answers.setdefault(rec.answer, None)
    return Vocab(tuple(answers))


def encode_question(record: AvqaRecord, vocab: Vocab, max_len: int = MAX_LEN) -> np.ndarray:
    """(max_len,) int64 token ids, padded with ``'<pad>'`` (id 0) at the end; longer questions truncated."""
    words = tokenize(record)
    if len(words) > max_len:
        warnings.warn(f"{record.where}: {len(words)} tokens, truncated to {max_len}", stacklevel=2)
        words = words[:max_len]
    ids = np.full(max_len, vocab.id(PAD), dtype=np.int64)
    for i, word in enumerate(words):
        token = vocab.id(word)
        if token is None:
            raise DataError(f"{record.where}: word {word!r} is not in the question vocabulary")
        ids[i] = token
    return ids


def answer_id(record: AvqaRecord, vocab: Vocab) -> int:
    """Index of the record's answer; DataError if the training file never had that answer."""
    token = vocab.id(record.answer)
    if token is None:
        raise DataError(f"{record.where}: answer {record.answer!r} is not in the answer vocabulary ({len(vocab)} answers)")
    return token


def category_keys() -> list[str]:
    """Metric keys in the authors' print order: each major group, its sub-types, then ``overall``."""
    keys = []
    for major, (key, minors) in QUESTION_TYPES.items():
        keys.append(key)
        keys.extend(f"{key}_{m.lower()}" for m in minors)
    return keys + ["overall"]


def category_counts(records: Sequence[AvqaRecord]) -> dict[str, int]:
    """Number of questions per metric key (same keys as :func:`category_accuracy`)."""
    counts = dict.fromkeys(category_keys(), 0)
    for rec in records:
        counts[rec.category] += 1
        counts[QUESTION_TYPES[rec.major][0]] += 1
        counts["overall"] += 1
    return counts


def category_accuracy(records: Sequence[AvqaRecord], correct: Sequence[bool] | np.ndarray) -> dict[str, float]:
    """Accuracy (fraction in [0, 1]) per sub-type, per major group and overall (spec 3.3, main_avst.py ``test``).

    Major groups and ``overall`` are micro averages: correct answers over questions of all their sub-types.
    A key with no question gets NaN. ``correct``: (len(records),) bool, whether each prediction was right.
    """
    correct = np.asarray(correct, dtype=bool).reshape(-1)
    if correct.shape[0] != len(records):
        raise ValueError(f"{correct.shape[0]} predictions for {len(records)} questions")
    hits = dict.fromkeys(category_keys(), 0)
    for rec, ok in zip(records, correct.tolist()):
        for key in (rec.category, QUESTION_TYPES[rec.major][0], "overall"):
            hits[key] += ok
    counts = category_counts(records)
    return {k: (hits[k] / counts[k] if counts[k] else math.nan) for k in hits}
