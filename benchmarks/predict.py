"""Inference throughput of ``lavish predict``: video-seconds per second of each stage and of the whole pipeline.

    python benchmarks/predict.py --backbone lavish_vit_micro_patch8_64 --seconds 120 --videos 4 --json out.json
    python benchmarks/predict.py --backbone swinv2_base_window12_192 --seconds 20 --videos 2 --levers none bf16

Stages, each on the same generated 320x240 h264 + aac videos (``--size``, ``--fps``; written second by second as a
camera writes them):

* ``decode``: :class:`lavish.media.stream.VideoStream` windows (frames at the backbone's size, audio images of the
  task's front-end) through the DataLoader of ``lavish predict --workers N``, no model. ``per_core`` divides by the
  CPU seconds the decoding processes used (so it does not depend on how many cores there are);
* ``model``: the AVE model (random weights) on one window of 20 one-second segments, inference mode, for the
  frozen backbone alone (``--adapter none``: the floor) and LAVISH, with each lever (``bf16``: CPU/GPU autocast;
  ``compile``: ``torch.compile`` of the model; ``channels_last``: frames in channels-last memory format);
* ``pipeline``: :func:`lavish.engine.predict.predict_many` over ``--videos`` videos with ``--workers`` 0, 1, 2, the
  LAVISH model, every result written to a results file as ``lavish predict DIR --out FILE.jsonl`` does.

Targets (issue 25): the pipeline within 1.2x of its slower stage (the overlap works: ``pipeline_over_slower``), the
LAVISH model within 1.15x of the floor's time (``lavish_over_floor``), decode + spectrogram at least 25x real time
per core on 320x240 media. Prints a table; ``--json`` writes every number.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


def _cpu_seconds() -> float:
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def make_video(path: Path, seconds: int, fps: int, size: tuple[int, int], seed: int) -> Path:
    """A moving noise picture and a tone changing every second (compresses like real footage does not: a
    worst case for the decoder)."""
    from lavish.media.writer import write_generated_video

    rng = np.random.default_rng(seed)
    h, w = size
    base = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
    t = np.arange(16000) / 16000
    return write_generated_video(path, seconds, fps, lambda i: np.roll(base, 4 * i, axis=1),
                                 lambda s: (0.3 * np.sin(2 * np.pi * (200 + 30 * ((s + seed) % 9)) * t)))


def build(backbone: str, adapter: str):
    from lavish import adapter_config
    from lavish.engine.registry import get_task

    task = get_task("ave")
    config = task.model_config_cls(backbone=backbone, adapter=adapter_config(adapter, preset="ave"))
    torch.manual_seed(0)
    model = task.build_model(config, pretrained=False).eval()
    spec = task.input_spec(backbone)
    meta = {"classes": [f"class{k}" for k in range(config.num_classes - 1)] + ["background"],
            "frame_size": list(spec.frame_size), "frontend": spec.audio_frontend}
    return task, model, meta


def bench_decode(task, meta: dict, videos: list[Path], workers: int) -> dict:
    from lavish.engine.predict import _Windows

    loader = torch.utils.data.DataLoader(_Windows(task, meta, [str(v) for v in videos], {}, 1), batch_size=None,
                                         num_workers=workers, collate_fn=lambda x: x,
                                         prefetch_factor=2 if workers else None)
    cpu, start = _cpu_seconds(), time.perf_counter()
    seconds = sum(len(payload) for kind, _, payload in loader if kind == "window")
    wall, used = time.perf_counter() - start, _cpu_seconds() - cpu
    return {"workers": workers, "video_seconds": seconds, "wall_s": wall, "cpu_s": used,
            "x_real_time": seconds / wall, "per_core": seconds / max(used, 1e-9)}


@torch.no_grad()
def bench_model(model, meta: dict, lever: str, device: str, repeats: int) -> dict:
    from lavish.media.audio import get_frontend
    from lavish.media.frames import normalize_frames

    frontend = get_frontend(meta["frontend"])
    h, w = meta["frame_size"]
    audio = torch.randn(1, 20, frontend.target_frames, frontend.num_mel_bins, device=device)
    frames = torch.randint(0, 255, (1, 20, h, w, 3), dtype=torch.uint8, device=device)
    run = model.to(device)
    if lever == "compile":
        run = torch.compile(model)
    autocast = torch.autocast(device, dtype=torch.bfloat16) if lever == "bf16" else contextlib.nullcontext()

    def step():
        x = normalize_frames(frames)
        if lever == "channels_last":
            x = x.flatten(0, 1).contiguous(memory_format=torch.channels_last).unflatten(0, (1, 20))
        with autocast:
            out = run(audio, x, None)
        if device == "cuda":
            torch.cuda.synchronize()
        return out

    step()  # warm-up (and compile)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    best = float(np.median(times))
    return {"lever": lever, "window_s": best, "x_real_time": 20 / best}


@torch.no_grad()
def bench_pipeline(task, model, meta: dict, videos: list[Path], workers: int, out: Path) -> dict:
    from lavish.engine.predict import Inputs, ResultsFile, predict_many

    checkpoint = out / "model.id"
    checkpoint.write_text("benchmark model")
    results = out / f"results-{workers}.jsonl"
    results.unlink(missing_ok=True)
    start = time.perf_counter()
    summary = predict_many(task, model.cpu(), meta, Inputs([str(v) for v in videos]),
                           ResultsFile(results, checkpoint=checkpoint, resume=False), workers=workers,
                           progress=False)
    wall = time.perf_counter() - start
    assert summary.ok and summary.done == len(videos), summary
    return {"workers": workers, "video_seconds": summary.video_seconds, "wall_s": wall,
            "x_real_time": summary.video_seconds / wall}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backbone", default="lavish_vit_micro_patch8_64")
    parser.add_argument("--seconds", type=int, default=120, help="length of each video")
    parser.add_argument("--videos", type=int, default=4)
    parser.add_argument("--size", type=int, nargs=2, default=(240, 320), metavar=("H", "W"))
    parser.add_argument("--fps", type=int, default=25)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--levers", nargs="+", default=["none", "bf16", "compile", "channels_last"],
                        choices=["none", "bf16", "compile", "channels_last"])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", help="write every number to this file")
    args = parser.parse_args(argv)

    from lavish.engine.predict import _plain

    torch.set_num_threads(os.cpu_count() or 1)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        videos = [make_video(tmp / f"v{k}.mp4", args.seconds, args.fps, tuple(args.size), k)
                  for k in range(args.videos)]
        task, lavish_model, meta = build(args.backbone, "lavish")
        _, floor, _ = build(args.backbone, "none")
        decode = [bench_decode(task, meta, videos, w) for w in args.workers]
        model = [{"model": name, **bench_model(m, meta, lever, args.device, args.repeats)}
                 for lever in args.levers for name, m in (("floor", floor), ("lavish", lavish_model))]
        pipeline = [bench_pipeline(task, lavish_model, meta, videos, w, tmp) for w in args.workers]
    plain = {r["lever"]: r for r in model if r["model"] == "lavish"}["none"]
    floor_plain = {r["lever"]: r for r in model if r["model"] == "floor"}["none"]
    summary = []
    for d, p in zip(decode, pipeline):
        slower = min(d["x_real_time"], plain["x_real_time"])  # the slower stage has the lower throughput
        summary.append({"workers": p["workers"], "pipeline_over_slower": slower / p["x_real_time"]})
    report = {
        "backbone": args.backbone, "seconds": args.seconds, "videos": args.videos, "size": list(args.size),
        "fps": args.fps, "device": args.device, "cpus": os.cpu_count(), "machine": platform.processor() or
        platform.machine(), "torch": torch.__version__, "load_average": os.getloadavg()[0],
        "decode": decode, "model": model, "pipeline": pipeline, "summary": summary,
        "lavish_over_floor": plain["window_s"] / floor_plain["window_s"],
        "decode_per_core": decode[0]["per_core"],
    }
    print(f"{args.backbone}: {args.videos} videos x {args.seconds} s, {args.size[1]}x{args.size[0]} @ {args.fps} fps "
          f"(video-seconds per second; load average {report['load_average']:.1f})")
    print(f"{'stage':<28} {'workers':>7} {'x real time':>12} {'per core':>9}")
    for d in decode:
        print(f"{'decode + spectrogram':<28} {d['workers']:>7} {d['x_real_time']:>12.1f} {d['per_core']:>9.1f}")
    for r in model:
        print(f"{'model ' + r['model'] + ' (' + r['lever'] + ')':<28} {'':>7} {r['x_real_time']:>12.1f}")
    for p, s in zip(pipeline, summary):
        print(f"{'pipeline':<28} {p['workers']:>7} {p['x_real_time']:>12.1f}   "
              f"{s['pipeline_over_slower']:.2f}x the slower stage")
    print(f"LAVISH / floor (inference, fp32): {report['lavish_over_floor']:.2f}x; decode per core "
          f"{report['decode_per_core']:.1f}x real time")
    if args.json:
        from lavish.fileio import write_json

        write_json(args.json, _plain(report))
    return report


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
