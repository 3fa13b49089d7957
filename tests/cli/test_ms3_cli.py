"""MS3 end to end through the real command line: a generated dataset in AVSBench's MS3 layout (several sounding
objects, masks for all 5 frames of every split) -> `lavish prepare avs` (subset found from ms3_meta_data.csv) ->
`lavish train avs --subset ms3` (micro Swin-V2, 1 epoch) -> `lavish eval avs`."""

from __future__ import annotations

import json

from lavish.cli.main import main
from lavish.tasks.avs.layout import read_avs
from lavish.tasks.avs.synthetic import make_synthetic_avs

MICRO = "lavish_swinv2_micro_window4_64"


def test_prepare_train_eval_ms3(tmp_path, capsys):
    data = make_synthetic_avs(tmp_path / "Multi-sources", num_videos=6, num_classes=2, subset="ms3")
    cache, run = tmp_path / "cache", tmp_path / "run"
    assert main(["prepare", "avs", "--root", str(data), "--out", str(cache), "--backbone", MICRO,
                 "--no-progress"]) == 0
    assert json.loads((cache / "avs.json").read_text())["subset"] == "ms3"
    capsys.readouterr()
    assert main(["train", "avs", "--data", str(cache), "--out", str(run), "--subset", "s4"]) == 2
    assert "cache holds AVSBench ms3, not --subset s4" in capsys.readouterr().err
    assert main(["train", "avs", "--data", str(cache), "--out", str(run), "--subset", "ms3", "--backbone", MICRO,
                 "--no-pretrained", "--epochs", "1", "--batch-size", "2", "--decoder-channels", "8",
                 "--no-progress"]) == 0
    results = json.loads((run / "results.json").read_text())
    assert 0 <= results["test_miou"] <= 1 and 0 <= results["test_fscore"] <= 1
    capsys.readouterr()
    assert main(["eval", "avs", "--checkpoint", str(run / "best.safetensors"), "--data", str(cache),
                 "--split", "test", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    test_clips = [r for r in read_avs(data, "ms3") if r.split == "test"]
    assert result["subset"] == "ms3" and result["videos"] == len(test_clips)
    assert result["frames"] == 5 * len(test_clips)  # MS3: every frame is annotated and scored
    assert result["miou"] == results["test_miou"] and result["fscore"] == results["test_fscore"]
