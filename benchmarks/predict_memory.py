"""Peak memory and time of ``lavish predict`` against a video's length (issue 25: a 2-hour file within 1.25x of a
1-minute file's peak RSS, time linear in the length).

    python benchmarks/predict_memory.py --checkpoint runs/demo/runs/av/best.safetensors --minutes 1 20 120

Each length is a generated video (``--size``, ``--fps``: a moving noise picture and a tone changing every second,
written second by second as a camera writes it); each ``lavish predict VIDEO --checkpoint FILE --json`` runs in its
own process, whose peak RSS (``ru_maxrss``) and wall time are reported, with the ratios to the shortest.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from predict import make_video  # noqa: E402

PEAK = ("import resource, sys; from lavish.cli.main import main; code = main(sys.argv[1:]); "
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr); sys.exit(code)")


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--minutes", type=float, nargs="+", default=[1, 20, 120])
    parser.add_argument("--size", type=int, nargs=2, default=(240, 320), metavar=("H", "W"))
    parser.add_argument("--fps", type=int, default=5)
    parser.add_argument("--json", help="write the rows to this file")
    args = parser.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for minutes in args.minutes:
            seconds = int(round(minutes * 60))
            video = make_video(Path(tmp) / f"{seconds}s.mp4", seconds, args.fps, tuple(args.size), 0)
            start = time.perf_counter()
            run = subprocess.run([sys.executable, "-c", PEAK, "predict", str(video), "--checkpoint", args.checkpoint,
                                  "--json"], capture_output=True, text=True)
            wall = time.perf_counter() - start
            if run.returncode:
                sys.exit(run.stderr)
            assert len(json.loads(run.stdout)[0]["seconds"]) == seconds
            rows.append({"minutes": minutes, "peak_rss_mb": int(run.stderr.strip().splitlines()[-1]) / 1024,
                         "wall_s": wall, "file_mb": video.stat().st_size / 2**20})
            video.unlink()
    base = rows[0]
    print(f"{'minutes':>8} {'file MB':>8} {'peak RSS MB':>12} {'x shortest':>11} {'wall s':>8} {'s per video-min':>16}")
    for r in rows:
        r["rss_ratio"] = r["peak_rss_mb"] / base["peak_rss_mb"]
        r["s_per_minute"] = r["wall_s"] / r["minutes"]
        print(f"{r['minutes']:>8g} {r['file_mb']:>8.1f} {r['peak_rss_mb']:>12.0f} {r['rss_ratio']:>11.2f} "
              f"{r['wall_s']:>8.1f} {r['s_per_minute']:>16.2f}")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1) + "\n")
    return rows


if __name__ == "__main__":
    main()
