"""Data-loading time of AVE training: the prepared cache through the training DataLoader (issue 8, data side).

Reads one split of a prepared AVE cache (:class:`lavish.data.cache.CacheDataset`: memory-mapped ``.npy``
frames and spectrograms) with the loader AVE training builds (:func:`lavish.engine.runner.split_loader` with
the AVE task's data module's sampler and collate: seeded shuffle, persistent workers) and times, for each worker count,
how long the consumer waits for each batch when it does nothing else. That is the loader's throughput: with
``num_workers`` = 0 the wait adds to every training step; with workers > 0 the batches are made while the step
runs, so loading is hidden when the wait per batch is below the step time (and the workers have cores of their
own: on a machine with few cores they compete with the step's threads).

Per worker count: ``first_batch_s`` (from creating the iterator: includes starting the workers and the first
reads), ``s_per_batch`` (median wait over the other batches), ``batches_per_s`` and ``mb_per_s`` (decoded input
tensors: frames uint8 (B, T, H, W, 3), audio float32 (B, T, F, M), labels int64 (B, T)). A split with fewer
batches than asked is read again (next epoch, as in training; persistent workers stay up). On a CUDA device the
loader pins memory (``pin_memory``, default there) and ``h2d_s_per_batch`` is the median time of copying the
batch's tensors to the GPU (non-blocking, then synchronised); on the CPU that key is absent.

With workers = 0 this process reads and collates with its torch intra-op threads (``threads`` in the result):
on a machine whose cores are taken by other work, a multi-threaded collate can wait for a preempted thread
(measured on the 2-core dev machine: 25-28 ms per batch with 2 threads vs 1-3 ms with 1; workers use 1 thread).

Run: ``python benchmarks/data_loading.py --data CACHE`` or ``lavish bench ... --data CACHE`` (table next to the
step times).
"""

from __future__ import annotations

import os
import statistics
import time
from pathlib import Path

import torch

from lavish.data.cache import CacheDataset, check_manifest, read_manifest
from lavish.errors import ConfigError, DataError
from lavish.engine.registry import get_task, input_spec
from lavish.engine.runner import split_loader

TASK = "ave"
"""the task whose cache and data module are timed (its data module's sampler and collate, from the registry)"""

DEFAULT_WORKERS = (0, 1, 2)


def _tensor_bytes(batch: dict) -> int:
    return sum(v.nbytes for v in batch.values() if isinstance(v, torch.Tensor))


def _to_device(batch: dict, device: torch.device) -> None:
    """Copy the batch's tensors to ``device`` (non-blocking from pinned memory) and wait for the copies."""
    copies = [v.to(device, non_blocking=True) for v in batch.values() if isinstance(v, torch.Tensor)]
    torch.cuda.synchronize(device)
    del copies


def _check(cache_dir: Path, batch_size: int, workers: tuple[int, ...], batches: int, backbone: str | None) -> None:
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigError(f"batch size {batch_size!r} is not valid: it must be a positive integer")
    if not isinstance(batches, int) or batches < 2:
        raise ConfigError(f"batches={batches!r} is not valid: at least 2 (the first batch is timed apart)")
    if not workers or any(not isinstance(w, int) or w < 0 for w in workers):
        raise ConfigError(f"workers={workers!r} is not valid: one or more integers >= 0")
    if backbone is None:
        manifest = read_manifest(cache_dir)
        if manifest.get("task") != TASK:
            raise DataError(f"{cache_dir}: cache was prepared for task {manifest.get('task')!r}, not {TASK!r}")
    else:
        spec = input_spec(backbone, TASK)
        check_manifest(cache_dir, task=TASK, frame_size=spec.frame_size, frontend_name=spec.audio_frontend)


def _time_loader(ds: CacheDataset, *, batch_size: int, num_workers: int, batches: int, pin_memory: bool,
                 device: torch.device, seed: int) -> tuple[dict, dict]:
    """Timings of ``batches`` batches from a fresh training loader; also the first batch (for its shapes)."""
    dm_cls = get_task(TASK).data_module_cls
    loader = split_loader(ds, collate=dm_cls.COLLATE, sampler=dm_cls.SAMPLER, batch_size=batch_size,
                          shuffle=True, seed=seed, num_workers=num_workers, pin_memory=pin_memory)
    waits, copies, nbytes, epoch, first = [], [], 0, 0, None
    t0 = time.perf_counter()
    it = iter(loader)
    while len(waits) < batches:
        try:
            batch = next(it)
        except StopIteration:  # the split is shorter than asked: next epoch, as training does
            epoch += 1
            loader.sampler.set_epoch(epoch)
            t0 = time.perf_counter()
            it = iter(loader)
            continue
        waits.append(time.perf_counter() - t0)
        nbytes += _tensor_bytes(batch)
        first = first if first is not None else batch
        if device.type == "cuda":
            c0 = time.perf_counter()
            _to_device(batch, device)
            copies.append(time.perf_counter() - c0)
        t0 = time.perf_counter()
    del it, loader  # shuts the workers down
    per_batch = statistics.median(waits[1:])
    mb_per_batch = nbytes / len(waits) / 1e6
    out = {"batches": len(waits), "epochs": epoch + 1, "first_batch_s": waits[0], "s_per_batch": per_batch,
           "batches_per_s": 1 / per_batch if per_batch > 0 else float("inf"),
           "mb_per_s": mb_per_batch / per_batch if per_batch > 0 else float("inf"), "all_s": waits}
    if copies:
        out["h2d_s_per_batch"] = statistics.median(copies)
    return out, first


def measure_loading(cache_dir: str | Path, *, split: str = "train", batch_size: int = 2,
                    workers: tuple[int, ...] = DEFAULT_WORKERS, batches: int = 10, pin_memory: bool | None = None,
                    device: str | None = None, backbone: str | None = None, seed: int = 0) -> dict:
    """Loader time per batch of a prepared AVE cache split for each worker count (see the module docstring).

    device: "cpu", "cuda[:N]" or None (CUDA where torch sees a GPU); pin_memory: None pins on CUDA only.
    backbone: when given, the cache is checked against its input spec first (as training does).
    Returns {"cache", "split", "items", "batch_size", "frame_size", "batch_shapes" (name -> list, the collated
    training batch), "mb_per_batch", "device", "pin_memory", "cpu_count", "threads" (torch intra-op threads of this
    process, which reads and collates when workers = 0), "load_average", "workers" (str(count) -> timings:
    batches, epochs, first_batch_s, s_per_batch, batches_per_s, mb_per_s, all_s[, h2d_s_per_batch])}.
    """
    cache_dir = Path(cache_dir)
    workers = tuple(workers)
    _check(cache_dir, batch_size, workers, batches, backbone)
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {device!r}: torch sees no CUDA GPU on this machine")
    pin = dev.type == "cuda" if pin_memory is None else bool(pin_memory)
    ds = CacheDataset(cache_dir, split)
    if len(ds) == 0:
        raise DataError(f"{cache_dir}: split {split!r} has no prepared videos")
    result: dict = {"cache": str(cache_dir), "split": split, "items": len(ds), "batch_size": batch_size,
                    "frame_size": list(ds.manifest["frame_size"]), "device": dev.type, "pin_memory": pin,
                    "cpu_count": os.cpu_count(), "threads": torch.get_num_threads(),
                    "load_average": list(os.getloadavg()), "workers": {}}
    for w in workers:
        timing, first = _time_loader(ds, batch_size=batch_size, num_workers=w, batches=batches, pin_memory=pin,
                                     device=dev, seed=seed)
        result["workers"][str(w)] = timing
        result.setdefault("batch_shapes", {k: list(v.shape) for k, v in first.items() if isinstance(v, torch.Tensor)})
        result.setdefault("mb_per_batch", _tensor_bytes(first) / 1e6)
    return result


def loading_table(result: dict, step_s: float | None = None) -> str:
    """Table of a :func:`measure_loading` result; with ``step_s`` (a training step's time) the data/step ratio."""
    shapes = ", ".join(f"{k} {tuple(v)}" for k, v in result["batch_shapes"].items())
    lines = [f"data loading: {result['cache']} ({result['split']}, {result['items']} items), batch "
             f"{result['batch_size']} videos = {result['mb_per_batch']:.1f} MB ({shapes}), device "
             f"{result['device']}, pin_memory {result['pin_memory']}, {result['cpu_count']} CPUs, "
             f"{result['threads']} torch threads, load average "
             f"{result['load_average'][0]:.2f}",
             f"{'workers':>8}{'first s':>9}{'s/batch':>10}{'batch/s':>9}{'MB/s':>8}{'H2D s':>9}"
             + (f"{'data/step':>11}" if step_s else "")]
    for w, r in result["workers"].items():
        h2d = f"{r['h2d_s_per_batch']:.4f}" if "h2d_s_per_batch" in r else "-"
        line = (f"{w:>8}{r['first_batch_s']:>9.3f}{r['s_per_batch']:>10.4f}{r['batches_per_s']:>9.1f}"
                f"{r['mb_per_s']:>8.0f}{h2d:>9}")
        if step_s:
            line += f"{r['s_per_batch'] / step_s:>11.3f}"
        lines.append(line)
    if step_s:
        lines.append(f"data/step: loader wait per batch / lavish2 step ({step_s:.3f} s); with workers > 0 loading "
                     "runs during the step and is hidden when data/step < 1 (workers > 0 need cores of their own)")
    return "\n".join(lines)
