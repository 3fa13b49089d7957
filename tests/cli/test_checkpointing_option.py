"""--checkpointing [adapters|blocks] on every train command, and its YAML form."""

from __future__ import annotations

import pytest

from lavish.cli.main import build_parser
from lavish.cli.options import apply_config_file
from lavish.models.backbone import LavishBackbone, create_backbone


@pytest.mark.parametrize("task", ["ave", "avs", "avqa"])
def test_checkpointing_option_modes(task):
    parser = build_parser()
    assert parser.parse_args(["train", task, "--checkpointing", "adapters"]).checkpointing == "adapters"
    assert parser.parse_args(["train", task, "--checkpointing"]).checkpointing == "blocks"
    assert parser.parse_args(["train", task]).checkpointing is None
    with pytest.raises(SystemExit):
        parser.parse_args(["train", task, "--checkpointing", "layers"])


def test_checkpointing_from_config_file_reaches_the_backbone(tmp_path):
    cfg = tmp_path / "run.yaml"
    cfg.write_text("checkpointing: adapters\n")
    args = build_parser().parse_args(["train", "ave", "--config", str(cfg)])
    apply_config_file(args)
    backbone = LavishBackbone(create_backbone("lavish_vit_micro_patch8_64"), checkpointing=args.checkpointing)
    assert backbone.checkpointing == "adapters"
    backbone.checkpointing = True  # what the task runners do with an old bool setting
    assert backbone.checkpointing == "blocks"
