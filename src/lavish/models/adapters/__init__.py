"""Adapters: one implementation per method, chosen by name (:data:`ADAPTERS`), configured by dataclasses."""

from lavish.models.adapters.config import (
    ADAPTERS,
    CMA_MODES,
    FUSIONS,
    MODALITIES,
    PRESETS,
    AdapterConfig,
    AvishConfig,
    BitfitConfig,
    BottleneckAdapterConfig,
    CompacterConfig,
    LavishConfig,
    LoraAttentionConfig,
    LoraConfig,
    NoAdapterConfig,
    NormConfig,
    adapter_config,
    config_from_dict,
    preset_settings,
)
from lavish.models.adapters.slots import Streams

__all__ = [
    "ADAPTERS", "CMA_MODES", "FUSIONS", "MODALITIES", "PRESETS", "AdapterConfig", "AvishConfig", "BitfitConfig",
    "BottleneckAdapterConfig", "CompacterConfig", "LavishConfig", "LoraAttentionConfig", "LoraConfig",
    "NoAdapterConfig", "NormConfig", "Streams", "adapter_config", "config_from_dict", "preset_settings",
]
