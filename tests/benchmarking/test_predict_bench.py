"""benchmarks/predict.py end to end on tiny settings: every stage measured, the JSON and the table written."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_predict_benchmark_runs(tmp_path):
    out = tmp_path / "bench.json"
    run = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "predict.py"), "--seconds", "6", "--videos", "2",
                          "--fps", "5", "--size", "48", "64", "--workers", "0", "1", "--levers", "none", "bf16",
                          "--repeats", "1", "--json", str(out)], capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr
    report = json.loads(out.read_text())
    assert [d["workers"] for d in report["decode"]] == [0, 1] and all(d["video_seconds"] == 12 for d in
                                                                      report["decode"])
    assert {(r["model"], r["lever"]) for r in report["model"]} == {(m, lever) for m in ("floor", "lavish")
                                                                   for lever in ("none", "bf16")}
    assert all(p["video_seconds"] == 12 and p["x_real_time"] > 0 for p in report["pipeline"])
    assert report["lavish_over_floor"] > 0 and len(report["summary"]) == 2
    assert "decode + spectrogram" in run.stdout and "LAVISH / floor" in run.stdout
