"""Faults: ``lavish prepare`` and ``lavish train`` killed with SIGKILL at seeded random moments of their work and
rerun until done give the cache byte for byte and the run (weights, metrics) of an uninterrupted command; a write
that fails with ENOSPC stops the command with one line saying how to continue, and continuing finishes the job
with the same result.

Kill moments are drawn uniformly over the work of an uninterrupted run (from its first write to its exit) and
counted in work done by the attempts (from each attempt's first write: its first file newer than its start), so
kills land in the work, not in Python's start-up; an attempt that finishes before its moment counts as no kill.
"""

from __future__ import annotations

import errno
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from lavish import fileio
from lavish.cli.main import main
from lavish.engine.resume import read_checkpoint_file

pytestmark = pytest.mark.slow

MICRO = "lavish_vit_micro_patch8_64"
SRC = Path(__file__).resolve().parents[2] / "src"
SEED = 2023
KILLS = 5
TRAIN = ["--backbone", MICRO, "--no-pretrained", "--lr", "1e-3", "--lr-head", "1e-3", "--no-progress",
         "--epochs", "3", "--batch-size", "2", "--seed", "7"]  # 2 steps per epoch on the 4 training videos


def _env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(SRC), env.get("PYTHONPATH")) if p)
    return env


def _tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _wrote_since(folder: Path, since: float) -> bool:
    """True once a file under ``folder`` has changed after ``since`` (wall clock)."""
    for p in folder.rglob("*"):
        try:
            if p.is_file() and p.stat().st_mtime >= since:
                return True
        except FileNotFoundError:  # renamed away while we looked
            pass
    return False


def _attempt(argv: list[str], out: Path, kill_after: float | None) -> tuple[bool, float]:
    """Run ``lavish argv``; ``kill_after`` seconds after its first write, SIGKILL it (None: let it finish).

    Returns (killed while working, seconds from its first write to its end).
    """
    start, log = time.time(), tempfile.TemporaryFile()
    proc = subprocess.Popen([sys.executable, "-m", "lavish", *argv], env=_env(), stdout=subprocess.DEVNULL,
                            stderr=log, start_new_session=True)
    deadline = time.monotonic() + 600
    while proc.poll() is None and not _wrote_since(out, start) and time.monotonic() < deadline:
        time.sleep(0.01)
    working = time.monotonic()
    while proc.poll() is None and (kill_after is None or time.monotonic() - working < kill_after) \
            and time.monotonic() < deadline:
        time.sleep(0.005)
    killed = proc.poll() is None
    if killed:
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    log.seek(0)
    assert killed or proc.returncode == 0, log.read().decode(errors="replace")[-3000:]
    assert kill_after is not None or not killed, f"{argv[0]} did not finish in 600 s"
    return killed, time.monotonic() - working


def _killed_and_rerun(argv: list[str], out: Path, work: float, rng: random.Random, again=lambda argv: argv) -> int:
    """Kill ``lavish argv`` at KILLS seeded moments of ``work`` seconds of work (the attempts' work added up), rerun
    it (as ``again(argv)``) after each, and let the last attempt finish; returns the kills that hit a running
    command (an attempt that finishes before its moment ends the series)."""
    moments = sorted(rng.uniform(0, work) for _ in range(KILLS))
    done, kills = 0.0, 0
    for moment in moments:
        killed, worked = _attempt(again(argv) if kills else argv, out, max(moment - done, 0.0))
        if not killed:
            break
        done, kills = done + worked, kills + 1
    else:
        _attempt(again(argv), out, None)
    print(f"{argv[0]}: {work:.1f} s of work, kill moments {[round(m, 2) for m in moments]}: {kills} killed it")
    return kills


def _reference(argv, folder: Path) -> tuple[Path, float]:
    """(output, seconds of work) of ``lavish argv(folder / "out")`` run uninterrupted in a subprocess."""
    _, work = _attempt(argv(folder / "out"), folder, None)
    return folder / "out", work


def _kill_series(argv, work: float, tmp_path: Path, check, again=lambda argv: argv) -> None:
    """Series of :func:`_killed_and_rerun` into new ``--out`` folders until KILLS kills hit a running command;
    ``check(out)`` after each series."""
    rng, kills, series = random.Random(SEED), 0, 0
    while kills < KILLS:
        out = tmp_path / f"out{series}"
        out.mkdir()
        kills += _killed_and_rerun(argv(out), out, work, rng, again)
        series += 1
        check(out)
        assert series < 5


def _resume_if_saved(argv: list[str]) -> list[str]:
    out = Path(argv[argv.index("--out") + 1])
    return [*argv, "--resume"] if (out / "checkpoints" / "last.ckpt").exists() else argv


class _FullDisk:
    """Patch for :func:`lavish.fileio._commit`: the ``nth`` commit of a file that ``matches`` fails with ENOSPC."""

    def __init__(self, matches, nth: int) -> None:
        self.matches, self.nth, self.seen, self.real = matches, nth, 0, fileio._commit

    def __call__(self, tmp: Path, path: Path) -> None:
        if self.matches(path):
            self.seen += 1
            if self.seen == self.nth:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self.real(tmp, path)


def _one_error_line(capsys, *parts: str) -> str:
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: cannot write "), lines
    for part in parts:
        assert part in lines[0], (part, lines[0])
    return lines[0]


# ---------------------------------------------------------------------------------------------------- prepare
@pytest.fixture(scope="module")
def prepared(ave_layout, tmp_path_factory):
    """(argv maker, reference cache, seconds of work) of an uninterrupted ``lavish prepare`` subprocess."""
    def argv(out: Path) -> list[str]:
        return ["prepare", "ave", "--root", str(ave_layout), "--out", str(out), "--backbone", MICRO, "--no-progress"]

    return (argv, *_reference(argv, tmp_path_factory.mktemp("prepare_ref")))


def test_prepare_killed_at_random_moments_resumes_to_the_same_bytes(prepared, tmp_path):
    argv, ref, work = prepared

    def same_bytes(out: Path) -> None:
        assert _tree(out) == _tree(ref)

    _kill_series(argv, work, tmp_path, same_bytes)


def test_prepare_on_a_full_disk_stops_in_one_line_and_resumes(prepared, tmp_path, monkeypatch, capsys):
    argv, ref, _ = prepared
    out = tmp_path / "cache"
    monkeypatch.setattr(fileio, "_commit", _FullDisk(lambda p: p.suffix == ".npy", 5))  # the 3rd video's frames
    capsys.readouterr()
    assert main(argv(out)) == 2
    _one_error_line(capsys, "frames/", ".npy", "No space left on device", "the cache is resumable",
                    "rerun the same command")
    assert len(list((out / "done").iterdir())) == 2 and not (out / "manifest.json").exists()
    monkeypatch.undo()
    assert main(argv(out)) == 0
    assert _tree(out) == _tree(ref)


# ------------------------------------------------------------------------------------------------------ train
def _same_run(run: Path, ref: Path) -> None:
    a, b = load_file(run / "best.safetensors"), load_file(ref / "best.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    ca, cb = (read_checkpoint_file(r / "checkpoints" / "last.ckpt")["state_dict"] for r in (run, ref))
    assert ca.keys() == cb.keys() and all(torch.equal(ca[k], cb[k]) for k in ca)
    res, want = (json.loads((r / "results.json").read_text()) for r in (run, ref))
    for key in ("best_val_acc", "best_epoch", "test_acc", "epochs_run"):
        assert res[key] == want[key], key


@pytest.fixture(scope="module")
def trained(ave_cache, tmp_path_factory):
    """(argv maker, reference run, seconds of work) of an uninterrupted ``lavish train`` subprocess."""
    def argv(out: Path) -> list[str]:
        return ["train", "ave", "--data", str(ave_cache), "--out", str(out), *TRAIN]

    return (argv, *_reference(argv, tmp_path_factory.mktemp("train_ref")))


def test_train_killed_at_random_moments_resumes_to_the_same_run(trained, tmp_path):
    argv, ref, work = trained
    _kill_series(argv, work, tmp_path, lambda out: _same_run(out, ref), again=_resume_if_saved)


def test_train_on_a_full_disk_stops_in_one_line_and_resumes(trained, tmp_path, monkeypatch, capsys):
    argv, ref, _ = trained
    out = tmp_path / "run"
    monkeypatch.setattr(fileio, "_commit", _FullDisk(lambda p: p.name == "last.ckpt", 2))  # the checkpoint of the second epoch
    capsys.readouterr()
    assert main(argv(out)) == 2
    _one_error_line(capsys, "last.ckpt", "No space left on device", "intact",
                    "the run is resumable from its last epoch", "rerun the same command with --resume")
    assert read_checkpoint_file(out / "checkpoints" / "last.ckpt")["epoch"] == 0
    assert not [p for p in out.rglob("*") if fileio.TEMP_MARK in p.name]
    monkeypatch.undo()
    assert main([*argv(out), "--resume"]) == 0
    _same_run(out, ref)
