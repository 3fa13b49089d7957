"""AVQA command line: info reproduces Table 3's trainable count, eval's per-type arithmetic on the real
avqa-test.json, eval --json / ask on a real adapter file, bad inputs in one line (exit 2)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tasks" / "avqa"))

from avqa_layout import MICRO, make_avqa_layout, prepare_avqa_cache  # noqa: E402
from lavish.cli.main import main  # noqa: E402
from lavish.tasks.avqa import layout as avqa  # noqa: E402
from lavish.tasks.avqa.metrics import answer_prior, avqa_scores, format_table, prior_predictions  # noqa: E402

MUSIC_AVQA = Path(__file__).resolve().parents[1] / "fixtures" / "music-avqa"  # real files, README there


def test_info_avqa_gives_21_09m_trainable(capsys):
    assert main(["info", "--task", "avqa", "--preset", "avqa", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["trainable_params"] == 21_098_988 and abs(info["trainable_params"] / 21.09e6 - 1) < 0.02
    assert info["adapter_params"] == 8_835_264
    assert info["total_params_with_pretrained_head"] / 1e6 == pytest.approx(249.8, abs=0.05)


def test_eval_arithmetic_on_the_official_test_file():
    records = avqa.read_avqa_json(MUSIC_AVQA / "avqa-test.json")
    val = avqa.read_avqa_json(MUSIC_AVQA / "avqa-val.json")
    predictions = prior_predictions(val, records)
    scores = avqa_scores(records, predictions)
    assert scores["counts"]["audio"] == 1623 and scores["counts"]["visual"] == 2427
    assert scores["counts"]["audio_visual"] == 5135 and scores["questions"] == scores["counts"]["overall"] == 9185
    assert (scores["counts"]["audio_counting"], scores["counts"]["audio_visual_temporal"]) == (1022, 824)
    prior = answer_prior(val)
    for key, (major, minor) in {"audio_counting": ("Audio", "Counting"),
                                "visual_location": ("Visual", "Location")}.items():
        subset = [r for r in records if (r.major, r.minor) == (major, minor)]
        assert scores[key] == sum(r.answer == prior[(major, minor)] for r in subset) / len(subset)
    hits = {g: sum(p == r.answer for p, r in zip(predictions, records) if r.major == g)
            for g in ("Audio", "Visual", "Audio-Visual")}
    assert scores["audio"] == hits["Audio"] / 1623  # micro average over the sub-types
    assert scores["audio_visual"] == hits["Audio-Visual"] / 5135
    assert scores["overall"] == sum(hits.values()) / 9185
    assert 0.3 < scores["overall"] < 0.7  # the answer prior is a strong baseline on MUSIC-AVQA (yes/no, two)
    table = format_table(scores, scores)
    assert len(table) == 1 + 13 and "9185" in table[-1]


@pytest.fixture(scope="module")
def adapter_file(tmp_path_factory):
    """A prepared tiny cache and an (untrained) adapter file whose vocabularies come from its training json."""
    from lavish.models.adapters import PRESETS
    from lavish.tasks.avqa.model import AvqaModel, AvqaModelConfig
    from lavish.models.weights import save_adapter
    from lavish.tasks.avqa.dataset import Vocabularies, split_records

    root = tmp_path_factory.mktemp("avqa_cli")
    cache = prepare_avqa_cache(make_avqa_layout(root / "data"), root / "cache")
    vocab = Vocabularies.from_records(split_records(cache, "train"))
    config = AvqaModelConfig(backbone=MICRO, adapter=PRESETS["avqa_paper"], question_vocab=len(vocab.question),
                             num_answers=len(vocab.answer))
    torch.manual_seed(0)
    model = AvqaModel(config)
    meta = {"task": "avqa", **vocab.to_meta(), "pretrained": False, "backbone_weights": None,
            "frontend": "micro", "frame_size": [64, 64], "num_segments": 10}
    path = save_adapter(model, root / "best.safetensors", config.to_dict(), meta)
    return path, cache, root / "data"


def test_eval_json_and_ask(adapter_file, capsys, tmp_path):
    path, cache, data = adapter_file
    assert main(["eval", "avqa", "--checkpoint", str(path), "--data", str(cache), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    for key in avqa.category_keys():
        assert key in result and key in result["counts"]
    video = sorted((data / "videos").glob("*.mp4"))[0]
    png = tmp_path / "att.png"
    assert main(["ask", str(video), "How many banjos are sounding?", "--checkpoint", str(path), "--json",
                 "--plot", str(png)]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["unknown_words"] == ["banjos"] and png.stat().st_size > 1000
    probs = [a["probability"] for a in res["answers"]]
    assert probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1.0001
    assert len(res["segments"]) == 10 and res["segments"][0]["region"]["grid"] == [8, 8]
    assert np.isclose(sum(s["visual_weight"] for s in res["segments"]), 1, atol=1e-3)


@pytest.mark.parametrize("question, message", [
    ("   ", "empty question"),
    ("Where is the <Object>?", "template placeholder"),
])
def test_ask_bad_questions_one_line(adapter_file, capsys, question, message):
    path, _, data = adapter_file
    video = sorted((data / "videos").glob("*.mp4"))[0]
    assert main(["ask", str(video), question, "--checkpoint", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1


def test_missing_video_and_predict_redirect(adapter_file, capsys, tmp_path):
    path, _, _ = adapter_file
    assert main(["ask", str(tmp_path / "nope.mp4"), "How many?", "--checkpoint", str(path)]) == 2
    assert "nope.mp4" in capsys.readouterr().err
    assert main(["predict", str(tmp_path / "x.mp4"), "--checkpoint", str(path)]) == 2
    assert "lavish ask" in capsys.readouterr().err
