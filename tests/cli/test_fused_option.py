"""--fused-adapters [compile|cuda-graphs] on every train command: parsed, its YAML form, refused where it cannot
apply, and carried to the model config as a runtime setting (not saved in adapter files)."""

from __future__ import annotations

import pytest
import torch

from lavish.cli.main import build_parser
from lavish.cli.options import apply_config_file, model_config_from_args
from lavish.errors import ConfigError
from lavish.engine.registry import TASKS


@pytest.mark.parametrize("task", ["ave", "avs", "avqa"])
def test_fused_adapters_option_modes(task):
    parser = build_parser()
    assert parser.parse_args(["train", task, "--fused-adapters"]).fused_adapters == "compile"
    assert parser.parse_args(["train", task, "--fused-adapters", "cuda-graphs"]).fused_adapters == "cuda-graphs"
    assert parser.parse_args(["train", task]).fused_adapters is None
    with pytest.raises(SystemExit):
        parser.parse_args(["train", task, "--fused-adapters", "triton"])


def test_fused_adapters_reach_the_model_config_and_stay_out_of_adapter_files(tmp_path):
    cfg = tmp_path / "run.yaml"
    cfg.write_text("fused_adapters: compile\n")
    args = build_parser().parse_args(["train", "ave", "--config", str(cfg), "--backbone", "lavish_vit_micro_patch8_64"])
    apply_config_file(args)
    config = model_config_from_args(TASKS["ave"], args)
    assert config.fused_adapters == "compile" and "fused_adapters" not in config.to_dict()


def test_fused_adapters_refused_where_they_cannot_apply():
    args = build_parser().parse_args(["train", "ave", "--adapter", "lora_attn", "--fused-adapters"])
    with pytest.raises(ConfigError, match="--fused-adapters does not apply to adapter 'lora_attn'"):
        model_config_from_args(TASKS["ave"], args)
    if not torch.cuda.is_available():
        args = build_parser().parse_args(["train", "ave", "--fused-adapters", "cuda-graphs"])
        with pytest.raises(ConfigError, match="needs a CUDA GPU") as err:
            model_config_from_args(TASKS["ave"], args)
        assert len(str(err.value).splitlines()) == 1
