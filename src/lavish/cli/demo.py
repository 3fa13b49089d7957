"""``lavish demo [TASK]``: a task end to end on a synthetic dataset in its official layout, in minutes on a CPU.

AVE (the default): 1. writes a small dataset in the official AVE layout (real mp4 files with sound; an event second
needs the class's object on screen AND its sound; background seconds hold the object without its sound, the sound
without the object, or neither), 2. prepares it, 3. trains the micro ViT backbone three times, audio-visual LAVISH,
vision-only and audio-only (Table 7's comparison), 4. evaluates each on the test split and writes a table and a bar
plot, 5. runs ``predict`` on one test clip and plots its timeline. ``lavish demo avs``, ``lavish demo avqa`` and
``lavish demo avvp`` do the same for their tasks (AVVP: events only heard, only seen or both; audio-visual LAVISH
against a vision-only baseline).

The micro backbones have no pretrained weights, so the demo uses larger learning rates than the paper's recipe;
a real run uses a pretrained backbone and the real dataset (see the README). The demo ends with the ``lavish serve``
command that shows its model in a browser.
"""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path

from lavish.engine.registry import TASKS


def _defaults(key: str) -> str:
    """Each task's demo default of ``key`` ("videos", "epochs"), as help text."""
    return ", ".join(f"{task.name} {task.demo_defaults[key]}" for task in TASKS.values())


def register(sub) -> None:
    p = sub.add_parser("demo", help="a task end to end on synthetic data: generate, prepare, train, evaluate, predict",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("task", nargs="?", default="ave", choices=list(TASKS), help="which task to demo (default: %(default)s)")
    p.add_argument("--out", default="lavish-demo", help="folder for everything the demo writes (default: %(default)s)")
    p.add_argument("--videos", type=int, help="synthetic videos (default: the task's: " + _defaults("videos") + ")")
    p.add_argument("--classes", type=int, default=4, help="event classes (default: %(default)s)")
    p.add_argument("--epochs", type=int, help="epochs per run (default: the task's: " + _defaults("epochs") + ")")
    p.add_argument("--backbone", help="backbone (default: the task's micro backbone)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=2, help="processes to generate and prepare data")
    p.add_argument("--no-progress", dest="progress", action="store_false")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from lavish.api import demo

    code = demo(args.task, args.out, videos=args.videos, classes=args.classes, epochs=args.epochs,
                backbone=args.backbone, seed=args.seed, workers=args.workers, progress=args.progress)["exit_code"]
    if code == 0:
        line = serve_command(Path(args.out), TASKS[args.task])
        if line:
            print(f"see it in a browser: {line}")
    return code


def serve_command(out: Path, task) -> str | None:
    """The ``lavish serve`` command for the model a demo of ``task`` trained in ``out`` (its audio-visual run,
    ``<out>/runs/{<task>,av}/best.safetensors``, the file's task checked), with the demo's clips (the task's
    ``demo_clips`` folder) as examples; None when there is no such file."""
    from lavish.api import read_adapter_file
    from lavish.errors import LavishError

    for folder in (task.name, "av"):
        adapter = out / "runs" / folder / "best.safetensors"
        try:
            if adapter.is_file() and read_adapter_file(adapter)[1].get("task") == task.name:
                break
        except LavishError:
            continue
    else:
        return None
    words = ["lavish", "serve", "--checkpoint", str(adapter)]
    if task.demo_clips and (out / task.demo_clips).is_dir():
        words += ["--examples", str(out / task.demo_clips)]
    return shlex.join(words)
