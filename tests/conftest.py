"""Session fixtures shared by the task and CLI tests: a tiny prepared AVE cache and one trained run.

The cache is made once per session from real mp4 files (tests/tasks/ave/ave_layout.py: 6 rows, 5 videos, splits
4/1/1) at the micro backbone's 64x64 frames; the run is a 3-epoch training on it. Tests that change files copy
them first, so every test sees the same inputs.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
#: helper modules that tests in other folders import (layout writers, backbone helpers)
for _folder in ("tasks/ave", "tasks/avqa", "models", "media"):
    sys.path.insert(0, str(TESTS / _folder))
FIXTURES = TESTS / "fixtures"

from ave_layout import make_layout  # noqa: E402

MICRO = "lavish_vit_micro_patch8_64"
#: a short, fast training on the tiny cache (full-batch steps, so the loss decreases deterministically)
TRAIN_FLAGS = ["--backbone", MICRO, "--no-pretrained", "--lr", "1e-3", "--lr-head", "1e-3", "--no-progress"]


@pytest.fixture(scope="session")
def ave_layout(tmp_path_factory) -> Path:
    return make_layout(tmp_path_factory.mktemp("ave_layout"))


@pytest.fixture(scope="session")
def ave_cache(ave_layout, tmp_path_factory) -> Path:
    """A prepared AVE cache for the micro backbone (do not modify; copy it)."""
    from lavish.cli.main import main

    out = tmp_path_factory.mktemp("ave_cache") / "cache"
    code = main(["prepare", "ave", "--root", str(ave_layout), "--out", str(out), "--backbone", MICRO,
                 "--no-progress"])
    assert code == 0
    return out


@pytest.fixture(scope="session")
def ave_run(ave_cache, tmp_path_factory) -> Path:
    """A finished 3-epoch run folder on :func:`ave_cache` (do not modify)."""
    from lavish.cli.main import main

    out = tmp_path_factory.mktemp("ave_run") / "run"
    code = main(["train", "ave", "--data", str(ave_cache), "--out", str(out), *TRAIN_FLAGS,
                 "--epochs", "3", "--batch-size", "4", "--seed", "0"])
    assert code == 0 and (out / "best.safetensors").is_file()
    return out


@pytest.fixture(scope="session")
def reference_data() -> Path:
    """tests/fixtures: ``ave/``, ``music-avqa/`` and ``llp/`` hold real annotation files (each folder's README: source)."""
    return FIXTURES
