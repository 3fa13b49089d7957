"""`lavish train ave --fused-adapters` end to end: the compiled LAVISH regions train the same model as the eager
adapters (same data, seed and steps), the run's adapter file evaluates like any other, and compiling prints nothing
to the user beyond the usual lines (no torch log lines, no Python warnings, no traceback)."""

from __future__ import annotations

import json

import torch
from safetensors.torch import load_file

from lavish.cli.main import main

MICRO = "lavish_vit_micro_patch8_64"


def _train(cache, out, *extra) -> list[str]:
    return ["train", "ave", "--data", str(cache), "--out", str(out), "--backbone", MICRO, "--no-pretrained",
            "--lr", "1e-3", "--lr-head", "1e-3", "--no-progress", "--epochs", "2", "--batch-size", "2",
            "--seed", "0", *extra]


def test_fused_training_matches_eager_training_and_is_quiet(ave_cache, tmp_path, capfd):
    eager, fused = tmp_path / "eager", tmp_path / "fused"
    assert main(_train(ave_cache, eager)) == 0
    capfd.readouterr()
    assert main(_train(ave_cache, fused, "--fused-adapters")) == 0
    out, err = capfd.readouterr()

    # nothing from the compiler reaches the terminal: only lavish's own lines
    for line in (out + err).splitlines():
        assert "Traceback" not in line and "site-packages" not in line and "Warning" not in line, line
        assert not line.startswith(("W1", "I1", "E1")), line  # glog-style lines of torch's C++ / logging

    # 4 optimiser steps (lr 1e-3: a wrong update moves a weight by ~1e-3) through the compiled regions reach the
    # eager run's weights and metrics. fp32: compiled reductions sum in another order, equal to rounding, not bit
    # for bit; the bottleneck LayerNorms' biases feed a BatchNorm, which removes them, so their gradient is
    # rounding noise that Adam scales up to ~1e-5 in either run: hence atol 1e-4, well under one wrong step
    a, b = load_file(eager / "best.safetensors"), load_file(fused / "best.safetensors")
    assert a.keys() == b.keys() and len(a) > 10
    for key in a:
        torch.testing.assert_close(b[key], a[key], rtol=1e-4, atol=1e-4, msg=key)
    res_a, res_b = (json.loads((r / "results.json").read_text()) for r in (eager, fused))
    assert res_a["epochs_run"] == res_b["epochs_run"] == 2
    assert res_a["test_acc"] == res_b["test_acc"] and res_a["best_val_acc"] == res_b["best_val_acc"]

    # the fused run's adapter file is an ordinary one: `lavish eval` reads it and prints the same accuracy
    assert main(["eval", "ave", "--checkpoint", str(fused / "best.safetensors"), "--data", str(ave_cache), "--json"]) == 0
    report = json.loads(capfd.readouterr().out)
    assert report["accuracy"] == res_b["test_acc"]
