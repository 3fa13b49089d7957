"""lavish.benchmarking.allocator: freed large buffers stay in the process (no unmap + page faults on the next step)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent("""
    import json, torch
    from lavish.benchmarking.allocator import keep_freed_memory

    def rss_mb():
        with open("/proc/self/status") as f:
            return next(int(l.split()[1]) / 1024 for l in f if l.startswith("VmRSS:"))

    applied = keep_freed_memory()
    base = rss_mb()
    x = torch.ones(64 * 2**20)  # 256 MB, every page touched
    held = rss_mb()
    del x
    freed = rss_mb()
    y = torch.ones(64 * 2**20)  # same size again: reused if kept
    print(json.dumps({"applied": applied, "held": held - base, "after_free": freed - base}))
""")


def run(env_value: str) -> dict:
    env = {**os.environ, "LAVISH_KEEP_FREED_MEMORY": env_value}
    out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, env=env, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_freed_memory_is_kept_only_when_applied():
    kept, default = run("1"), run("0")
    assert kept["applied"] is True and default["applied"] is False
    assert kept["held"] > 200 and default["held"] > 200
    # glibc's default unmaps the 256 MB buffer on free; with the raised thresholds it stays for reuse
    assert default["after_free"] < 50
    assert kept["after_free"] > 200


TRIM = textwrap.dedent("""
    import json, torch
    from lavish.benchmarking import allocator

    def rss_mb():
        with open("/proc/self/status") as f:
            return next(int(l.split()[1]) / 1024 for l in f if l.startswith("VmRSS:"))

    allocator.keep_freed_memory()
    base = rss_mb()
    x = torch.ones(64 * 2**20)
    del x
    kept = rss_mb() - base
    above = allocator.trim_if_above(fraction=1.0)  # never above all of RAM: nothing happens
    after_noop = rss_mb() - base
    trimmed = allocator.trim_if_above(fraction=0.0)  # always above: the free heap goes back
    print(json.dumps({"kept": kept, "above": above, "after_noop": after_noop, "trimmed": trimmed,
                      "after_trim": rss_mb() - base}))
""")


def test_trim_hands_the_kept_heap_back_only_above_the_threshold():
    out = subprocess.run([sys.executable, "-c", TRIM], capture_output=True, text=True, check=True,
                         env={**os.environ, "LAVISH_KEEP_FREED_MEMORY": "1"})
    r = json.loads(out.stdout.strip().splitlines()[-1])
    assert r["kept"] > 200 and r["above"] is False and r["after_noop"] > 200
    assert r["trimmed"] is True and r["after_trim"] < 50
