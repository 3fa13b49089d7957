"""Measurement: how far lavish's stored AVS frames are from the authors' model input (docs/avs.md, issue 12).

The authors' AVS model input (AVS/avs_scripts/avs_s4/{dataloader.py, model/PVT_AVSModel.py L435}): the 224x224 png
-> ToTensor -> ImageNet Normalize -> ``F.interpolate(x, size=[192, 192], mode='bicubic')`` (align_corners and
antialias at their defaults, False). Compared with it, in normalised units and in 0-255 units (normalised x std x
255, per channel): the former lavish frames (PIL bicubic on uint8 at prepare) and the current ones
(:func:`lavish.tasks.avs.layout.resize_frames`, the same torch op on 0-255 values, rounded to uint8), both normalised as at
load time. Frames: a real photograph (matplotlib's grace_hopper.jpg, brought to 224x224 with PIL bilinear, as
AVSBench's cv2.resize) and 8 synthetic AVS frames (lavish.tasks.avs.synthetic, 224 px, 3 objects) with 1/f noise
(std 20 grey levels). Deterministic (no timing). Run: python benchmarks/avs_resize.py
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from lavish.tasks.avs.layout import resize_frames
from lavish.tasks.avs.synthetic import textured_frames
from lavish.media.frames import IMAGENET_STD, normalize_frames


def authors(frames: np.ndarray) -> torch.Tensor:
    return F.interpolate(normalize_frames(torch.from_numpy(frames)), size=[192, 192], mode="bicubic")


def pil(frames: np.ndarray) -> np.ndarray:
    return np.stack([np.asarray(Image.fromarray(f).resize((192, 192), Image.BICUBIC)) for f in frames])


def photo() -> np.ndarray:
    from matplotlib import cbook

    with cbook.get_sample_data("grace_hopper.jpg") as f, Image.open(f) as img:
        return np.array(img.convert("RGB").resize((224, 224), Image.BILINEAR))[None]


def main() -> None:
    std_255 = torch.tensor(IMAGENET_STD)[:, None, None] * 255
    print(f"{'frames':<26} {'lavish resize':<34} {'normalised mean / max':>22} {'0-255 mean / max':>18} "
          f"{'> 0.5/255':>10}")
    for name, frames in (("grace_hopper.jpg (1)", photo()), ("synthetic + 1/f noise (8)", textured_frames(8))):
        reference = authors(frames)
        for label, stored in (("PIL bicubic uint8 (before)", pil(frames)),
                              ("resize_frames (now)", resize_frames(frames, (192, 192)))):
            diff = (normalize_frames(torch.from_numpy(stored)) - reference).abs()
            diff_255 = diff * std_255
            beyond = (diff_255 > 0.5 + 1e-3).float().mean()
            print(f"{name:<26} {label:<34} {diff.mean():>10.4f} / {diff.max():.3f} {diff_255.mean():>10.2f} / "
                  f"{diff_255.max():<5.1f} {100 * beyond:>9.2f}%")


if __name__ == "__main__":
    main()
