"""Keep freed CPU memory in the process heap instead of handing it back to the kernel (glibc only).

A training step on the CPU allocates and frees the same large activation buffers every step. glibc serves
allocations above its mmap threshold (at most 32 MB by default, and a Swin-V2-B activation of 2 videos is
~47 MB) with fresh ``mmap`` regions and unmaps them on ``free``, so every step page-faults and zero-fills those
gigabytes again. Raising the mmap and trim thresholds makes glibc reuse the freed memory. Measured on the 2-core
dev machine (Swin-V2-B, 2 videos, fp32, interleaved, one run each): frozen-backbone floor 11.5 -> 10.0 s per
step, LAVISH 16.8 -> 12.0 s (the adapters allocate more, so they gained more), peak RSS 13.5 -> 14.4 GB.

``lavish`` applies it at start-up (the CLI, the benchmark and its memory subprocesses); set
``LAVISH_KEEP_FREED_MEMORY=0`` to leave glibc's defaults. No effect (and False) on other C libraries.
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


def keep_freed_memory() -> bool:
    """Raise glibc's mmap and trim thresholds for this process; True if applied."""
    if os.environ.get(ENV, "1") == "0":
        return False
    name = ctypes.util.find_library("c")
    if not name:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to tune
        return False
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
