"""AVE training on a tiny real cache (micro ViT, 64x64 frames): the loss falls, ``kill -9`` + ``--resume`` gives
the run an uninterrupted one gives, two CPU processes under DDP give the weights and, on odd-sized validation and
test splits, the metrics one process gives, and a non-finite loss stops with a LavishError that names the step.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from ave_layout import ROWS, SPLITS, make_layout  # tests/tasks/ave, on the path through tests/conftest.py
from lavish.cli.main import main
from lavish.data.cache import AveCacheDataset
from lavish.errors import LavishError
from lavish.tasks.ave.dataset import collate
from lavish.engine.module import TaskModule
from lavish.engine.runner import NonFiniteLoss
from lavish.engine.resume import read_checkpoint_file

MICRO = "lavish_vit_micro_patch8_64"
FLAGS = ["--backbone", MICRO, "--no-pretrained", "--lr", "1e-3", "--lr-head", "1e-3", "--no-progress"]
SRC = Path(__file__).resolve().parents[3] / "src"


def _train_cmd(cache: Path, out: Path, *extra: str) -> list[str]:
    return ["train", "ave", "--data", str(cache), "--out", str(out), *FLAGS, *extra]


def _env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(SRC), env.get("PYTHONPATH")) if p)
    return env


def _ckpt_state(run: Path) -> dict[str, torch.Tensor]:
    return read_checkpoint_file(run / "checkpoints" / "last.ckpt")["state_dict"]


def _assert_same_tensors(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys() and len(a) > 0
    different = [k for k in a if not torch.equal(a[k], b[k])]
    assert not different, f"{len(different)} tensors differ, e.g. {different[:3]}"


def test_training_loss_goes_down(ave_run):
    """ave_run: 3 full-batch epochs (4 train videos, batch 4), lr 1e-3 -> one step per epoch."""
    with open(ave_run / "logs" / "metrics.csv") as f:
        losses = [float(r["train/loss"]) for r in csv.DictReader(f) if r.get("train/loss")]
    assert len(losses) == 3
    assert losses[-1] < losses[0] - 0.05, losses
    results = json.loads((ave_run / "results.json").read_text())
    assert results["epochs_run"] == 3 and 0 <= results["best_val_acc"] <= 1 and 0 <= results["test_acc"] <= 1


def test_kill_9_then_resume_equals_an_uninterrupted_run(ave_cache, tmp_path):
    extra = ("--epochs", "2", "--batch-size", "2", "--seed", "3")  # 2 steps per epoch: shuffling matters
    run_a, run_b = tmp_path / "a", tmp_path / "b"
    assert main(_train_cmd(ave_cache, run_a, *extra)) == 0

    proc = subprocess.Popen([sys.executable, "-m", "lavish", *_train_cmd(ave_cache, run_b, *extra)], env=_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    last = run_b / "checkpoints" / "last.ckpt"
    deadline = time.monotonic() + 300
    while not last.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    still_running = proc.poll() is None
    os.killpg(proc.pid, signal.SIGKILL)
    stderr = proc.communicate()[1].decode(errors="replace")
    assert last.exists(), f"no checkpoint appeared: {stderr[-2000:]}"
    assert still_running and not (run_b / "results.json").exists(), "the run ended before it could be killed"
    killed_epoch = read_checkpoint_file(last)["epoch"]
    assert killed_epoch == 0  # killed during the second epoch

    # refused without --resume; continued with it
    assert main(_train_cmd(ave_cache, run_b, *extra)) == 2
    assert main(_train_cmd(ave_cache, run_b, *extra, "--resume")) == 0

    _assert_same_tensors(load_file(run_a / "best.safetensors"), load_file(run_b / "best.safetensors"))
    _assert_same_tensors(_ckpt_state(run_a), _ckpt_state(run_b))
    res_a, res_b = (json.loads((r / "results.json").read_text()) for r in (run_a, run_b))
    assert res_a["best_val_acc"] == res_b["best_val_acc"] and res_a["best_epoch"] == res_b["best_epoch"]
    assert res_a["test_acc"] == res_b["test_acc"] and res_b["epochs_run"] == 2


@pytest.fixture(scope="module")
def odd_cache(tmp_path_factory) -> Path:
    """The tiny layout with 3 more videos: splits 4 / 3 / 2, so 2 processes get validation shards of 2 and 1."""
    rows = [*ROWS, ("Bark", "vid_f", 2, 8), ("Cat", "vid_g", 0, 6), ("Bark", "vid_h", 5, 10)]
    splits = {"train": SPLITS["train"], "val": [4, 6, 7], "test": [5, 8]}
    root = tmp_path_factory.mktemp("odd")
    make_layout(root / "ave", rows, splits)
    assert main(["prepare", "ave", "--root", str(root / "ave"), "--out", str(root / "cache"), "--backbone", MICRO,
                 "--no-progress"]) == 0
    return root / "cache"


def _val_metrics(run: Path) -> list[tuple[float, float]]:
    with open(run / "logs" / "metrics.csv") as f:
        return [(float(r["val/acc"]), float(r["val/loss"])) for r in csv.DictReader(f) if r.get("val/acc")]


def test_ddp_two_cpu_processes_match_one_process(odd_cache, tmp_path):
    """Global batch 2: one video per process under DDP (gloo, synchronised BatchNorm) vs both in one process; the
    validation (3 videos) and test (2) metrics count every video once, so they equal the one-process ones."""
    extra = ("--epochs", "1", "--batch-size", "2", "--seed", "1")
    one, two = tmp_path / "one", tmp_path / "two"
    cmd = [sys.executable, "-m", "lavish", *_train_cmd(odd_cache, two, *extra, "--devices", "2")]
    # its own session, so that a hang can be ended with the rank Lightning starts as a child
    proc = subprocess.Popen(cmd, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        _, stderr = proc.communicate(timeout=420)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        pytest.fail(f"DDP run did not finish in 420 s: {proc.communicate()[1][-2000:]}")
    assert proc.returncode == 0, stderr[-3000:]
    assert main(_train_cmd(odd_cache, one, *extra)) == 0

    a, b = load_file(one / "best.safetensors"), load_file(two / "best.safetensors")
    assert a.keys() == b.keys()
    # A LayerNorm bias right before a bias-free 1x1 map and a BatchNorm has an exactly zero gradient (BatchNorm
    # removes any per-channel shift), so Adam turns rounding noise into steps of size lr: such tensors are noise in
    # both runs, bounded by lr * steps, and are compared only against that bound.
    dead = [k for k in a if k.endswith("ln_before.bias")]
    for k in a:
        if k in dead:
            assert a[k].abs().max() <= 2.5e-3 and b[k].abs().max() <= 2.5e-3
        else:
            torch.testing.assert_close(b[k], a[k], atol=1e-5, rtol=1e-4, msg=lambda m, k=k: f"{k}: {m}")
    assert any("bn" in k and "running_var" in k for k in a), "no BatchNorm statistics compared"
    res_one, res_two = (json.loads((r / "results.json").read_text()) for r in (one, two))
    assert res_one["best_val_acc"] == res_two["best_val_acc"] and res_one["test_acc"] == res_two["test_acc"]
    (acc_one, loss_one), = _val_metrics(one)
    (acc_two, loss_two), = _val_metrics(two)
    assert acc_one == acc_two and loss_two == pytest.approx(loss_one, rel=1e-5)


def test_non_finite_loss_stops_with_the_step(ave_cache, ave_run):
    model = json.loads((ave_run / "run.json").read_text())["model"]
    task = TaskModule("ave", model, {})
    ds = AveCacheDataset(ave_cache, "train")
    batch = collate([ds[0], ds[1]])
    assert torch.isfinite(task.training_step(batch, 0))  # the clean batch trains
    batch["audio"][0, 3] = float("nan")
    with pytest.raises(NonFiniteLoss, match=r"not finite at step 0 \(epoch 0\)") as info:
        task.training_step(batch, 0)
    assert isinstance(info.value, LavishError) and "\n" not in str(info.value)
