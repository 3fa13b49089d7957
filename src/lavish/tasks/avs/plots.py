"""AVS pictures: the predicted masks as PNGs and a contact sheet of the frames with the masks in red."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def write_masks(masks: np.ndarray, frames: np.ndarray, out: Path, stem: str) -> dict:
    """Mask PNGs (0/255) and a contact sheet (frames with the masks in red) under ``out``: {masks, sheet}.

    masks: (T, H_m, W_m) bool; frames: (T, H, W, 3) uint8."""
    from PIL import Image

    from lavish.fileio import write_bytes

    h, w = masks.shape[-2:]
    written, tiles = [], []
    for k, (mask, frame) in enumerate(zip(masks, frames)):
        target = out / f"{stem}_{k + 1}.png"
        write_bytes(target, _png((mask * 255).astype(np.uint8)))
        written.append(str(target))
        tile = np.asarray(Image.fromarray(frame).resize((w, h), Image.BILINEAR), dtype=np.float32)
        tile[mask] = 0.45 * tile[mask] + 0.55 * np.array([255.0, 0.0, 0.0])
        tiles.append(tile.astype(np.uint8))
    sheet = out / f"{stem}_sheet.png"
    write_bytes(sheet, _png(np.concatenate(tiles, axis=1)))
    return {"masks": written, "sheet": str(sheet)}


def _png(array: np.ndarray) -> bytes:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()
