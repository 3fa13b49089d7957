"""Figures: confusion matrix, prediction timelines with thumbnails (AVE labels, AVVP heard / seen rows), demo
comparison (matplotlib, Agg)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from lavish.fileio import atomic_path


def save_figure(fig, path: str | Path, dpi: int = 110) -> Path:
    """Write a matplotlib figure to ``path`` durably (:func:`lavish.fileio.atomic_path`) and close it."""
    path = Path(path)
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=dpi, bbox_inches="tight")
    finally:
        import matplotlib.pyplot as plt

        plt.close(fig)
    return path


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_confusion(cm: np.ndarray, classes: list[str], path: str | Path) -> Path:
    """Row-normalised confusion matrix (rows: truth)."""
    plt = _plt()
    k = len(classes)
    norm = cm / np.maximum(cm.sum(1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(2 + 0.35 * k, 1.5 + 0.35 * k))
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(k), [c[:18] for c in classes], rotation=90, fontsize=7)
    ax.set_yticks(range(k), [c[:18] for c in classes], fontsize=7)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title("AVE confusion (row-normalised)")
    return save_figure(fig, path)


def plot_timeline(seconds: list[dict], frames, title: str, path: str | Path, background: str = "background",
                  first: int = 0) -> Path:
    """Event bands over the video's seconds (height = probability) and up to 6 thumbnails.

    seconds: [{second, label, probability}] of seconds [first, first + T); frames: (T, H, W, 3) uint8, or
    {index in the page: (H, W, 3)} holding just the thumbnails to show (a page of a long video).
    """
    plt = _plt()
    t = len(seconds)
    labels = sorted({s["label"] for s in seconds if s["label"] != background})
    colours = {lab: plt.cm.tab10(i % 10) for i, lab in enumerate(labels)}
    fig = plt.figure(figsize=(max(6, 0.6 * t), 3.6))
    thumbs = sorted(frames) if isinstance(frames, dict) else np.linspace(0, t - 1, min(6, t)).round().astype(int)
    for j, idx in enumerate(thumbs):
        ax = fig.add_axes([0.05 + j * 0.9 / len(thumbs), 0.55, 0.9 / len(thumbs) - 0.01, 0.4])
        ax.imshow(frames[idx])
        ax.set_title(f"{first + idx} s", fontsize=8)
        ax.axis("off")
    ax = fig.add_axes([0.05, 0.12, 0.9, 0.33])
    for s in seconds:
        colour = colours.get(s["label"], (0.85, 0.85, 0.85, 1.0))
        ax.bar(s["second"] + 0.5, s["probability"], width=1.0, color=colour, edgecolor="white")
    ax.set_xlim(first, first + t)
    ax.set_ylim(0, 1)
    ax.set_xlabel("second")
    ax.set_ylabel("probability")
    handles = [plt.Rectangle((0, 0), 1, 1, color=colours[lab]) for lab in labels]
    if handles:
        ax.legend(handles, labels, fontsize=7, loc="upper right")
    fig.suptitle(title, fontsize=9)
    return save_figure(fig, path)


def plot_bars(names: list[str], values: list[float], title: str, path: str | Path, ylabel: str = "accuracy") -> Path:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(4.5, 3))
    bars = ax.bar(names, values, color=["tab:purple", "tab:blue", "tab:orange", "tab:gray"][: len(names)])
    for bar, value in zip(bars, values):
        ax.text(bar.get_x() + bar.get_width() / 2, value + 0.01, f"{value:.3f}", ha="center", fontsize=8)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=9)
    return save_figure(fig, path)


def plot_parsing(heard: np.ndarray, seen: np.ndarray, classes: list[str], frames, title: str,
                 path: str | Path, first: int = 0) -> Path:
    """AVVP timeline: up to 6 thumbnails over an audio row and a visual row of event bands.

    heard, seen: (T, C) bool, the events heard / seen in seconds [first, first + T); frames: (T, H, W, 3) uint8,
    or {index in the page: (H, W, 3)} holding just the thumbnails to show (a page of a long video).
    """
    plt = _plt()
    t = len(heard)
    labels = [k for k in range(len(classes)) if heard[:, k].any() or seen[:, k].any()]
    colours = {k: plt.cm.tab10(i % 10) for i, k in enumerate(labels)}
    fig = plt.figure(figsize=(max(6, 0.6 * t), 4.2))
    thumbs = sorted(frames) if isinstance(frames, dict) else np.linspace(0, t - 1, min(6, t)).round().astype(int)
    for j, idx in enumerate(thumbs):
        ax = fig.add_axes([0.1 + j * 0.85 / len(thumbs), 0.58, 0.85 / len(thumbs) - 0.01, 0.36])
        ax.imshow(frames[idx])
        ax.set_title(f"{first + idx} s", fontsize=8)
        ax.axis("off")
    ax = fig.add_axes([0.1, 0.12, 0.85, 0.4])
    rows = (("audio", heard, 1), ("visual", seen, 0))
    for _, grid, y in rows:
        for i, k in enumerate(labels):
            height = 0.8 / max(1, len(labels))
            for second in np.flatnonzero(grid[:, k]):
                ax.add_patch(plt.Rectangle((first + second, y + 0.1 + i * height), 1, height, color=colours[k]))
    ax.set_xlim(first, first + t)
    ax.set_ylim(0, 2)
    ax.set_yticks([0.5, 1.5], ["seen", "heard"])
    ax.set_xlabel("second")
    handles = [plt.Rectangle((0, 0), 1, 1, color=colours[k]) for k in labels]
    if handles:
        ax.legend(handles, [classes[k] for k in labels], fontsize=7, loc="upper right")
    fig.suptitle(title, fontsize=9)
    return save_figure(fig, path)
