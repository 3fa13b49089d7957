"""Benchmark: what one training step of a clip-level task costs (time, peak memory, saved activations) on a backbone.

A step = the task's whole model (``--task``: ``avvp``, the LLP model: LAVISH backbone, AVE adapter preset, HAN head;
``classify``: LAVISH backbone, pooled features, linear head over ``--classes`` classes) on ``--clips`` 10-second clips
(10 one-second segments of both streams each), the task's own loss (:meth:`Task.model_loss`: AVVP's with its label
smoothing, classify's cross-entropy), backward and an Adam step, in float32 on the CPU (or ``--device cuda`` with
``--precision bf16-mixed``). Each setting runs in a fresh subprocess (its peak RSS is the step's memory, interpreter
and weights included), median of ``--repeats`` steps after one warm-up step. Prints a table and writes JSON
(``--out``, default bench-results/<task>_step_<backbone>.json).

    python benchmarks/task_step.py --task avvp --backbone swinv2_base_window12_192 --clips 1 2 [--checkpointing adapters]
    python benchmarks/task_step.py --task classify --classes 309 --backbone swinv2_large_window12_192 --clips 1

From the step time the table extrapolates one epoch of the task's training set (``--epoch-clips``; default LLP's
10,000 clips for AVVP, VGGSound's 183,730 for classify).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

from lavish.fileio import write_json

#: training clips of one epoch: LLP's (AVVP) and VGGSound's train split (classify)
EPOCH_CLIPS = {"avvp": 10_000, "classify": 183_730}


def child(task_name: str, backbone: str, clips: int, checkpointing: str, repeats: int, device: str, precision: str,
          classes: int) -> dict:
    import torch

    from lavish.benchmarking.allocator import keep_freed_memory
    from lavish.engine.registry import get_task
    from lavish.media.audio import get_frontend

    keep_freed_memory()  # as `lavish train` does: reuse freed activation buffers instead of page-faulting them in
    torch.manual_seed(0)
    task = get_task(task_name)
    spec = task.input_spec(backbone)
    frontend = get_frontend(spec.audio_frontend)
    settings = {"num_classes": classes} if task_name == "classify" else {}
    model = task.build_model(task.model_config_cls(backbone=backbone, checkpointing=checkpointing,
                                                   **settings)).to(device).train()
    audio = torch.randn(clips, 10, frontend.target_frames, frontend.num_mel_bins, device=device)
    frames = torch.randn(clips, 10, 3, *spec.frame_size, device=device)
    if task_name == "classify":
        labels = torch.randint(0, classes, (clips,), device=device)
    else:
        labels = (torch.rand(clips, 25, device=device) < 0.1).float()
    batch = {"labels": labels}
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=1e-4)
    autocast = torch.autocast(device_type=torch.device(device).type, dtype=torch.bfloat16,
                              enabled=precision == "bf16-mixed")
    saved: dict[int, int] = {}  # storage address -> bytes: each storage once (views share one)

    def pack(t):
        if not isinstance(t, torch.nn.Parameter):
            storage = t.untyped_storage()
            saved[storage.data_ptr()] = storage.nbytes()
        return t

    def step(measure_saved: bool = False) -> float:
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        start = time.perf_counter()
        with autocast:
            if measure_saved:
                with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
                    out = model(audio, frames)
            else:
                out = model(audio, frames)
            loss = task.model_loss(model, out, batch)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        return time.perf_counter() - start

    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    step(measure_saved=True)
    times = [step() for _ in range(repeats)]
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"task": task_name, "backbone": backbone, "clips": clips, "classes": classes if settings else None, "segments": 10 * clips, "checkpointing": checkpointing,
            "trainable": sum(p.numel() for p in params), "step_s": statistics.median(times),
            "peak_rss_mb": peak, "rss_before_step_mb": before, "saved_mb": sum(saved.values()) / 2**20,
            "threads": torch.get_num_threads(), "device": device, "precision": precision}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", default="avvp", choices=tuple(EPOCH_CLIPS))
    p.add_argument("--classes", type=int, default=309, help="classify: classes of the head (default VGGSound's)")
    p.add_argument("--epoch-clips", type=int, help="training clips of an epoch (default: see the module doc)")
    p.add_argument("--backbone", default="swinv2_base_window12_192")
    p.add_argument("--clips", type=int, nargs="+", default=[1, 2])
    p.add_argument("--checkpointing", nargs="+", default=["none"], choices=("none", "adapters", "blocks"))
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--device", default="cpu")
    p.add_argument("--precision", default="32", choices=("32", "bf16-mixed"))
    p.add_argument("--out", type=Path)
    p.add_argument("--child", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        clips, ckpt = args.child.split(":")
        print(json.dumps(child(args.task, args.backbone, int(clips), ckpt, args.repeats, args.device, args.precision,
                               args.classes)))
        return
    rows = []
    for ckpt in args.checkpointing:
        for clips in args.clips:
            cmd = [sys.executable, __file__, "--task", args.task, "--classes", str(args.classes), "--backbone", args.backbone, "--repeats", str(args.repeats),
                   "--device", args.device, "--precision", args.precision, "--child", f"{clips}:{ckpt}"]
            done = subprocess.run(cmd, capture_output=True, text=True)
            if done.returncode:
                sys.exit(f"step with {clips} clips, checkpointing {ckpt} failed: {done.stderr.strip().splitlines()[-1]}")
            rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
    epoch = args.epoch_clips or EPOCH_CLIPS[args.task]
    print(f"{args.task} training step, {args.backbone}, {args.device} {args.precision}, "
          f"{rows[0]['threads']} threads, {platform.processor() or platform.machine()}")
    print(f"{'clips':>5} {'ckpt':>9} {'step s':>8} {'s/clip':>7} {'peak RSS MB':>12} {'saved MB':>9} "
          f"{f'epoch h ({epoch} clips)':>22}")
    for r in rows:
        per_clip = r["step_s"] / r["clips"]
        print(f"{r['clips']:>5} {r['checkpointing']:>9} {r['step_s']:>8.2f} {per_clip:>7.2f} {r['peak_rss_mb']:>12.0f} "
              f"{r['saved_mb']:>9.0f} {per_clip * epoch / 3600:>22.1f}")
    out = args.out or Path("bench-results") / f"{args.task}_step_{args.backbone}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    write_json(out, {"rows": rows, "machine": platform.machine(), "python": platform.python_version(),
                     "load_average": os.getloadavg()})
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
