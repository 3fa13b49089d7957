"""Compiled training end to end: `lavish train ave --fused-adapters` (each adapter position one compiled region) and
`lavish train ave --compile-step` (the whole step one graph, issue 16's capturable step) train the same model as the
eager step (same data, seed and steps), their adapter files evaluate like any other, compiling prints nothing to the
user beyond the usual lines (no torch log lines, no Python warnings, no traceback), and the settings
`--compile-step` cannot take are refused in one line.

On the CPU "inductor" is the --compile-step mode that runs; "cuda-graphs" is the same graph replayed as CUDA graphs,
which only a GPU runs (refused here)."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file
from torch._dynamo.utils import counters

from lavish.cli.main import main
from lavish.errors import ConfigError
from lavish.engine.runner import TrainConfig

MICRO = "lavish_vit_micro_patch8_64"


def _train(cache, out, *extra) -> list[str]:
    return ["train", "ave", "--data", str(cache), "--out", str(out), "--backbone", MICRO, "--no-pretrained",
            "--lr", "1e-3", "--lr-head", "1e-3", "--no-progress", "--epochs", "2", "--batch-size", "2",
            "--seed", "0", *extra]


@pytest.fixture(scope="module")
def eager_run(ave_cache, tmp_path_factory):
    """The eager reference run (shared by the compiled runs)."""
    out = tmp_path_factory.mktemp("eager") / "run"
    assert main(_train(ave_cache, out)) == 0
    return out


def _check_compiled_run(ave_cache, eager, compiled, capfd) -> None:
    """``compiled`` (just trained) printed only lavish's lines and reached ``eager``'s model; its file evaluates."""
    out, err = capfd.readouterr()
    for line in (out + err).splitlines():
        assert "Traceback" not in line and "site-packages" not in line and "Warning" not in line, line
        assert not line.startswith(("W1", "I1", "E1")), line  # glog-style lines of torch's C++ / logging

    # 4 optimiser steps (lr 1e-3: a wrong update moves a weight by ~1e-3) through the compiled code reach the
    # eager run's weights and metrics. fp32: compiled reductions sum in another order, equal to rounding, not bit
    # for bit; the bottleneck LayerNorms' biases feed a BatchNorm, which removes them, so their gradient is
    # rounding noise that Adam scales up to ~1e-5 in either run: hence atol 1e-4, well under one wrong step
    a, b = load_file(eager / "best.safetensors"), load_file(compiled / "best.safetensors")
    assert a.keys() == b.keys() and len(a) > 10
    for key in a:
        torch.testing.assert_close(b[key], a[key], rtol=1e-4, atol=1e-4, msg=key)
    res_a, res_b = (json.loads((r / "results.json").read_text()) for r in (eager, compiled))
    assert res_a["epochs_run"] == res_b["epochs_run"] == 2
    assert res_a["test_acc"] == res_b["test_acc"] and res_a["best_val_acc"] == res_b["best_val_acc"]

    # the compiled run's adapter file is an ordinary one: `lavish eval` reads it and prints the same accuracy
    assert main(["eval", "ave", "--checkpoint", str(compiled / "best.safetensors"), "--data", str(ave_cache),
                 "--json"]) == 0
    assert json.loads(capfd.readouterr().out)["accuracy"] == res_b["test_acc"]


def test_fused_training_matches_eager_training_and_is_quiet(ave_cache, eager_run, tmp_path, capfd):
    capfd.readouterr()
    assert main(_train(ave_cache, tmp_path / "fused", "--fused-adapters")) == 0
    _check_compiled_run(ave_cache, eager_run, tmp_path / "fused", capfd)


def test_compiled_step_trains_the_eager_model_and_is_quiet(ave_cache, eager_run, tmp_path, capfd):
    capfd.readouterr()
    counters.clear()
    assert main(_train(ave_cache, tmp_path / "compiled", "--compile-step")) == 0
    # the training steps ran the compiled graph: one graph (the train-mode forward; evaluation stays eager), no break
    assert counters["stats"]["unique_graphs"] == 1 and not counters["graph_break"]
    assert json.loads((tmp_path / "compiled" / "run.json").read_text())["train"]["compile_step"] == "inductor"
    _check_compiled_run(ave_cache, eager_run, tmp_path / "compiled", capfd)


def test_compile_step_with_fused_adapters_is_refused_in_one_line(ave_cache, tmp_path, capsys):
    assert main(_train(ave_cache, tmp_path / "run", "--compile-step", "--fused-adapters")) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: --compile-step compiles the whole training step, the adapters included: give it "
                   "without --fused-adapters"]
    assert not (tmp_path / "run").exists()


def test_compile_step_with_checkpointing_is_refused_in_one_line(ave_cache, tmp_path, capsys):
    assert main(_train(ave_cache, tmp_path / "run", "--compile-step", "--checkpointing", "adapters")) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: --compile-step does not compile activation checkpointing")
    assert not (tmp_path / "run").exists()


def test_cuda_graphs_are_refused_without_a_gpu(ave_cache, tmp_path, capsys):
    if torch.cuda.is_available():  # a CUDA GPU takes it
        assert TrainConfig(compile_step="cuda-graphs").compile_step == "cuda-graphs"
        return
    assert main(_train(ave_cache, tmp_path / "run", "--compile-step", "cuda-graphs")) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: compile-step='cuda-graphs' needs a CUDA GPU, and torch sees none on this machine: use "
                   "'inductor'"]
    with pytest.raises(ConfigError, match="needs a CUDA GPU"):
        TrainConfig(compile_step="cuda-graphs")


def test_compile_step_values():
    assert TrainConfig().compile_step == "none"
    assert TrainConfig(compile_step=True).compile_step == "inductor"
    assert TrainConfig(compile_step=False).compile_step == "none"
    with pytest.raises(ConfigError, match="compile-step='fast' is not valid"):
        TrainConfig(compile_step="fast")
