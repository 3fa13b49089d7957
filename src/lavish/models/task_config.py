"""What the task model configurations (AVE, AVS, AVQA) share: the adapter preset default and the JSON round trip.

A task model config travels in every adapter file (``lavish.models.weights``); ``to_dict`` is what is compared
when a file is loaded, so it holds the model's settings only (runtime choices such as activation checkpointing
are dropped) in JSON types (tuples become lists; ``__post_init__`` of each config turns them back).
"""

from __future__ import annotations

import dataclasses
from dataclasses import field
from typing import Any, ClassVar

from lavish.models.adapters import PRESETS, config_from_dict


def preset_adapter(name: str) -> Any:
    """Dataclass field whose default is a fresh copy of adapter preset ``name``."""
    return field(default_factory=lambda: dataclasses.replace(PRESETS[name]))


class TaskModelConfig:
    """Mix-in for a dataclass with an ``adapter`` field."""

    RUNTIME_FIELDS: ClassVar[tuple[str, ...]] = ("checkpointing",)

    def to_dict(self) -> dict:
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name not in self.RUNTIME_FIELDS}
        data["adapter"] = self.adapter.to_dict()
        return {k: list(v) if isinstance(v, tuple) else v for k, v in data.items()}

    @classmethod
    def from_dict(cls, data: dict):
        data = dict(data)
        data["adapter"] = config_from_dict(data["adapter"])
        return cls(**data)
