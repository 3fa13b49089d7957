"""Command-line options (cli/options.py): an option that the chosen adapter, task, modalities or fusion does not use
is refused in one line naming it (exit 2, nothing written); for EVERY option of `lavish train TASK` the command line
wins over the --config YAML, which wins over the defaults; a YAML value of the wrong type is refused in one line
naming the file and the key.

The precedence cases are generated from the real parsers (``build_parser()``): a new option is covered without an
edit here, with a YAML value and a command-line value derived from its action (type, choices, const).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from lavish.cli.main import build_parser, main
from lavish.cli.options import apply_config_file, model_config_from_args, task_option_values
from lavish.engine.registry import TASKS

MICRO = {"ave": "lavish_vit_micro_patch8_64", "avqa": "lavish_vit_micro_patch8_64",
         "avs": "lavish_swinv2_micro_window4_64"}
CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def refused(capsys, argv: list[str], *names: str) -> str:
    """Run the CLI; assert exit 2 and exactly one line on stderr, an ``error:`` naming each of ``names``."""
    code = main(argv)
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert code == 2, captured.err
    assert len(lines) == 1 and lines[0].startswith("error: "), captured.err
    for name in names:
        assert name in lines[0], (name, lines[0])
    return lines[0]


# ------------------------------------------------------------------------------------- options that do not apply
NOT_USED = [
    ("ave", "--adapter lora --latents 64", "--latents"),
    ("ave", "--adapter lora_attn --reduction 2", "--reduction"),
    ("ave", "--adapter compacter --groups 4", "--groups"),
    ("ave", "--adapter bitfit --fusion a2v", "--fusion"),
    ("ave", "--adapter adapter --formulation paper", "--formulation"),
    ("ave", "--adapter none --latents 2", "--latents"),
    ("ave", "--preset avs --adapter bitfit", "--preset avs"),
    ("ave", "--checkpointing adapters --adapter lora_attn", "--checkpointing adapters"),
    ("ave", "--adapter-set rank=4", "rank"),  # a LoRA setting given to LAVISH
    ("ave", "--fusion none --latents 4", "--latents"),  # no stream receives latent tokens
    ("ave", "--fusion none --formulation paper", "--formulation"),
    ("ave", "--modalities v --fusion a2v", "--fusion"),  # one stream: nothing crosses
    ("ave", "--modalities a --latents 4", "--latents"),
    ("ave", "--adapter avish --modalities v --formulation code", "--formulation"),
    ("ave", "--no-pretrained --backbone-weights w.safetensors", "--no-pretrained"),
    ("avs", "--modalities a", "--modalities a"),  # segmentation needs the frames
    ("avs", "--modalities v --fusion bi", "--fusion"),
    ("avqa", "--modalities v --latents 16", "--latents"),
    ("avqa", "--lr-rule constant --base-batch-size 4", "base-batch-size"),  # constant: the lr ignores the batch
]


@pytest.mark.parametrize(("task", "options", "name"), NOT_USED, ids=[f"{t} {o}" for t, o, _ in NOT_USED])
def test_train_refuses_an_option_that_does_not_apply(task, options, name, capsys, tmp_path):
    out = tmp_path / "run"
    refused(capsys, ["train", task, "--data", str(tmp_path / "no-cache"), "--out", str(out), *options.split()], name)
    assert not out.exists()  # refused before anything is written


def test_an_option_the_yaml_makes_inapplicable_is_refused_too(capsys, tmp_path):
    config = tmp_path / "lora.yaml"
    config.write_text("adapter: lora\n")
    refused(capsys, ["train", "ave", "--config", str(config), "--latents", "4", "--data", str(tmp_path / "c"),
                     "--out", str(tmp_path / "run")], "--latents", "'lora'")
    # info reads the row file the same way: --fusion on top of the vision-only row is refused
    refused(capsys, ["info", "--task", "ave", "--config", str(CONFIGS / "ave" / "table7_vision_only.yaml"),
                     "--fusion", "a2v"], "--fusion", "--modalities v")


@pytest.mark.parametrize(("options", "name"), [("--adapter lora --latents 64", "--latents"),
                                               ("--task avs --modalities a", "--modalities a"),
                                               ("--fusion none --latents 2", "--latents")])
def test_info_refuses_the_same(options, name, capsys):
    refused(capsys, ["info", *options.split()], name)


@pytest.fixture(scope="module")
def adapter_files(tmp_path_factory):
    """Untrained adapter files of an AVE and an AVS micro model (made as training writes them) and a 2-s video."""
    import torch

    from lavish.media.writer import write_video
    from lavish.tasks.ave.model import AveModelConfig
    from lavish.tasks.avs.model import AvsModelConfig
    from lavish.engine.registry import input_spec
    from lavish.models.weights import save_adapter

    root = tmp_path_factory.mktemp("predict_options")
    files = {}
    for task, config in (("ave", AveModelConfig(backbone=MICRO["ave"], num_classes=3)),
                         ("avs", AvsModelConfig(backbone=MICRO["avs"], mask_size=(64, 64), decoder_channels=8))):
        torch.manual_seed(0)
        model = TASKS[task].build_model(config)
        spec = input_spec(config.backbone, task)
        meta = {"task": task, "pretrained": False, "backbone_weights": None, "frontend": spec.audio_frontend,
                "frame_size": list(spec.frame_size), "num_segments": 10 if task == "ave" else 5,
                **({"classes": ["Bark", "Cat", "background"]} if task == "ave" else {"subset": "s4"})}
        files[task] = save_adapter(model, root / f"{task}.safetensors", config.to_dict(), meta)
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 255, size=(8, 48, 48, 3), dtype=np.uint8)
    sound = (0.3 * np.sin(2 * np.pi * 440 * np.arange(32000) / 16000)).astype(np.float32)
    files["video"] = write_video(root / "clip.mp4", frames, 4, audio=sound)
    files["extra"] = root / "extra.npy"
    np.save(files["extra"], np.zeros((2, 128), np.float32))
    return files


@pytest.mark.parametrize(("task", "options", "name"), [
    ("avs", "--plot {tmp}/t.png --out {tmp}/masks", "--plot"),
    ("ave", "--out {tmp}/masks", "--out"),
    ("ave", "--extra-features {extra}", "--extra-features"),  # the model was trained without extra features
    ("avs", "--out {tmp}/masks --extra-features {extra}", "--extra-features"),
])
def test_predict_refuses_an_option_the_models_task_does_not_use(task, options, name, adapter_files, capsys,
                                                                   tmp_path):
    argv = options.format(tmp=tmp_path, extra=adapter_files["extra"]).split()
    refused(capsys, ["predict", str(adapter_files["video"]), "--checkpoint", str(adapter_files[task]), *argv], name)
    assert list(tmp_path.iterdir()) == []  # no plot, no mask folder


def test_predict_runs_with_the_options_that_apply(adapter_files, capsys, tmp_path):
    """The refusals above are about the options: the same files predict with their own task's options."""
    assert main(["predict", str(adapter_files["video"]), "--checkpoint", str(adapter_files["ave"]), "--json",
                 "--plot", str(tmp_path / "t.png")]) == 0
    assert len(json.loads(capsys.readouterr().out)[0]["seconds"]) == 2 and (tmp_path / "t.png").stat().st_size
    assert main(["predict", str(adapter_files["video"]), "--checkpoint", str(adapter_files["avs"]), "--json",
                 "--out", str(tmp_path / "masks")]) == 0
    assert len(json.loads(capsys.readouterr().out)[0]["masks"]) == 2


# -------------------------------------------------------------------------- command line > YAML > defaults
def train_parsers() -> dict[str, argparse.ArgumentParser]:
    """task -> the parser of ``lavish train TASK``, as ``lavish`` builds it."""
    def sub(parser: argparse.ArgumentParser) -> dict:
        return next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices

    return sub(sub(build_parser())["train"])


NOT_A_SETTING = {"help", "config"}


def yaml_and_cli(action: argparse.Action) -> tuple[tuple[str, object, object], list[str], object]:
    """((YAML key, YAML value, the value it sets), command-line arguments, the value they set), the two values
    different wherever the option can express two values."""
    flag = action.option_strings[-1]
    key = flag.lstrip("-").replace("-", "_")
    if isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction)):
        # a flag says one value on the command line; the YAML says the other through the option's dest, where the
        # dest is not the flag's name (pretrained: true against --no-pretrained), else the flag's own value
        if action.dest != key:
            return (action.dest, not action.const, not action.const), [flag], action.const
        return (key, True, action.const), [flag], action.const
    if isinstance(action, argparse._AppendAction):
        return (key, ["rank=8"], ["rank=8"]), [flag, "rank=4"], ["rank=4"]
    if action.choices is not None:
        first, last = list(action.choices)[0], list(action.choices)[-1]
        return (key, first, first), [flag, str(last)], last
    if action.type is int:
        return (key, 3, 3), [flag, "5"], 5
    if action.type is float:
        return (key, 0.5, 0.5), [flag, "0.25"], 0.25
    assert action.type in (None, str), f"{flag}: no value rule for type {action.type}"
    return (key, "from-yaml", "from-yaml"), [flag, "from-cli"], "from-cli"


SETTINGS = [(task, action) for task, parser in train_parsers().items() for action in parser._actions
            if action.option_strings and action.dest not in NOT_A_SETTING]


def parsed(task: str, config: Path | None, cli: list[str]) -> argparse.Namespace:
    args = build_parser().parse_args(["train", task, *(["--config", str(config)] if config else []), *cli])
    apply_config_file(args)
    return args


def test_every_option_defaults_to_none_so_that_not_given_is_known():
    assert len(SETTINGS) >= 3 * 25
    for task, action in SETTINGS:
        assert action.default is None, (task, action.option_strings)


@pytest.mark.parametrize(("task", "action"), SETTINGS, ids=[f"{t} {a.option_strings[-1]}" for t, a in SETTINGS])
def test_command_line_beats_yaml_beats_default(task, action, tmp_path):
    (key, value, from_yaml), cli, from_cli = yaml_and_cli(action)
    for spelling in {key, key.replace("_", "-")}:
        config = tmp_path / "row.yaml"
        config.write_text(yaml.safe_dump({spelling: value}))
        assert getattr(parsed(task, config, cli), action.dest) == from_cli, spelling
        assert getattr(parsed(task, config, []), action.dest) == from_yaml, spelling
    assert getattr(parsed(task, None, []), action.dest) is None
    config.write_text("")  # an empty file changes nothing
    assert getattr(parsed(task, config, []), action.dest) is None


def test_the_derived_values_differ_where_the_option_can_say_two_things():
    """The precedence test is only as good as its two values: both are set, and they differ except for a store_true
    flag (``resume: true`` can only say what ``--resume`` says; the command line has no --no-resume)."""
    one_valued = set()
    for task, action in SETTINGS:
        (_, _, from_yaml), _, from_cli = yaml_and_cli(action)
        assert from_yaml is not None and from_cli is not None
        if from_yaml == from_cli:
            assert isinstance(action, argparse._StoreTrueAction), action.option_strings
            one_valued.add(action.option_strings[-1])
    assert one_valued >= {"--resume", "--extra-audio-features"}
    falses = {(t, a.option_strings[-1]) for t, a in SETTINGS if isinstance(a, argparse._StoreFalseAction)}
    assert falses >= {(t, "--no-pretrained") for t in TASKS} | {("avqa", "--frozen-norms")}


@pytest.mark.parametrize(("text", "dest", "value"), [
    ("no_pretrained: true", "pretrained", False),
    ("no-pretrained: false", "pretrained", None),  # false: not given
    ("checkpointing: true", "checkpointing", "blocks"),  # true: the bare flag
    ("checkpointing: false", "checkpointing", None),
    ("precision: 32", "precision", "32"),
    ("adapter_set: rank=2", "adapter_set", ["rank=2"]),
])
def test_yaml_spellings_of_flags(text, dest, value, tmp_path):
    config = tmp_path / "row.yaml"
    config.write_text(text + "\n")
    assert getattr(parsed("ave", config, []), dest) == value


def test_store_false_flags_win_over_yaml_into_the_model_config(tmp_path):
    """The old bug: ``train_norms: true`` / ``pretrained: true`` in a file overrode --frozen-norms / --no-pretrained."""
    config = tmp_path / "row.yaml"
    config.write_text("train_norms: true\npretrained: true\nbackbone: lavish_vit_micro_patch8_64\n")
    task = TASKS["avqa"]
    args = parsed("avqa", config, ["--frozen-norms", "--no-pretrained"])
    model = model_config_from_args(task, args, task_option_values(task, args))
    assert model.train_norms is False and args.pretrained is False
    args = parsed("avqa", config, [])
    assert model_config_from_args(task, args, task_option_values(task, args)).train_norms is True


def test_info_takes_the_row_file_and_the_command_line_wins(capsys):
    def trainable(*argv: str) -> int:
        assert main(["info", "--backbone", MICRO["ave"], *argv, "--json"]) == 0
        return json.loads(capsys.readouterr().out)["trainable_params"]

    vision_only = CONFIGS / "ave" / "table7_vision_only.yaml"
    both = trainable()
    assert trainable("--config", str(vision_only)) == trainable("--modalities", "v") < both
    assert trainable("--config", str(vision_only), "--modalities", "av") == both


# ------------------------------------------------------------------------------------- YAML values of a wrong type
@pytest.mark.parametrize(("text", "key"), [
    ("backbone: 3", "backbone"),
    ('epochs: "ten"', "epochs"),
    ("lr: [1]", "lr"),
    ("precision: 64", "precision"),
    ("resume: yes-please", "resume"),
    ('no_pretrained: "yes"', "no_pretrained"),
    ("extra_audio_features: 1", "extra_audio_features"),
    ("adapter_set: {rank: 4}", "adapter_set"),
    ("modalities: x", "modalities"),
    ("epochs: true", "epochs"),
    ("checkpointing: everything", "checkpointing"),
])
def test_yaml_value_of_a_wrong_type_is_refused_naming_file_and_key(text, key, capsys, tmp_path):
    config = tmp_path / "row.yaml"
    config.write_text(text + "\n")
    out = tmp_path / "run"
    line = refused(capsys, ["train", "ave", "--config", str(config), "--data", str(tmp_path / "c"), "--out", str(out)],
                   str(config), f": {key}:")
    assert not out.exists(), line


@pytest.mark.parametrize(("task", "text", "flag", "dest"), [
    ("ave", "pretrained: false", "--pretrained", "pretrained"),
    ("avqa", "train_norms: false", "--train-norms", "train_norms"),
    ("avvp", "label_smoothing: false", "--label-smoothing", "label_smoothing"),
])
def test_a_false_setting_in_yaml_can_be_turned_back_on_from_the_command_line(task, text, flag, dest, tmp_path):
    """Every setting a YAML can turn off has a flag that turns it on (the command line wins both ways), and the
    YAML key keeps meaning the setting's value now that a flag has the same name."""
    config = tmp_path / "row.yaml"
    config.write_text(text + "\n")
    assert getattr(parsed(task, config, []), dest) is False
    assert getattr(parsed(task, config, [flag]), dest) is True
    config.write_text(text.replace("false", "true") + "\n")
    assert getattr(parsed(task, config, []), dest) is True
    negation = {"pretrained": "--no-pretrained", "train_norms": "--frozen-norms",
                "label_smoothing": "--no-label-smoothing"}[dest]
    assert getattr(parsed(task, config, [negation]), dest) is False


def test_the_twin_flags_reach_the_model(tmp_path):
    config = tmp_path / "row.yaml"
    config.write_text("train_norms: false\nbackbone: lavish_vit_micro_patch8_64\n")
    task = TASKS["avqa"]
    args = parsed("avqa", config, ["--train-norms"])
    assert model_config_from_args(task, args, task_option_values(task, args)).train_norms is True
    config.write_text("label_smoothing: false\nbackbone: lavish_vit_micro_patch8_64\n")
    task = TASKS["avvp"]
    args = parsed("avvp", config, ["--label-smoothing"])
    assert model_config_from_args(task, args, task_option_values(task, args)).label_smoothing is True
    args = parsed("avvp", config, [])
    assert model_config_from_args(task, args, task_option_values(task, args)).label_smoothing is False
