"""What the synthetic demo datasets of every task share: audio-visual objects (a coloured shape and a chord at a class
frequency), their shapes drawn as masks, the alphabet of YouTube-like video ids.

Each task's ``synthetic.py`` writes its official layout from these objects (``lavish demo TASK``, the tests).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lavish.media.audio import SAMPLE_RATE  # noqa: F401  (the rate of every synthetic wav)

ID_ALPHABET = np.array(list("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"))
"""characters of a YouTube video id"""


@dataclass(frozen=True)
class SyntheticClass:
    """One audio-visual object: RGB colour, shape name (see ``_SHAPES``), chord fundamental in Hz."""

    colour: tuple[int, int, int]
    shape: str
    freq: float

    @property
    def name(self) -> str:
        colour = {v: k for k, v in _COLOURS.items()}[self.colour]
        return f"{colour} {self.shape} ({self.freq:g} Hz)"


_COLOURS = {
    "Red": (230, 30, 30), "Green": (30, 200, 40), "Blue": (40, 60, 235), "Yellow": (235, 220, 30),
    "Magenta": (220, 40, 220), "Cyan": (30, 215, 225), "Orange": (245, 140, 20), "White": (250, 250, 250),
}

CLASSES: tuple[SyntheticClass, ...] = (
    SyntheticClass(_COLOURS["Red"], "square", 440.0),
    SyntheticClass(_COLOURS["Green"], "circle", 660.0),
    SyntheticClass(_COLOURS["Blue"], "triangle", 880.0),
    SyntheticClass(_COLOURS["Yellow"], "cross", 1320.0),
    SyntheticClass(_COLOURS["Magenta"], "diamond", 550.0),
    SyntheticClass(_COLOURS["Cyan"], "ring", 990.0),
    SyntheticClass(_COLOURS["Orange"], "bar", 1760.0),
    SyntheticClass(_COLOURS["White"], "square", 2200.0),
)
SYNTHETIC_CLASSES: tuple[str, ...] = tuple(c.name for c in CLASSES)
"""Category names, e.g. "Red square (440 Hz)"; the first ``num_classes`` are used."""


def shape_mask(shape: str, n: int) -> np.ndarray:
    """(n, n) bool mask of a shape filling most of an n x n box."""
    y, x = np.mgrid[0:n, 0:n] + 0.5
    c, r = n / 2, n / 2
    masks = {
        "square": np.ones((n, n), bool),
        "circle": (x - c) ** 2 + (y - c) ** 2 <= r**2,
        "triangle": (y >= n - 2 * np.minimum(x, n - x)) & (y <= n),
        "cross": (np.abs(x - c) < n / 6) | (np.abs(y - c) < n / 6),
        "diamond": np.abs(x - c) + np.abs(y - c) <= r,
        "ring": ((x - c) ** 2 + (y - c) ** 2 <= r**2) & ((x - c) ** 2 + (y - c) ** 2 >= (0.5 * r) ** 2),
        "bar": np.abs(y - c) < n / 4,
    }
    return masks[shape]
