"""The classify task's figure: a clip's top-k labels as horizontal probability bars."""

from __future__ import annotations

from pathlib import Path

from lavish.engine.plots import _plt, save_figure


def plot_top_k(labels: list[str], probabilities: list[float], title: str, path: str | Path) -> Path:
    """Horizontal bars, the most probable label on top, each with its probability; written to ``path`` (PNG)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 0.45 * len(labels) + 1.1))
    rows = list(range(len(labels)))[::-1]
    bars = ax.barh(rows, probabilities, color="tab:blue")
    for bar, value in zip(bars, probabilities):
        ax.text(min(value, 1.0) + 0.01, bar.get_y() + bar.get_height() / 2, f"{value:.3f}", va="center", fontsize=8)
    ax.set_yticks(rows, [label if len(label) <= 40 else label[:39] + "…" for label in labels], fontsize=8)
    ax.set_xlim(0, 1.12)
    ax.set_xlabel("probability")
    ax.set_title(title, fontsize=9)
    return save_figure(fig, path)
