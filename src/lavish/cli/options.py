"""Command-line options shared by the sub-commands, a task's own options, ``--config`` files, and the typed configs
they turn into.

Precedence: the command line, then the YAML file of ``--config`` (keys = the long option names, with ``_`` or
``-``), then the defaults (the paper's, in the config dataclasses). Every option's argparse default is None, so "not
given" is known. A YAML value of the wrong type or outside the option's choices is refused in one line naming the
file and key. An option that the chosen adapter, task or modalities does not use is refused, never dropped.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path
from typing import Any

import yaml

from lavish.errors import ConfigError
from lavish.engine.runner import TrainConfig
from lavish.models.adapters import ADAPTERS, PRESETS, AdapterConfig, adapter_config, preset_settings
from lavish.models.task_config import DEFAULT_BACKBONE, RuntimeConfig, TaskModelConfig

def option_flag(f: dataclasses.Field) -> str:
    """The command-line flag of a config field: its metadata's ``flag``, else ``--<name with dashes>``."""
    return f.metadata.get("flag") or "--" + f.name.replace("_", "-")


def adapter_options() -> dict[str, dataclasses.Field]:
    """dest -> adapter config field, for every field of an adapter kind that names its flag (``--latents`` sets
    ``num_latents``): the adapter options of ``lavish train`` (the first kind that has a field gives its help)."""
    found: dict[str, dataclasses.Field] = {}
    for cls in ADAPTERS.values():
        for f in dataclasses.fields(cls):
            if "flag" in f.metadata:
                found.setdefault(option_flag(f).lstrip("-").replace("-", "_"), f)
    return found


def config_options(cls: type) -> list[dataclasses.Field]:
    """The fields of the config dataclass ``cls`` that are command-line options (metadata ``help``)."""
    return [f for f in dataclasses.fields(cls) if "help" in f.metadata]


def add_field_option(group, f: dataclasses.Field, *, default: Any = None, dest: str | None = None,
                     **text: str) -> None:
    """One argparse option made from config field ``f``: flag, type, choices, bare-flag constant and help from the
    field; ``default`` is shown in the help (the argparse default stays None: "not given"); ``text`` fills the
    help's ``{placeholders}`` (e.g. the task's ``unit``)."""
    meta = f.metadata
    kwargs: dict[str, Any] = {"dest": dest or f.name}
    if "const" in meta:
        kwargs.update(nargs="?", const=meta["const"])
    else:
        kind = {"int": int, "float": float, int: int, float: float}.get(f.type)
        if kind is not None:
            kwargs["type"] = kind
    if "choices" in meta:
        kwargs["choices"] = list(meta["choices"])
    help_text = meta["help"].format(**text) if text else meta["help"]
    if default not in (None, False, "none"):
        help_text += f" (default: {default})"
    kwargs["help"] = help_text.replace("%", "%%")
    group.add_argument(option_flag(f), **kwargs)


def add_model_options(parser: argparse.ArgumentParser) -> None:
    """--backbone, --adapter, --preset, --modalities, the adapter options of :func:`adapter_options` (--fusion,
    --cma, --latents, --reduction, --groups, --formulation), --adapter-set."""
    g = parser.add_argument_group("model")
    runtime = RuntimeConfig.runtime_fields()
    for f in config_options(TaskModelConfig):  # --backbone, --adapter, --modalities (the runtime ones: training's)
        if f.name not in runtime:
            add_field_option(g, f, default=f.metadata.get("shown", f.default))
    g.add_argument("--preset", choices=list(PRESETS),
                   help="LAVISH settings of a paper task (default: the task's own preset)")
    for dest, f in adapter_options().items():
        add_field_option(g, f, dest=dest)
    g.add_argument("--adapter-set", action="append", metavar="FIELD=VALUE",
                   help="any other setting of the adapter kind (e.g. rank=16 for lora); repeatable")


def add_task_options(parser: argparse.ArgumentParser, task, command: str, title: str | None = None) -> None:
    """The task's own options that ``command`` takes (see :class:`lavish.engine.task.Option`)."""
    options = [o for o in task.options if command in o.commands]
    if options:
        g = parser.add_argument_group(title or f"{task.name.upper()} options")
        defaults = {**dataclasses.asdict(task.model_config_cls()), **dataclasses.asdict(task.train_config_cls())}
        for option in options:
            kwargs = dict(option.kwargs)
            default = defaults.get(option.dest)  # a config field's default, shown from the config itself
            if ("help" in kwargs and "default" not in kwargs["help"] and default not in (None, False, "none", ())
                    and option.dest in defaults):
                kwargs["help"] += f" (default: {default})"
            g.add_argument(*option.flags, **kwargs)


def add_train_options(parser: argparse.ArgumentParser, task) -> None:
    """The options of ``lavish train TASK``: data, run folder, config file, model, backbone weights, training."""
    parser.add_argument("--data", help=f"prepared cache folder (lavish prepare {task.name})")
    parser.add_argument("--out", help="run folder: checkpoints, logs, best.safetensors")
    parser.add_argument("--config", help="YAML file of settings (command-line flags win)")
    add_model_options(parser)
    g = parser.add_argument_group("backbone weights")
    g.add_argument("--no-pretrained", dest="pretrained", action="store_false", default=None,
                   help="random-init backbone (demo and tests; a real run uses pretrained weights)")
    g.add_argument("--pretrained", dest="pretrained", action="store_true", default=None,
                   help="pretrained backbone (the default; overrides pretrained: false in a --config file)")
    g.add_argument("--backbone-weights", help="local timm checkpoint of the backbone (offline machines)")
    t = parser.add_argument_group("training")
    defaults = task.train_config_cls()
    for f in config_options(TrainConfig):
        add_field_option(t, f, default=getattr(defaults, f.name), unit=task.unit, lr_help=task.lr_help)
    for f in config_options(RuntimeConfig):
        add_field_option(t, f)
    t.add_argument("--resume", action="store_true", default=None,
                   help="continue the run in --out from its last checkpoint")
    t.add_argument("--no-progress", dest="progress", action="store_false", default=None)
    add_task_options(parser, task, "train")


# ----------------------------------------------------------------------------------------------- config files
def _find_action(parser: argparse.ArgumentParser, key: str) -> tuple[argparse.Action | None, bool]:
    """(the action a YAML key names, whether the key is its flag name rather than its dest)."""
    flag = "--" + key.replace("_", "-")
    for action in parser._actions:
        if flag in action.option_strings:
            return action, True
    for action in parser._actions:
        if action.dest == key.replace("-", "_") and action.option_strings:
            return action, False
    return None, False


def _config_value(action: argparse.Action, by_flag: bool, value: Any, where: str, key: str = "") -> Any:
    """A YAML value checked and converted as argparse would the option's text; ConfigError naming ``where``.

    A true/false key that names a flag whose setting has another name (``no_pretrained: true``) means "the flag
    given" (true) or "not given" (false); a key that names the setting itself (``pretrained: false``, also where a
    twin flag ``--pretrained`` has that name) is the setting's value."""
    if isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction)):
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: {value!r} is not true or false")
        if by_flag and key.replace("-", "_") != action.dest:
            return action.const if value else None
        return value
    if action.nargs == "?":  # --checkpointing [MODE]: true = the bare flag
        if value is True:
            return action.const
        if value is False:
            return None
    if isinstance(action, argparse._AppendAction):
        values = value if isinstance(value, list) else [value]
        if not all(isinstance(v, str) for v in values):
            raise ConfigError(f"{where}: {value!r} is not a list of strings")
        return values
    kind = action.type
    if kind is int:
        if not isinstance(value, int) or isinstance(value, bool):
            raise ConfigError(f"{where}: {value!r} is not an integer")
    elif kind is float:
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            raise ConfigError(f"{where}: {value!r} is not a number")
        value = float(value)
    elif kind in (None, str, Path):
        if action.choices is not None and isinstance(value, (int, float)) and not isinstance(value, bool):
            value = str(value)  # precision: 32
        if not isinstance(value, str):
            raise ConfigError(f"{where}: {value!r} is not a string")
        value = kind(value) if kind is Path else value
    if action.choices is not None and value not in action.choices:
        raise ConfigError(f"{where}: {value!r} is not one of {', '.join(map(str, action.choices))}")
    return value


NOT_IN_CONFIG = ("config", "help", "version")


def apply_config_file(args: argparse.Namespace, parser: argparse.ArgumentParser | None = None) -> None:
    """Fill options left unset on the command line from the YAML file ``--config`` (command line > YAML).

    ``parser``: the parser of the sub-command (default: ``args.parser``, which ``lavish train TASK`` sets)."""
    if not getattr(args, "config", None):
        return
    parser = parser or args.parser
    path = Path(args.config)
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError, UnicodeDecodeError) as err:
        raise ConfigError(f"config file {path}: cannot read it ({str(err).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path}: expected a mapping of option: value")
    for key, value in data.items():
        action, by_flag = _find_action(parser, str(key))
        if action is None or action.dest in NOT_IN_CONFIG:
            raise ConfigError(f"config file {path}: unknown setting {key!r}")
        value = _config_value(action, by_flag, value, f"config file {path}: {key}", str(key))
        if getattr(args, action.dest, None) is None and value is not None:
            setattr(args, action.dest, value)


# ----------------------------------------------------------------------------------------------- the configs
def resolve_model_defaults(args: argparse.Namespace) -> None:
    """Fill the model options still unset (after any config file) with their defaults."""
    args.backbone = args.backbone or DEFAULT_BACKBONE
    args.adapter = args.adapter or "lavish"
    args.modalities = args.modalities or "av"


def _parse_setting(text: str) -> tuple[str, Any]:
    name, sep, value = text.partition("=")
    if not sep or not name.strip():
        raise ConfigError(f"--adapter-set {text!r} is not FIELD=VALUE")
    try:
        parsed = yaml.safe_load(value)
    except yaml.YAMLError:
        parsed = value
    return name.strip().replace("-", "_"), parsed


def adapter_from_args(args: argparse.Namespace, default_preset: str) -> AdapterConfig:
    """The AdapterConfig the options describe: the task preset's LAVISH/bottleneck settings, then the options.

    An option the adapter kind has no setting for is refused (``--latents`` with ``--adapter lora``), as is a
    ``--preset`` for a kind that takes nothing from it.
    """
    resolve_model_defaults(args)
    kind = args.adapter
    cls = ADAPTERS[kind]
    fields = {f.name for f in dataclasses.fields(cls)}
    base = preset_settings(kind, args.preset or default_preset)
    if args.preset and not base:
        raise ConfigError(f"--preset {args.preset} does not apply to adapter {kind!r}: presets set LAVISH / bottleneck "
                          "settings")
    explicit = {}
    for option, f in adapter_options().items():
        value = getattr(args, option, None)
        if value is None:
            continue
        if f.name not in fields:
            settings = ", ".join(sorted(fields)) or "none"
            raise ConfigError(f"{option_flag(f)} does not apply to adapter {kind!r} (its settings: {settings})")
        explicit[f.name] = value
    for text in getattr(args, "adapter_set", None) or ():
        name, value = _parse_setting(text)
        if name not in fields:
            raise ConfigError(f"--adapter-set {name}: adapter {kind!r} has no such setting (its settings: "
                              f"{', '.join(sorted(fields)) or 'none'})")
        explicit[name] = value
    return adapter_config(kind, **{**base, **explicit})


def check_cross_modal_options(args: argparse.Namespace, adapter: AdapterConfig) -> None:
    """Refuse --fusion, --latents, --formulation where nothing crosses between the streams: ``--fusion`` with one
    stream (``--modalities v`` or ``a``), ``--latents`` / ``--formulation`` when no stream receives from the other
    (one stream, or ``--fusion none``): the model is the same whatever they say."""
    receives = getattr(adapter, "receives", None)
    if receives is None:  # kinds without cross-modal settings: adapter_from_args refused them already
        return
    modalities = args.modalities
    if args.fusion is not None and modalities != "av":
        raise ConfigError(f"--fusion does not apply with --modalities {modalities}: one stream runs, nothing crosses")
    if not any(receives(modalities)):
        why = f"--modalities {modalities}" if modalities != "av" else "--fusion none"
        for option in ("latents", "formulation"):
            if getattr(args, option, None) is not None:
                raise ConfigError(f"--{option} does not apply with {why}: no stream receives from the other")


def task_option_values(task, args: argparse.Namespace, command: str = "train") -> dict:
    """dest -> value of the task's own options given for ``command`` (after the config file)."""
    return {o.dest: getattr(args, o.dest) for o in task.options
            if command in o.commands and getattr(args, o.dest, None) is not None}


def model_config_from_args(task, args: argparse.Namespace, task_values: dict | None = None):
    """The task's model config: the model options, then the task's own model settings."""
    from lavish.engine.task import check_modalities

    adapter = adapter_from_args(args, task.preset)  # also fills the model defaults
    check_modalities(task, args.modalities)
    check_cross_modal_options(args, adapter)
    checkpointing = getattr(args, "checkpointing", None)
    if checkpointing == "adapters" and not adapter.has_slots:
        raise ConfigError(f"--checkpointing adapters does not apply to adapter {adapter.kind!r}, which adds no adapter "
                          "modules to recompute: use --checkpointing blocks")
    fused = getattr(args, "fused_adapters", None)
    if fused and not adapter.has_slots:
        raise ConfigError(f"--fused-adapters does not apply to adapter {adapter.kind!r}, which adds no adapter modules "
                          "to fuse")
    if fused:
        from lavish.models.backbone import fused_adapters_mode

        fused_adapters_mode(fused)  # cuda-graphs without a CUDA GPU: one line, before anything is built
    values = {"backbone": args.backbone, "adapter": adapter, "modalities": args.modalities,
              **{name: getattr(args, name, None) or False for name in RuntimeConfig.runtime_fields()}}
    values.update(task.model_settings(task_values or {}))
    fields = {f.name for f in dataclasses.fields(task.model_config_cls)}
    unknown = sorted(set(values) - fields)
    if unknown:  # a task option that none of its configs reads: our bug, not the user's
        raise RuntimeError(f"{task.name}: options {unknown} are read by no config")
    return task.model_config_cls(**values)


def train_config_from_args(task, args: argparse.Namespace, task_values: dict):
    """The task's TrainConfig: its defaults, then the training options given."""
    fields = {f.name for f in dataclasses.fields(task.train_config_cls)}
    values = {f.name: getattr(args, f.name) for f in config_options(TrainConfig)
              if getattr(args, f.name, None) is not None}
    values.update({k: v for k, v in task_values.items() if k in fields})
    return task.train_config_cls(**values)
