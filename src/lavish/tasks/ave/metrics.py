"""AVE evaluation: per-segment accuracy over a split, the confusion matrix and per-class accuracy."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torchmetrics.classification import MulticlassConfusionMatrix

from lavish.engine.task import Evaluation


class AveEvaluation(Evaluation):
    """Segment accuracy (background included), per-class accuracy and the confusion matrix."""

    def __init__(self, classes: list[str], split: str, confusion_png: str | Path | None) -> None:
        self.classes, self.split, self.png = classes, split, confusion_png
        # rank 0 alone evaluates after DDP: no synchronisation
        self.confusion = MulticlassConfusionMatrix(len(classes), sync_on_compute=False)

    def update(self, logits: torch.Tensor, batch: dict) -> None:
        self.confusion.update(logits.argmax(-1).flatten(), batch["labels"].flatten())

    def result(self) -> dict:
        cm = self.confusion.compute().numpy()
        total = cm.sum()
        k = len(self.classes)
        per_class = {self.classes[i]: (float(cm[i, i] / cm[i].sum()) if cm[i].sum() else None) for i in range(k)}
        result = {"split": self.split, "segments": int(total),
                  "accuracy": float(np.trace(cm) / total) if total else 0.0,
                  "per_class": per_class, "confusion": cm.tolist(), "classes": self.classes}
        if self.png is not None:
            from lavish.engine.plots import plot_confusion

            result["confusion_png"] = str(plot_confusion(cm, self.classes, self.png))
        return result
