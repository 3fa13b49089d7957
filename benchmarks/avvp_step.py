"""The AVVP training step benchmark (docs/avvp.md): ``benchmarks/task_step.py --task avvp`` under its first name.

    python benchmarks/avvp_step.py --backbone swinv2_base_window12_192 --clips 1 2 [--checkpointing adapters]
"""

import runpy
import sys
from pathlib import Path

if __name__ == "__main__":
    sys.argv[1:1] = [] if "--task" in sys.argv else ["--task", "avvp"]
    runpy.run_path(str(Path(__file__).with_name("task_step.py")), run_name="__main__")
