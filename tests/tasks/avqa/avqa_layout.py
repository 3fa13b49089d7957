"""A tiny synthetic MUSIC-AVQA folder and its prepared cache, shared by the AVQA tests (made once per session)."""

from __future__ import annotations

from pathlib import Path

MICRO = "lavish_vit_micro_patch8_64"


def make_avqa_layout(root: Path, num_videos: int = 6) -> Path:
    from lavish.tasks.avqa.synthetic import make_synthetic_avqa

    return make_synthetic_avqa(root, num_videos=num_videos, duration_s=8, size=32, seed=3)


def prepare_avqa_cache(layout: Path, out: Path) -> Path:
    from lavish.cli.main import main

    assert main(["prepare", "avqa", "--root", str(layout), "--out", str(out), "--backbone", MICRO,
                 "--no-progress"]) == 0
    return out
