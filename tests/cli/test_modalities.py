"""``--modalities`` for every task: vision-only (and audio-only where meaningful) builds the smaller model that
``lavish info`` counts, and a task refuses what it cannot run."""

from __future__ import annotations

import json

import pytest

from lavish.cli.main import main

SWIN_L = "swinv2_large_window12_192"


def _info(capsys, *args: str) -> dict:
    assert main(["info", *args, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


@pytest.mark.parametrize("task, modalities", [("ave", ("v", "a")), ("avs", ("v",)), ("avqa", ("v", "a"))])
def test_single_stream_models_drop_the_other_streams_adapters(capsys, task, modalities):
    both = _info(capsys, "--task", task, "--backbone", SWIN_L)
    for m in modalities:
        one = _info(capsys, "--task", task, "--backbone", SWIN_L, "--modalities", m)
        # one stream: no cross-modal fusion and no adapters for the other stream; LAVISH's two streams have the
        # same adapter widths, so a single-stream bottleneck-only model has less than half the adapters
        assert 0 < one["adapter_params"] < both["adapter_params"] / 2, (task, m)
        assert one["trainable_params"] < both["trainable_params"]


def test_avqa_vision_only_is_table_7s_model(capsys):
    info = _info(capsys, "--task", "avqa", "--modalities", "v")
    assert info["adapter"]["kind"] == "lavish" and info["task"] == "avqa"
    assert info["trainable_params"] < 21_098_988  # Table 3's audio-visual model


def test_avs_cannot_run_audio_only(capsys):
    assert main(["info", "--task", "avs", "--modalities", "a"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--modalities a is not valid for AVS" in err[0]
