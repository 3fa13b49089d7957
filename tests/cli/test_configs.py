"""Every row config under configs/ave/ parses into the settings its name promises."""

from pathlib import Path

import pytest

from lavish.cli.main import build_parser
from lavish.cli.options import adapter_from_args
from lavish.cli.options import apply_config_file
from lavish.errors import ConfigError

CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "ave"

EXPECTED = {
    "table1_vit_b16": ("vit_base_patch16_224", "lavish", "av"),
    "table1_swinv2_l": ("swinv2_large_window12_192", "lavish", "av"),
    "table4_avish": ("swinv2_large_window12_192", "avish", "av"),
    "table6_lora": ("swinv2_large_window12_192", "lora", "av"),
    "table7_vision_only": ("swinv2_large_window12_192", "lavish", "v"),
}


def _load(path: Path, *extra: str):
    args = build_parser().parse_args(["train", "ave", "--config", str(path), *extra])
    apply_config_file(args)
    return args, adapter_from_args(args, "ave")


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("*.yaml")), ids=lambda p: p.stem)
def test_every_row_config_builds(path):
    args, adapter = _load(path)
    if path.stem in EXPECTED:
        assert (args.backbone, adapter.kind, args.modalities) == EXPECTED[path.stem]
    if path.stem.startswith("table4_") and adapter.kind == "lavish":
        assert adapter.fusion == {"bidirectional": "bi", "a2v_only": "a2v", "v2a_only": "v2a",
                                  "no_fusion": "none"}[path.stem[len("table4_"):]]
    if path.stem.startswith("fig4_latents_"):
        assert adapter.num_latents == int(path.stem.rsplit("_", 1)[1])
    if path.stem == "table8_vggish":
        assert args.extra_audio_features is True


def test_command_line_wins_over_config_file():
    args, adapter = _load(CONFIGS / "table4_a2v_only.yaml", "--fusion", "v2a", "--backbone", "vit_base_patch16_224")
    assert adapter.fusion == "v2a" and args.backbone == "vit_base_patch16_224"


def test_unknown_key_is_refused(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("backbone: vit_base_patch16_224\nlearning_rate_typo: 3\n")
    with pytest.raises(ConfigError, match="learning_rate_typo"):
        _load(bad)
