"""Benchmark: data-loading time of AVE training, per DataLoader worker count (issue 8, data side).

Reads a prepared AVE cache through the training DataLoader (:mod:`lavish.benchmarking.loader`), prints a table
and writes bench-results/data_loading.json (or --out):

    python benchmarks/data_loading.py --data CACHE [--batch-size 2] [--workers 0,1,2] [--batches 30]
                                      [--step-s 32.8]

``--step-s`` (a training step's time, e.g. ``lavish2`` from ``lavish bench``) adds the data/step ratio;
``lavish bench ... --data CACHE`` measures both in one run.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from lavish.fileio import write_json
from lavish.errors import LavishError
from lavish.benchmarking.loader import DEFAULT_WORKERS, loading_table, measure_loading


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True, help="prepared AVE cache folder")
    p.add_argument("--split", default="train")
    p.add_argument("--batch-size", type=int, default=2, help="videos per batch")
    p.add_argument("--workers", default=",".join(map(str, DEFAULT_WORKERS)), help="comma-separated worker counts")
    p.add_argument("--batches", type=int, default=30, help="batches timed per worker count (first one apart)")
    p.add_argument("--device", help="cpu or cuda[:N] (default: CUDA where available: pinned memory, H2D copy time)")
    p.add_argument("--backbone", help="check the cache against this backbone's input spec first")
    p.add_argument("--threads", type=int, help="torch intra-op threads of this process (collates when workers = 0)")
    p.add_argument("--step-s", type=float, help="training step time (s) to compare the loader with")
    p.add_argument("--out", default="bench-results/data_loading.json", help="JSON file")
    args = p.parse_args()
    try:
        workers = tuple(int(w) for w in args.workers.split(",") if w)
    except ValueError:
        p.error(f"--workers {args.workers!r}: comma-separated integers")
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        result = measure_loading(args.data, split=args.split, batch_size=args.batch_size, workers=workers,
                                 batches=args.batches, device=args.device, backbone=args.backbone)
    except LavishError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.step_s:
        result["step_s"] = args.step_s
    print(loading_table(result, step_s=args.step_s))
    write_json(Path(args.out), result)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
