"""A task defined entirely in tests/engine/toy_task/ (its own package and dist-info with a ``lavish.tasks`` entry
point), put on PYTHONPATH: ``lavish prepare`` / ``train`` / ``eval`` / ``info`` run it through the CLI, in a fresh
process, without a file of lavish edited (docs/tasks.md, "a task outside lavish")."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from ave_layout import write_mp4  # tests/tasks/ave, on the path through tests/conftest.py

TOY = Path(__file__).resolve().parent / "toy_task"
MICRO = "lavish_vit_micro_patch8_64"


def lavish(*args: str, plugin: bool = True) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    if plugin:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(TOY), env.get("PYTHONPATH")]))
    return subprocess.run([sys.executable, "-m", "lavish", *args], capture_output=True, text=True, env=env,
                          timeout=600)


def test_a_task_from_outside_the_package_prepares_trains_evaluates_and_is_counted(tmp_path):
    root = tmp_path / "toy"
    root.mkdir()
    rows = []
    for k, split in enumerate(["train"] * 2 + ["val", "test"]):
        write_mp4(root / f"clip_{k}.mp4", seed=k, seconds=10.0)
        rows.append(f"clip_{k}\t{split}\t{'0011001100' if k % 2 else '1100110011'}")
    (root / "labels.tsv").write_text("\n".join(rows) + "\n")

    listed = lavish("train", "--help")
    assert listed.returncode == 0 and "toy" in listed.stdout, listed.stderr
    assert "toy" not in lavish("train", "--help", plugin=False).stdout  # it comes from the plug-in only

    prep = lavish("prepare", "toy", "--root", str(root), "--out", str(tmp_path / "cache"), "--backbone", MICRO,
                  "--no-progress")
    assert prep.returncode == 0, prep.stderr
    manifest = json.loads((tmp_path / "cache" / "manifest.json").read_text())
    assert manifest["task"] == "toy" and manifest["num_items"] == 4

    run = tmp_path / "run"
    train = lavish("train", "toy", "--data", str(tmp_path / "cache"), "--out", str(run), "--backbone", MICRO,
                   "--no-pretrained", "--epochs", "1", "--batch-size", "2", "--lr", "1e-3", "--no-progress")
    assert train.returncode == 0, train.stderr
    results = json.loads((run / "results.json").read_text())
    assert results["epochs_run"] == 1 and 0.0 <= results["test"]["accuracy"] <= 1.0
    assert results["test"]["seconds"] == 10

    ev = lavish("eval", "toy", "--checkpoint", str(run / "best.safetensors"), "--data", str(tmp_path / "cache"),
                "--json")
    assert ev.returncode == 0, ev.stderr
    assert json.loads(ev.stdout) == results["test"]  # the same file on the same split: the same numbers

    info = lavish("info", "--task", "toy", "--backbone", MICRO, "--json")
    assert info.returncode == 0, info.stderr
    counted = json.loads(info.stdout)
    assert counted["task"] == "toy" and counted["head_params"] == 2 * (2 * 96) + 2  # Linear(2 streams x 96 features, 2)
