"""Checkpoint plumbing shared by the tasks: atomic writes, trainable-only state, RNG state, best-adapter export.

Lightning's checkpoint (``checkpoints/last.ckpt``) is what ``--resume`` reads: it holds the trainable weights only
(the frozen backbone is rebuilt from its source), the optimiser, the loops, the callbacks and the RNG states, and
is written to a temporary file then renamed, so a ``kill -9`` at any moment leaves the previous one intact. It is
a pickle written by this run; it is loaded with ``weights_only=False`` only from the run's own folder. What users
share and what ``eval``/``predict`` take is the safetensors adapter file (``best.safetensors``).
"""

from __future__ import annotations

import os
import random
import tempfile
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.fabric.utilities.cloud_io import get_filesystem
from lightning.pytorch.plugins.io import TorchCheckpointIO

from lavish.models.weights import save_adapter


class AtomicCheckpointIO(TorchCheckpointIO):
    """TorchCheckpointIO whose files appear whole or not at all (temp file + ``os.replace``)."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options=None) -> None:
        path = Path(path)
        get_filesystem(str(path)).makedirs(str(path.parent), exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        os.close(fd)
        try:
            torch.save(checkpoint, tmp)
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)

    def load_checkpoint(self, path, map_location=None, weights_only=None) -> dict[str, Any]:
        return torch.load(path, map_location=map_location or "cpu", weights_only=False)


def rng_state() -> dict:
    return {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])


def trainable_state(module: torch.nn.Module, state_dict: dict, frozen_prefix: str) -> dict:
    """``state_dict`` without the frozen backbone's tensors (keeps trainable ones, adapters, head, buffers)."""
    trainable = {n for n, p in module.named_parameters() if p.requires_grad}
    return {k: v for k, v in state_dict.items() if not k.startswith(frozen_prefix) or k in trainable}


class ExportBest(L.Callback):
    """After each validation, write the adapter file when the monitored metric improved (rank 0)."""

    def __init__(self, path: Path, monitor: str, meta: dict) -> None:
        self.path, self.monitor, self.meta = Path(path), monitor, meta
        self.best: float | None = None
        self.best_epoch: int | None = None

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        value = trainer.callback_metrics.get(self.monitor)
        if value is None:
            return
        value = float(value)
        if self.best is None or value > self.best:
            self.best, self.best_epoch = value, trainer.current_epoch
            if trainer.is_global_zero:
                meta = {**self.meta, "epoch": trainer.current_epoch, self.monitor: value}
                save_adapter(pl_module.model, self.path, pl_module.model.config.to_dict(), meta)

    def state_dict(self) -> dict:
        return {"best": self.best, "best_epoch": self.best_epoch}

    def load_state_dict(self, state: dict) -> None:
        self.best, self.best_epoch = state["best"], state["best_epoch"]
