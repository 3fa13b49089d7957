"""The scaffold of ``lavish demo TASK``: every task's demo is the same five steps on its own synthetic data.

[1] write a synthetic dataset in the task's official layout (unless there), [2] prepare it into a cache with the
task's own ``prepare`` (unless done), [3] train one or more runs of the micro backbone (each unless finished),
[4] evaluate them on the test split and print the task's table, [5] run the task's prediction on one test video.
A task's :meth:`~lavish.engine.task.Task.demo` supplies only what differs (the generator, the runs, the table, the
prediction) through :class:`Demo`; rerunning a demo into the same folder resumes it step by step.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from lavish.errors import ConfigError

if TYPE_CHECKING:  # pragma: no cover
    from lavish.engine.task import DemoOptions, Task


class Demo:
    """One demo run into ``options.out``: the folders, the step counter, the shared steps."""

    def __init__(self, task: "Task", options: "DemoOptions", *, steps: int, min_videos: int = 0,
                 why: str = "", data: str = "data", cache: str = "cache") -> None:
        if options.videos < min_videos:
            raise ConfigError(f"videos={options.videos} is not valid: {why}")
        self.task, self.options, self.steps = task, options, steps
        self.start = time.monotonic()
        self.backbone = options.backbone or task.demo_backbone
        self.out = Path(options.out)
        self.data, self.cache = self.out / data, self.out / cache

    def step(self, k: int) -> str:
        return f"[{k}/{self.steps}]"

    def dataset(self, title: str, marker: str, make: Callable[[Path], Any]) -> None:
        """Step 1: ``make(data folder)`` unless ``marker`` (a file of the layout) is there."""
        print(f"{self.step(1)} {title} -> {self.data}")
        if not (self.data / marker).exists():
            make(self.data)

    def prepare(self) -> None:
        """Step 2: the task's ``prepare`` of the synthetic folder into the cache, unless done."""
        self.task.demo_cache(self.data, self.cache, self.backbone, self.options, f"2/{self.steps}")

    def train(self, title: str, run_dir: Path, model_config: Any, train_config: Any) -> Path:
        """Step 3: one run (unless finished, i.e. its results.json exists); returns its adapter file."""
        from lavish.engine.train import train

        print(f"{self.step(3)} train {title} -> {run_dir}")
        if not (run_dir / "results.json").exists():
            train(self.task, self.cache, run_dir, model_config, train_config, pretrained=False,
                  progress=self.options.progress, test=False)
        return run_dir / "best.safetensors"

    def evaluate(self, adapter: Path) -> dict:
        """The task's evaluation of ``adapter`` on the test split of the cache."""
        from lavish.engine.train import evaluate

        return evaluate(adapter, self.cache, split="test", progress=False)

    def load(self, adapter: Path):
        """(task, model, meta) of ``adapter``, for the prediction step."""
        from lavish.engine.train import load

        return load(adapter)

    def finish(self, where: str) -> int:
        """The last lines: where the outputs are, the time taken, how to run the task on the real dataset."""
        print(f"{where}; {time.monotonic() - self.start:.0f} s in all")
        print(self.task.real_run)
        return 0
