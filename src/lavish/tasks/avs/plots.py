"""AVS pictures: a predicted mask as a PNG, and a frame with its mask in red (the tiles of the contact sheets)."""

from __future__ import annotations

import io

import numpy as np


def overlay(frame: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 frame resized to the mask's (H_m, W_m), the masked pixels tinted red."""
    from PIL import Image

    h, w = mask.shape
    tile = np.asarray(Image.fromarray(frame).resize((w, h), Image.BILINEAR), dtype=np.float32)
    tile[mask] = 0.45 * tile[mask] + 0.55 * np.array([255.0, 0.0, 0.0])
    return tile.astype(np.uint8)


def png(array: np.ndarray) -> bytes:
    """PNG bytes of a (H, W) or (H, W, 3) uint8 array."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()
