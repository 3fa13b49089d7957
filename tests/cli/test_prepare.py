from __future__ import annotations

import numpy as np
import pytest

from lavish.cli.main import main
from lavish.data.cache import AveCacheDataset, check_manifest
from lavish.media.writer import write_video

MICRO = "lavish_vit_micro_patch8_64"


def _layout(root, videos=("v1", "v2"), *, bad=()):
    (root / "AVE").mkdir(parents=True)
    lines = [f"Bark&{v}&good&{i}&{i + 5}" for i, v in enumerate(videos)]
    (root / "Annotations.txt").write_text("\n".join(lines))
    header = "Category&VideoID&Quality&StartTime&EndTime\n"
    (root / "trainSet.txt").write_text(header + lines[0] + "\n")
    (root / "valSet.txt").write_text(header)
    (root / "testSet.txt").write_text(header + "\n".join(lines[1:]) + "\n")
    rng = np.random.default_rng(0)
    for v in videos:
        if v in bad:
            (root / "AVE" / f"{v}.mp4").write_text("not a video")
            continue
        frames = rng.integers(0, 255, size=(20, 32, 32, 3), dtype=np.uint8)
        audio = (0.1 * rng.standard_normal(16000 * 10)).astype(np.float32)
        write_video(root / "AVE" / f"{v}.mp4", frames, 2, audio=audio)
    return root


def test_prepare_command_builds_a_cache_for_the_backbone(tmp_path, capsys):
    root = _layout(tmp_path / "ave")
    out = tmp_path / "cache"
    code = main(["prepare", "ave", "--root", str(root), "--out", str(out), "--backbone", MICRO, "--no-progress"])
    text = capsys.readouterr().out
    assert code == 0
    assert "prepared 2, skipped 0 (already done), failed 0 of 2 videos" in text
    assert "frames 64x64" in text and "'micro'" in text
    check_manifest(out, task="ave", frame_size=(64, 64), frontend_name="micro")
    assert AveCacheDataset(out, "test")[0]["frames"].shape == (10, 64, 64, 3)
    # rerun: nothing to do; another backbone into the same folder: refused with exit 2 and one line
    assert main(["prepare", "ave", "--root", str(root), "--out", str(out), "--backbone", MICRO, "--no-progress"]) == 0
    assert "skipped 2" in capsys.readouterr().out
    code = main(["prepare", "ave", "--root", str(root), "--out", str(out), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: ") and err.count("\n") == 1
    assert "other settings" in err and "frame_size" in err


def test_prepare_command_exit_codes_for_bad_input(tmp_path, capsys):
    root = _layout(tmp_path / "ave", videos=("v1",), bad=("v1",))
    code = main(["prepare", "ave", "--root", str(root), "--out", str(tmp_path / "c"), "--backbone", MICRO,
                 "--no-progress", "--workers", "2"])
    assert code == 1  # nothing could be prepared
    assert "failed 1 of 1" in capsys.readouterr().out
    assert main(["prepare", "ave", "--root", str(tmp_path / "nowhere"), "--out", str(tmp_path / "d"),
                 "--backbone", MICRO]) == 2
    assert "not a directory" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["prepare", "ave", "--out", str(tmp_path / "d")])
