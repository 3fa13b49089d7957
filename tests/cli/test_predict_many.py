"""``lavish predict`` on folders and long videos, end to end through the command line: one JSON line per video,
resume after kill -9 and after a full disk giving the file an uninterrupted run gives, failures listed, memory
that does not grow with a video's length."""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from lavish.cli.main import main
from lavish.media.writer import write_generated_video, write_video

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "media"))
from media_gen import tone  # noqa: E402


def _video(path: Path, seconds: int, fps: int = 4, seed: int = 0, size=(48, 64)) -> Path:
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 255, (*size, 3), dtype=np.uint8)
    return write_generated_video(path, seconds, fps, lambda i: np.roll(base, 5 * i, axis=1),
                                 lambda s: tone(200 + 40 * ((s + seed) % 7), 1.0, 16000))


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    """10 videos of 10-18 s, a text file and a picture that are not videos, a video in a sub-folder."""
    root = tmp_path_factory.mktemp("folder") / "videos"
    (root / "more").mkdir(parents=True)
    for k in range(9):
        _video(root / f"clip{k:02d}.mp4", 10 + k, seed=k)
    _video(root / "more" / "deep.mkv", 12, seed=11)
    (root / "README.txt").write_text("my holiday videos")
    (root / "more" / "cover.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    return root


def _cli(*args: str, env=None, preexec_fn=None, check=True) -> subprocess.CompletedProcess:
    run = subprocess.run([sys.executable, "-m", "lavish", *args], capture_output=True, text=True,
                         env={**os.environ, **(env or {})}, preexec_fn=preexec_fn, timeout=600)
    if check:
        assert run.returncode == 0, run.stderr
    return run


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture(scope="module")
def uninterrupted(folder, ave_run, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("whole") / "results.jsonl"
    run = _cli("predict", str(folder), "--checkpoint", str(ave_run / "best.safetensors"), "--out", str(out),
               "--no-progress")
    assert "skipped 2 file(s) that are not videos" in run.stderr and "10 video(s) done" in run.stderr
    return out


def test_a_folder_gives_a_line_per_video(uninterrupted, folder, ave_run, capsys):
    lines = _lines(uninterrupted)
    assert [r["video"] for r in lines] == sorted(str(p) for p in folder.rglob("*") if p.suffix in (".mp4", ".mkv"))
    failed = (uninterrupted.parent / "failed.tsv").read_text().splitlines()
    assert sorted(line.split("\t")[0] for line in failed) == sorted([str(folder / "README.txt"),
                                                                     str(folder / "more" / "cover.jpg")])
    # each line is what `lavish predict VIDEO --json` prints for that video
    assert main(["predict", lines[3]["video"], "--checkpoint", str(ave_run / "best.safetensors"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == [lines[3]]
    assert all(set(e) == {"label", "start", "end", "probability"} for r in lines for e in r["events"])
    # --min-duration leaves out the shorter events, nothing else
    assert main(["predict", lines[3]["video"], "--checkpoint", str(ave_run / "best.safetensors"), "--json",
                 "--min-duration", "2", "--batch-size", "2"]) == 0
    (longer,) = json.loads(capsys.readouterr().out)
    assert longer["events"] == [e for e in lines[3]["events"] if e["end"] - e["start"] >= 2]
    assert longer["seconds"] == lines[3]["seconds"]


def test_resume_after_kill_9_gives_the_same_file(uninterrupted, folder, ave_run, tmp_path):
    out = tmp_path / "results.jsonl"
    args = [sys.executable, "-m", "lavish", "predict", str(folder), "--checkpoint",
            str(ave_run / "best.safetensors"), "--out", str(out), "--no-progress"]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and (not out.exists() or out.read_text().count("\n") < 3):
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    written = out.read_text().count("\n")
    assert 3 <= written < 10, written  # killed in the middle of the folder
    _cli("predict", str(folder), "--checkpoint", str(ave_run / "best.safetensors"), "--out", str(out), "--resume",
         "--no-progress")
    assert out.read_bytes() == uninterrupted.read_bytes()


def test_resume_after_a_full_disk_gives_the_same_file(uninterrupted, folder, ave_run, tmp_path):
    """The process may not grow any file past 6 kB (as a disk that fills up): one line naming the file, every line
    already written stays whole, --resume finishes the job."""
    out = tmp_path / "results.jsonl"

    def small_disk():
        resource.setrlimit(resource.RLIMIT_FSIZE, (6000, resource.RLIM_INFINITY))

    run = _cli("predict", str(folder), "--checkpoint", str(ave_run / "best.safetensors"), "--out", str(out),
               "--no-progress", preexec_fn=small_disk, check=False)
    assert run.returncode == 2 and "cannot write" in run.stderr and "results.jsonl" in run.stderr, run.stderr
    assert len(run.stderr.strip().splitlines()) == 1
    partial = _lines(out)  # every line parses
    assert 0 < len(partial) < 10
    _cli("predict", str(folder), "--checkpoint", str(ave_run / "best.safetensors"), "--out", str(out), "--resume",
         "--no-progress")
    assert out.read_bytes() == uninterrupted.read_bytes()


def test_resume_with_another_checkpoint_is_refused(uninterrupted, folder, ave_run, tmp_path, capsys):
    from safetensors import safe_open
    from safetensors.torch import save_file

    other = tmp_path / "other.safetensors"  # the same model with one weight changed: another model
    with safe_open(ave_run / "best.safetensors", "pt") as f:
        tensors, metadata = {k: f.get_tensor(k) for k in f.keys()}, f.metadata()
    name = sorted(tensors)[0]
    tensors[name] = tensors[name] + 1
    save_file(tensors, other, metadata)
    before = uninterrupted.read_bytes()
    capsys.readouterr()
    code = main(["predict", str(folder), "--checkpoint", str(ave_run / "best.safetensors"), "--out",
                 str(uninterrupted), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and "--resume" in err and len(err.strip().splitlines()) == 1
    code = main(["predict", str(folder), "--checkpoint", str(other), "--out", str(uninterrupted), "--resume",
                 "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and "another checkpoint" in err and len(err.strip().splitlines()) == 1
    assert uninterrupted.read_bytes() == before


def test_broken_videos_are_listed_and_the_rest_goes_on(ave_run, tmp_path, capsys):
    videos = tmp_path / "in"
    videos.mkdir()
    _video(videos / "good.mp4", 8)
    (videos / "text.mp4").write_text("not a video at all")
    write_video(videos / "stops.mp4", np.zeros((120, 48, 64, 3), np.uint8), 4, tone(300, 50.0, 16000))
    out = tmp_path / "r.jsonl"
    capsys.readouterr()
    code = main(["predict", str(videos), "--checkpoint", str(ave_run / "best.safetensors"), "--out", str(out),
                 "--no-progress", "--workers", "2"])
    err = capsys.readouterr().err
    assert code == 1 and "2 failed" in err
    lines = {Path(r["video"]).name: r for r in _lines(out)}
    assert set(lines) == {"good.mp4", "stops.mp4"}
    assert len(lines["stops.mp4"]["seconds"]) == 20 and "truncated" in lines["stops.mp4"]["error"]
    failed = dict(line.split("\t") for line in (tmp_path / "failed.tsv").read_text().splitlines())
    assert set(failed) == {str(videos / "text.mp4"), str(videos / "stops.mp4")}
    assert all("\n" not in reason for reason in failed.values())


def test_predict_option_refusals(ave_run, folder, tmp_path, capsys):
    ckpt = str(ave_run / "best.safetensors")
    empty = tmp_path / "no_videos"
    empty.mkdir()
    (empty / "notes.txt").write_text("nothing to see")
    for argv, words in [
        (["predict", str(folder), "--checkpoint", ckpt, "--resume"], ["--resume", "--out FILE.jsonl"]),
        (["predict", str(folder / "clip00.mp4"), "--checkpoint", ckpt, "--min-duration", "-1"], ["min_duration=-1"]),
        (["predict", str(folder / "clip00.mp4"), "--checkpoint", ckpt, "--batch-size", "0"], ["batch_size=0"]),
        (["predict", str(empty), "--checkpoint", ckpt], ["no video to run"]),
        (["predict", str(folder / "README.txt"), "--checkpoint", ckpt], ["README.txt", "not a readable media file"]),
        (["predict", str(tmp_path / "*.mp4"), "--checkpoint", ckpt], ["no file matches"]),
    ]:
        capsys.readouterr()
        assert main(argv) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error: ") and all(w in err[0] for w in words), err


PEAK = ("import resource, sys; from lavish.cli.main import main; code = main(sys.argv[1:]); "
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr); sys.exit(code)")


def test_memory_does_not_grow_with_the_length(ave_run, tmp_path):
    """Peak RSS of `lavish predict` on a 6-minute video within 1.25x of a 1-minute one's (the whole-video decode
    this replaced grew about 50 MB a minute of such video; docs/performance.md has a 2-hour one)."""
    def peak(video: Path) -> int:
        run = subprocess.run([sys.executable, "-c", PEAK, "predict", str(video), "--checkpoint",
                              str(ave_run / "best.safetensors"), "--json"], capture_output=True, text=True,
                             timeout=600)
        assert run.returncode == 0, run.stderr
        assert len(json.loads(run.stdout)[0]["seconds"]) == int(video.stem[1:])
        return int(run.stderr.strip().splitlines()[-1])

    short = peak(_video(tmp_path / "s60.mp4", 60, fps=4, size=(120, 160)))
    long = peak(_video(tmp_path / "s360.mp4", 360, fps=4, size=(120, 160)))
    assert long <= 1.25 * short, (short, long)
