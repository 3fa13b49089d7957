"""lavish.benchmarking.step / ``lavish bench``: real steps of the micro backbone, JSON keys the issue names."""

from __future__ import annotations

import json
import math

import pytest
import torch

from lavish.cli.main import main
from lavish.benchmarking import step as benchmark
from lavish.benchmarking.step import BenchConfig, split_variant

MICRO = "lavish_vit_micro_patch8_64"


def test_split_variant_and_unknown_names():
    assert split_variant("lavish2+ckpt") == ("lavish2", frozenset({"ckpt"}))
    assert split_variant("floor") == ("floor", frozenset())
    with pytest.raises(ValueError, match="unknown variant 'lavish3'"):
        split_variant("lavish3")
    with pytest.raises(ValueError, match=r"unknown variant 'floor\+fast'"):
        split_variant("floor+fast")
    with pytest.raises(ValueError, match="needs adapters"):
        split_variant("floor+ackpt")
    assert split_variant("lavish2+fused") == ("lavish2", frozenset({"fused"}))
    with pytest.raises(ValueError, match="need adapter modules"):
        split_variant("floor+fused")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match=r"\+graphs replays CUDA graphs, which needs --device cuda"):
            BenchConfig(variants=("floor", "lavish2+graphs"))
        with pytest.raises(ValueError, match=r"\+capture replays CUDA graphs, which needs --device cuda"):
            BenchConfig(variants=("floor+capture",))
    assert split_variant("floor+compile") == ("floor", frozenset({"compile"}))
    with pytest.raises(ValueError, match="do not compile activation checkpointing"):
        split_variant("lavish2+compile+ckpt")
    for name in ("lavish2+compile+fused", "lavish2+capture+graphs", "lavish2+compile+capture"):
        with pytest.raises(ValueError, match="give one of them"):
            split_variant(name)


def test_kernel_count_is_deterministic_and_adapters_add_kernels_not_syncs():
    """The kernel column: the same count for the same step every time (no timing); LAVISH launches more kernels
    than the frozen floor, and no step reads a tensor on the host (the loss builds its one-hot target without
    F.one_hot's min/max reads; the fused AdamW reads no step counter), so it could be captured whole."""
    batch = benchmark.make_batch(MICRO, 1)
    counts = {}
    for name in ("floor", "lavish2"):
        torch.manual_seed(0)
        stepper = benchmark.Stepper(benchmark.build(name, MICRO), "32")
        stepper.step(batch)
        first, second = benchmark.step_kernels(stepper, batch), benchmark.step_kernels(stepper, batch)
        assert first == second and first["kernels"] > 0
        counts[name] = first
    assert counts["floor"]["kernels"] < counts["lavish2"]["kernels"]
    assert counts["lavish2"]["syncs"] == counts["floor"]["syncs"] == 0


def test_cuda_refused_without_gpu():
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(ValueError, match="no CUDA GPU"):
        BenchConfig(device="cuda")
    assert BenchConfig().device == "cpu"


def test_run_measures_every_variant_with_real_steps():
    cfg = BenchConfig(backbone=MICRO, videos=1, variants=("floor", "lavish2"), repeats=2, checkpointing=True,
                      memory=False, eval=True)
    result = benchmark.run(cfg, log=lambda *a: None)
    v = result["variants"]
    assert set(v) == {"floor", "lavish2", "floor+ckpt", "lavish2+ackpt", "lavish2+ckpt"}
    for r in v.values():
        assert len(r["all_s"]) == 2 and all(t > 0 for t in r["all_s"])
        assert r["gflops_per_step"] > 0 and 0 < r["fraction_of_gemm_peak"]
        assert r["kernels"] > 0 and r["syncs"] >= 0
    # the adapters' GEMMs are small next to the frozen blocks' (their attention is not counted on the CPU; the
    # floor's backward also runs through the first block to the patch tokens, which LAVISH's need not):
    # same FLOPs within 10 %; checkpointing recomputes the forward, so it counts more than without
    assert v["lavish2"]["gflops_per_step"] == pytest.approx(v["floor"]["gflops_per_step"], rel=0.1)
    assert v["lavish2+ckpt"]["gflops_per_step"] > v["lavish2"]["gflops_per_step"]
    # activations kept for backward: adapters add some; recomputing them leaves about the floor's; blocks far less
    assert v["lavish2+ckpt"]["saved_mb"] < v["lavish2+ackpt"]["saved_mb"] < v["lavish2"]["saved_mb"]
    assert v["floor+ckpt"]["saved_mb"] < v["floor"]["saved_mb"] < v["lavish2"]["saved_mb"]
    assert result["ackpt_saved_ratio"] <= 1.1 and result["saved_ratio"] > 1.2
    assert result["time_ratio"] == pytest.approx(v["lavish2"]["step_s"] / v["floor"]["step_s"])
    assert result["kernel_ratio"] == v["lavish2"]["kernels"] / v["floor"]["kernels"] > 1
    assert result["eval"]["segments_per_s"] > 0 and result["eval"]["predict_10s_clip_s"] > 0
    sweep = result["adapter_gflops_per_segment"]
    assert sweep["m=1"] < sweep["m=2"] < sweep["m=64"]  # Fig. 4: cost grows with latent tokens
    assert len(benchmark.table(result).splitlines()) >= 2 + len(v)  # header lines + one row per variant


def test_kernels_only_counts_without_timing():
    """--kernels-only: the same kernel counts as a full run, no timed step, no time ratio; the table prints '-'."""
    cfg = BenchConfig(backbone=MICRO, videos=1, variants=("floor", "lavish2"), memory=False, eval=False,
                      kernels_only=True)
    result = benchmark.run(cfg, log=lambda *a: None)
    v = result["variants"]
    assert result["repeats"] == 0 and result["time_ratio"] is None and result["gemm_gflops"] is None
    for r in v.values():
        assert r["step_s"] is None and r["all_s"] == [] and r["kernels"] > 0 and r["saved_mb"] > 0
    assert result["kernel_ratio"] == v["lavish2"]["kernels"] / v["floor"]["kernels"] > 1
    batch = benchmark.make_batch(MICRO, 1)
    torch.manual_seed(0)
    stepper = benchmark.Stepper(benchmark.build("lavish2", MICRO), "32")
    stepper.step(batch)
    assert benchmark.step_kernels(stepper, batch)["kernels"] == v["lavish2"]["kernels"]
    rows = benchmark.table(result).splitlines()
    assert rows[2].split()[:3] == ["floor", "-", "-"] and "GEMM" not in rows[-1]


def test_bench_cli_json_has_the_named_keys(tmp_path, capsys):
    out = tmp_path / "b.json"
    code = main(["bench", "--task", "ave", "--backbone", MICRO, "--videos", "1", "--repeats", "1",
                 "--variants", "floor,lavish2", "--no-eval", "--json", "--out", str(out)])
    assert code == 0
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    for key in ("lavish_step_s", "lavish_peak_mb", "floor_step_s", "floor_peak_mb", "gemm_gflops",
                "achieved_gflops"):
        assert isinstance(printed[key], float) and math.isfinite(printed[key]) and printed[key] > 0, key
    # peak memory from fresh subprocesses: the whole process (interpreter, torch, weights) is well over 50 MB
    assert printed["floor_peak_mb"] > 50 and printed["lavish_peak_mb"] > 50
    assert json.loads(out.read_text())["lavish_step_s"] == printed["lavish_step_s"]
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return
    assert out.with_suffix(".png").stat().st_size > 1000  # Fig. 4 plot where matplotlib is installed


def test_bench_cli_refuses_bad_options(capsys):
    assert main(["bench", "--backbone", MICRO, "--variants", "floor,nope"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "unknown variant 'nope'" in err[0]


def test_whole_step_compile_is_one_graph_with_fewer_kernels_and_the_eager_maths():
    """``+compile`` (``lavish train --compile-step``): the floor's trunk and the LAVISH model each compile as one
    graph (fullgraph: a break would raise), the compiled step gives the eager step's loss and updated adapters, makes
    no host sync, and launches fewer kernels than the eager step (inductor fuses the elementwise passes)."""
    from torch._dynamo.utils import counters

    batch = benchmark.make_batch(MICRO, 2)
    counts, params = {}, {}
    for name in ("floor", "floor+compile", "lavish2", "lavish2+compile"):
        torch.manual_seed(0)
        stepper = benchmark.Stepper(benchmark.build(name, MICRO), "32")
        counters.clear()
        losses = [float(stepper.run_step(batch).detach()) for _ in range(2)]
        if "compile" in name:
            assert counters["stats"]["unique_graphs"] == 1 and not counters["graph_break"]
        counts[name] = benchmark.step_kernels(stepper, batch)
        params[name] = [p.detach().clone() for p in stepper.model.parameters() if p.requires_grad]
        counts[name]["losses"] = losses
    for base in ("floor", "lavish2"):
        eager, compiled = counts[base], counts[base + "+compile"]
        assert compiled["losses"] == pytest.approx(eager["losses"], rel=1e-5)
        assert compiled["syncs"] == 0 and compiled["kernels"] < eager["kernels"]
        for a, b in zip(params[base], params[base + "+compile"], strict=True):
            torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-5)
