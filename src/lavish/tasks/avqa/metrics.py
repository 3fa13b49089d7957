"""AVQA evaluation: accuracy per question type (the paper table), the answer-prior baseline."""

from __future__ import annotations

from collections import Counter

from lavish.engine.task import Evaluation
from lavish.tasks.avqa import layout as avqa
from lavish.tasks.avqa.dataset import IGNORE
from lavish.tasks.avqa.model import AvqaOutput


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


def format_table(result: dict, prior: dict | None = None) -> list[str]:
    """Rows 'key  questions  accuracy  prior' in the authors' order (percentages)."""
    pct = lambda v: "    -" if v != v else f"{100 * v:5.1f}"  # noqa: E731  (NaN: no question of that type)
    lines = [f"  {'question type':<28} {'n':>6} {'acc %':>6}" + (f" {'prior %':>8}" if prior else "")]
    for key in avqa.category_keys():
        row = f"  {key:<28} {result['counts'][key]:>6} {pct(result[key]):>6}"
        lines.append(row + (f" {pct(prior[key]):>8}" if prior else ""))
    return lines
