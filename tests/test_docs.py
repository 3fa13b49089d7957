"""The README's "Use it from Python" block and docs/api.md's worked example run as written."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def _python_blocks(text: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)


def _run(code: str, cwd: Path) -> dict:
    here = os.getcwd()
    os.chdir(cwd)
    try:
        namespace: dict = {"__name__": "__doc_example__"}
        exec(compile(code, "<doc>", "exec"), namespace)  # noqa: S102  (our own documentation)
        return namespace
    finally:
        os.chdir(here)


def test_readme_python_block_runs(ave_run, tmp_path, capsys):
    from lavish.media.writer import write_video

    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Use it from Python", 1)[1].split("\n## ", 1)[0]
    (block,) = _python_blocks(section)
    (tmp_path / "runs" / "ave").mkdir(parents=True)
    shutil.copy(ave_run / "best.safetensors", tmp_path / "runs" / "ave" / "best.safetensors")
    rng = np.random.default_rng(0)
    write_video(tmp_path / "my_video.mp4", rng.integers(0, 255, (12, 48, 48, 3), dtype=np.uint8), 4,
                audio=(0.1 * rng.standard_normal(3 * 16000)).astype(np.float32))
    ns = _run(block, tmp_path)
    assert ns["audio"].shape == ns["visual"].shape == (4, 96)
    assert (tmp_path / "adapters.safetensors").stat().st_size > 0
    printed = capsys.readouterr().out.strip().splitlines()
    assert len(printed) == 3 and printed[0].startswith("0 ")  # one line per second of the 3-s video


def test_api_md_worked_example_runs(tmp_path, capsys):
    blocks = _python_blocks((ROOT / "docs" / "api.md").read_text())
    ns = _run(blocks[0], tmp_path)  # the example asserts its own results (loss falls, frozen stays frozen, ...)
    assert ns["accuracy"] > 0.5 and ns["losses"][-1] < ns["losses"][0]
    assert (tmp_path / "classifier_adapters.safetensors").is_file()
    assert "accuracy" in capsys.readouterr().out
