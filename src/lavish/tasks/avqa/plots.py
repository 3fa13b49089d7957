"""AVQA pictures: where the question-guided attention looks in each segment (lavish ask --plot)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def plot_attention(frames: np.ndarray, spatial: np.ndarray, result: dict, path: str | Path) -> Path:
    """PNG: each segment's frame (T, H, W, 3) with its audio-guided attention map (T, gh, gw) overlaid, titled by
    time and question-guided visual weight; the top answer in the title. Written atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    t = len(frames)
    fig, axes = plt.subplots(1, t, figsize=(1.6 * t, 2.0), squeeze=False)
    h, w = frames.shape[1:3]
    for k, ax in enumerate(axes[0]):
        ax.imshow(frames[k])
        ax.imshow(spatial[k], extent=(0, w, h, 0), alpha=0.45, cmap="jet", interpolation="bilinear")
        seg = result["segments"][k]
        ax.set_title(f"{seg['time_s']:.0f}s  {seg['visual_weight']:.2f}", fontsize=7)
        ax.axis("off")
    best = result["answers"][0]
    fig.suptitle(f"{result['question']}  ->  {best['answer']} ({best['probability']:.2f})", fontsize=8)
    from lavish.engine.plots import save_figure

    return save_figure(fig, path, dpi=100)
