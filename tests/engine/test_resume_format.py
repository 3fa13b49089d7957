"""The resume checkpoint without pickle: a Lightning-like nested dict comes back exactly (tensors bit for bit,
tuples as tuples, integer keys as integers, inf and None), the RNG states restore the same draws, and a pickle
that would run a command when unpickled is refused in one line without running it."""

from __future__ import annotations

import math
import os
import pickle
import random

import numpy as np
import pytest
import torch

from lavish.errors import CheckpointError
from lavish.engine.resume import read_checkpoint_file, rng_state, save_checkpoint_file, set_rng_state


class RunsACommand:
    """Unpickling this runs ``touch <marker>``."""

    def __init__(self, marker) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return os.system, (f"touch '{self.marker}'",)


def lightning_like() -> dict:
    w = torch.randn(4, 3)
    return {
        "epoch": 2, "global_step": 7, "pytorch-lightning_version": "2.6.6",
        "state_dict": {"model.head.weight": w, "model.head.bias": torch.zeros(4, dtype=torch.bfloat16),
                       "model.bn.num_batches_tracked": torch.tensor(5)},
        "optimizer_states": [{
            "state": {0: {"step": torch.tensor(7.0), "exp_avg": w * 0.1, "exp_avg_sq": w.square()}},
            "param_groups": [{"lr": 5e-5, "betas": (0.9, 0.999), "eps": 1e-8, "foreach": None, "name": "head",
                              "params": [0]}],
        }],
        "callbacks": {"EarlyStopping{'monitor': 'val/acc', 'mode': 'max'}": {"best_score": torch.tensor(0.75),
                                                                             "wait_count": 1, "patience": 5},
                      "ExportBest": {"best": 0.75, "best_epoch": 1}},
        "loops": {"fit_loop": {"epoch_progress": {"total": {"ready": 3}}, "state_dict": {}}},
        "odd": {"__tensor__": "not a tensor", "inf": -math.inf, "empty": (), "nested": [1, [2, (3,)]]},
        "rng": rng_state(),
    }


def _same(a, b) -> None:
    assert type(a) is type(b), (a, b)
    if isinstance(a, torch.Tensor):
        assert a.dtype == b.dtype and torch.equal(a, b)
    elif isinstance(a, dict):
        assert list(a) == list(b)
        for k in a:
            _same(a[k], b[k])
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            _same(x, y)
    else:
        assert a == b


def test_nested_checkpoint_round_trips_exactly(tmp_path):
    ckpt = lightning_like()
    path = tmp_path / "last.ckpt"
    save_checkpoint_file(ckpt, path)
    _same(ckpt, read_checkpoint_file(path))
    assert path.read_bytes()[8:9] == b"{"  # a safetensors header, not a pickle or a zip archive


def test_rng_state_restores_the_same_draws(tmp_path):
    save_checkpoint_file({"rng": rng_state()}, tmp_path / "c.ckpt")
    first = (torch.rand(3), np.random.rand(3), random.random())
    set_rng_state(read_checkpoint_file(tmp_path / "c.ckpt")["rng"])
    again = (torch.rand(3), np.random.rand(3), random.random())
    assert torch.equal(first[0], again[0]) and np.array_equal(first[1], again[1]) and first[2] == again[2]


@pytest.mark.parametrize("writer", ["pickle", "torch.save"])
def test_a_pickle_is_refused_without_running_it(tmp_path, writer):
    marker, path = tmp_path / "ran", tmp_path / "last.ckpt"
    payload = {"epoch": 0, "state_dict": {}, "x": RunsACommand(marker)}
    if writer == "pickle":
        path.write_bytes(pickle.dumps(payload))
    else:
        torch.save(payload, path)
    with pytest.raises(CheckpointError) as info:
        read_checkpoint_file(path)
    assert not marker.exists()
    message = str(info.value)
    assert "\n" not in message and str(path) in message and "not loaded" in message
    # the payload is live: an unpickling loader runs the command (what the old --resume did)
    if writer == "torch.save":
        torch.load(path, weights_only=False)
    else:
        pickle.loads(path.read_bytes())
    assert marker.exists()


def test_a_foreign_safetensors_file_is_refused(tmp_path):
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(2)}, tmp_path / "last.ckpt")
    with pytest.raises(CheckpointError, match="not a lavish resume checkpoint"):
        read_checkpoint_file(tmp_path / "last.ckpt")


def test_unknown_types_are_a_bug_at_save_time(tmp_path):
    with pytest.raises(TypeError, match=r"cannot hold a set \(at /callbacks/x\)"):
        save_checkpoint_file({"callbacks": {"x": {1, 2}}}, tmp_path / "c.ckpt")
    assert not list(tmp_path.iterdir())
