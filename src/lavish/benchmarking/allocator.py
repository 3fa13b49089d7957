"""Keep freed CPU memory in the process heap instead of handing it back to the kernel (glibc only).

A training step on the CPU allocates and frees the same large activation buffers every step. glibc serves
allocations above its mmap threshold (at most 32 MB by default, and a Swin-V2-B activation of 2 videos is
~47 MB) with fresh ``mmap`` regions and unmaps them on ``free``, so every step page-faults and zero-fills those
gigabytes again. Raising the mmap and trim thresholds makes glibc reuse the freed memory. Measured on the 2-core
dev machine (Swin-V2-B, 2 videos, fp32, interleaved, one run each): frozen-backbone floor 11.5 -> 10.0 s per
step, LAVISH 16.8 -> 12.0 s (the adapters allocate more, so they gained more), peak RSS 13.5 -> 14.4 GB.

``lavish`` applies it at start-up (the CLI, the benchmark and its memory subprocesses); set
``LAVISH_KEEP_FREED_MEMORY=0`` to leave glibc's defaults. No effect (and False) on other C libraries.

The price is that the process keeps its high-water mark, plus fragmentation when allocations of many sizes
alternate: one training run repeats the same shapes every step, but a process that alternates several large
models (``lavish bench`` with six Swin-V2-B variants) grew to the machine's 24 GB. :func:`trim_if_above` hands
the free heap back when the resident set passes a fraction of physical memory; the benchmark calls it between
steps.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

#: glibc mallopt parameters (malloc.h)
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
#: allocations below this come from the heap (and are reused after free); the largest value glibc accepts
MMAP_THRESHOLD = 2**30
TRIM_THRESHOLD = 2**31 - 1

ENV = "LAVISH_KEEP_FREED_MEMORY"


def _libc():
    name = ctypes.util.find_library("c")
    if not name:
        return None
    try:
        return ctypes.CDLL(name)
    except OSError:
        return None


def keep_freed_memory() -> bool:
    """Raise glibc's mmap and trim thresholds for this process; True if applied."""
    if os.environ.get(ENV, "1") == "0":
        return False
    mallopt = getattr(_libc(), "mallopt", None)
    if mallopt is None:  # not glibc (musl, macOS): nothing to tune
        return False
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))


def _meminfo_kb(key: str, path: str) -> int | None:
    try:
        with open(path) as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def trim_if_above(fraction: float = 0.6) -> bool:
    """Return the free heap to the kernel (glibc ``malloc_trim``) if this process's resident set exceeds
    ``fraction`` of physical memory; True if it trimmed."""
    rss = _meminfo_kb("VmRSS", "/proc/self/status")
    total = _meminfo_kb("MemTotal", "/proc/meminfo")
    trim = getattr(_libc(), "malloc_trim", None)
    if rss is None or total is None or trim is None or rss <= fraction * total:
        return False
    trim(0)
    return True
