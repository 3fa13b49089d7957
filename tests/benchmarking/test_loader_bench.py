"""lavish.benchmarking.loader: the training DataLoader timed on a real prepared AVE cache (tests/conftest.py)."""

from __future__ import annotations

import json

import pytest
import torch

from lavish.cli.main import main
from lavish.errors import ConfigError, DataError
from lavish.tasks.ave.dataset import AveDataModule
from lavish.benchmarking.loader import loading_table, measure_loading

MICRO = "lavish_vit_micro_patch8_64"


def test_measure_loading_times_the_training_batches(ave_cache):
    result = measure_loading(ave_cache, batch_size=2, workers=(0, 1), batches=3, backbone=MICRO, device="cpu")
    train_batch = next(iter(AveDataModule(ave_cache, backbone=MICRO, batch_size=2).train_dataloader()))
    shapes = {k: list(v.shape) for k, v in train_batch.items() if isinstance(v, torch.Tensor)}
    assert result["batch_shapes"] == shapes == {"frames": [2, 10, 64, 64, 3], "audio": [2, 10, 96, 64],
                                                "labels": [2, 10]}
    nbytes = sum(v.nbytes for v in train_batch.values() if isinstance(v, torch.Tensor))
    assert result["mb_per_batch"] == pytest.approx(nbytes / 1e6)
    assert result["items"] == 4 and result["device"] == "cpu" and result["pin_memory"] is False
    assert set(result["workers"]) == {"0", "1"}
    for r in result["workers"].values():
        # 4 train items = 2 batches per epoch: the third batch comes from a second epoch
        assert r["batches"] == 3 == len(r["all_s"]) and r["epochs"] == 2
        assert all(t > 0 for t in r["all_s"]) and r["first_batch_s"] == r["all_s"][0]
        assert r["s_per_batch"] == pytest.approx((r["all_s"][1] + r["all_s"][2]) / 2)
        assert r["batches_per_s"] == pytest.approx(1 / r["s_per_batch"])
        assert r["mb_per_s"] == pytest.approx(result["mb_per_batch"] / r["s_per_batch"])
        assert "h2d_s_per_batch" not in r
    text = loading_table(result, step_s=0.5)
    assert "data/step" in text
    assert f"{result['workers']['1']['s_per_batch'] / 0.5:.3f}" in text


def test_measure_loading_refuses_bad_settings(ave_cache):
    with pytest.raises(ConfigError, match="batches=1"):
        measure_loading(ave_cache, batches=1)
    with pytest.raises(ConfigError, match="workers"):
        measure_loading(ave_cache, workers=(-1,))
    with pytest.raises(DataError, match="frame_size"):  # cache made for the micro backbone, not Swin-V2
        measure_loading(ave_cache, backbone="swinv2_base_window12_192")
    with pytest.raises(DataError, match="no split 'nope'"):
        measure_loading(ave_cache, split="nope")


def test_bench_data_option_adds_the_loader_table(ave_cache, tmp_path, capsys):
    out = tmp_path / "b.json"
    code = main(["bench", "--task", "ave", "--backbone", MICRO, "--videos", "2", "--repeats", "1",
                 "--variants", "lavish2", "--no-eval", "--no-memory", "--device", "cpu", "--out", str(out),
                 "--data", str(ave_cache)])
    assert code == 0
    text = capsys.readouterr().out
    assert "data loading:" in text and "data/step" in text
    result = json.loads(out.read_text())
    assert set(result["data_loading"]["workers"]) == {"0", "1", "2"}
    assert result["data_loading"]["batch_shapes"]["frames"][0] == 2
