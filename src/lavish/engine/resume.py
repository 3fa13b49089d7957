"""Checkpoint plumbing shared by the tasks: pickle-free resume checkpoints, trainable-only state, RNG state,
best-adapter export.

Lightning's checkpoint (``checkpoints/last.ckpt``) is what ``--resume`` reads: the trainable weights only (the
frozen backbone is rebuilt from its source), the optimiser, the loops, the callbacks and the RNG states. Lightning
hands it over as a nested dict; :class:`SafeCheckpointIO` stores it without pickle, as a safetensors file whose
tensors are the dict's tensors and whose metadata (``lavish.checkpoint``) is the rest of the dict as JSON, with a
``{"__tensor__": name}`` where each tensor was (tuples and dicts with non-string keys are tagged too, so the dict
comes back as it went in). Loading a file is reading numbers and JSON: nothing in it can run. It is written through
:func:`lavish.fileio.atomic_path`, so ``kill -9`` or a full disk at any moment leaves the previous one intact. What
users share and what ``eval``/``predict`` take is the safetensors adapter file (``best.safetensors``).
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.plugins.io import CheckpointIO
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from lavish.errors import CheckpointError
from lavish.fileio import atomic_path
from lavish.models.weights import save_adapter

CHECKPOINT_KEY = "lavish.checkpoint"
"""safetensors metadata key of the JSON part of a resume checkpoint."""
_TENSOR, _TUPLE, _ITEMS = "__tensor__", "__tuple__", "__items__"


def _encode(obj: Any, tensors: dict[str, torch.Tensor], where: str) -> Any:
    """JSON-able form of ``obj``; its tensors go to ``tensors`` under their path in the tree (``where``)."""
    if isinstance(obj, torch.Tensor):
        tensors[where] = obj.detach().cpu().contiguous().clone()  # own storage: safetensors refuses shared ones
        return {_TENSOR: where}
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    if isinstance(obj, tuple):
        return {_TUPLE: [_encode(v, tensors, f"{where}/{i}") for i, v in enumerate(obj)]}
    if isinstance(obj, list):
        return [_encode(v, tensors, f"{where}/{i}") for i, v in enumerate(obj)]
    if isinstance(obj, dict):
        if all(isinstance(k, str) for k in obj) and not {_TENSOR, _TUPLE, _ITEMS} & set(obj):
            return {k: _encode(v, tensors, f"{where}/{k}") for k, v in obj.items()}
        return {_ITEMS: [[_encode(k, tensors, f"{where}/{i}.key"), _encode(v, tensors, f"{where}/{i}")]
                         for i, (k, v) in enumerate(obj.items())]}
    raise TypeError(f"a resume checkpoint cannot hold a {type(obj).__name__} (at {where or '/'})")


def _decode(obj: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(obj, list):
        return [_decode(v, tensors) for v in obj]
    if not isinstance(obj, dict):
        return obj
    if len(obj) == 1:
        ((tag, value),) = obj.items()
        if tag == _TENSOR:
            return tensors[value]
        if tag == _TUPLE:
            return tuple(_decode(v, tensors) for v in value)
        if tag == _ITEMS:
            return {_decode(k, tensors): _decode(v, tensors) for k, v in value}
    return {k: _decode(v, tensors) for k, v in obj.items()}


def save_checkpoint_file(checkpoint: dict[str, Any], path: str | Path) -> None:
    """Write a nested dict of tensors and plain values (see module doc) durably to ``path``."""
    tensors: dict[str, torch.Tensor] = {}
    tree = json.dumps(_encode(checkpoint, tensors, ""))
    with atomic_path(path) as tmp:
        save_file(tensors, tmp, metadata={CHECKPOINT_KEY: tree})


def read_checkpoint_file(path: str | Path) -> dict[str, Any]:
    """The dict :func:`save_checkpoint_file` wrote, tensors on the CPU; CheckpointError (one line, nothing loaded)
    for any other file, a pickle included."""
    path = Path(path)
    try:
        with safe_open(str(path), "pt", device="cpu") as f:
            tree = (f.metadata() or {}).get(CHECKPOINT_KEY)
            if tree is None:
                raise CheckpointError(f"{path} is a safetensors file but not a lavish resume checkpoint")
            tensors = {name: f.get_tensor(name) for name in f.keys()}
        return _decode(json.loads(tree), tensors)
    except (SafetensorError, OSError, ValueError, KeyError) as err:
        raise CheckpointError(
            f"{path} is not a lavish resume checkpoint (safetensors + JSON; {type(err).__name__}: "
            f"{' '.join(str(err).split())[:200]}); it was not loaded, as pickles are never unpickled: start the run "
            f"again in a new --out folder"
        ) from None


class SafeCheckpointIO(CheckpointIO):
    """Lightning CheckpointIO for :func:`save_checkpoint_file` / :func:`read_checkpoint_file` files (no pickle)."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options=None) -> None:
        save_checkpoint_file(checkpoint, path)

    def load_checkpoint(self, path, map_location=None, weights_only=None) -> dict[str, Any]:
        return read_checkpoint_file(path)  # on the CPU; Lightning moves the states to the device

    def remove_checkpoint(self, path) -> None:
        Path(path).unlink(missing_ok=True)


def rng_state() -> dict:
    """The torch, numpy and Python RNG states as tensors and plain values (what a resume checkpoint can hold)."""
    numpy_state = np.random.get_state(legacy=False)
    numpy_state["state"]["key"] = numpy_state["state"]["key"].tolist()
    return {"torch": torch.get_rng_state(), "numpy": numpy_state, "python": random.getstate()}


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    numpy_state = {**state["numpy"], "state": dict(state["numpy"]["state"])}
    numpy_state["state"]["key"] = np.asarray(numpy_state["state"]["key"], dtype=np.uint32)
    np.random.set_state(numpy_state)
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
