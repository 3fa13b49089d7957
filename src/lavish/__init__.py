"""lavish: frozen image-pretrained vision transformers taught to see and hear (LAVISH, CVPR 2023).

Layers, each importing only the ones before it:
``media`` (decode, spectrogram, frames) -> ``data`` (dataset layouts, caches) -> ``models`` (backbone
wrapper, adapters, heads) -> ``tasks`` (training and evaluation per task) -> ``cli``.
"""

__version__ = "0.1.0"
