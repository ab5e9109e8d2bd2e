"""Training figures: ``curves.png`` (per-epoch curves) and ``samples.png`` (RGB, label, prediction)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from s2pipe.legend import LandCoverClass
from s2pipe.outputs import atomic_output


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def plot_curves(history: Sequence[dict], path: str | os.PathLike) -> None:
    """Loss, overall accuracy and mIoU per epoch, train vs val, into a PNG."""
    plt = _pyplot()
    from matplotlib.ticker import MaxNLocator

    epochs = [h["epoch"] for h in history]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    for ax, key, title in zip(axes, ("loss", "oa", "miou"), ("loss", "overall accuracy", "mIoU")):
        for split, style in (("train", "-"), ("val", "--")):
            values = [h.get(f"{split}_{key}") for h in history]
            if any(v is not None for v in values):
                ax.plot(epochs, [np.nan if v is None else v for v in values], style, marker=".", label=split)
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    with atomic_output(path, overwrite=True) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)


def rgb_composite(image: np.ndarray, bands: Sequence[str], *, low: float = 2, high: float = 98) -> np.ndarray:
    """(H, W, 3) float RGB from B04/B03/B02 with a per-band percentile stretch (no data black)."""
    idx = [list(bands).index(b) for b in ("B04", "B03", "B02")]
    rgb = image[idx].astype(np.float64)
    valid = image.any(axis=0)
    out = np.zeros(rgb.shape[1:] + (3,))
    for i in range(3):
        if valid.any():
            lo, hi = np.percentile(rgb[i][valid], (low, high))
            out[..., i] = np.clip((rgb[i] - lo) / max(hi - lo, 1e-6), 0, 1)
    out[~valid] = 0
    return out


def plot_samples(images: np.ndarray, labels: np.ndarray, predictions: np.ndarray,
                 bands: Sequence[str], legend: Sequence[LandCoverClass],
                 path: str | os.PathLike, *, title: str = "") -> None:
    """One row per tile: RGB composite, label, prediction; fixed colours, all classes in the legend."""
    plt = _pyplot()
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch

    n_max = max(c.value for c in legend)
    colours = np.zeros((n_max + 1, 4))
    colours[0] = (0, 0, 0, 1)  # no data: black
    for c in legend:
        colours[c.value] = (*(v / 255 for v in c.rgb), 1.0)
    cmap = ListedColormap(colours)
    n = len(images)
    fig, axes = plt.subplots(n, 3, figsize=(9, 3 * n + 0.8), squeeze=False)
    for r in range(n):
        axes[r, 0].imshow(rgb_composite(images[r], bands))
        axes[r, 1].imshow(labels[r], cmap=cmap, vmin=0, vmax=n_max, interpolation="nearest")
        axes[r, 2].imshow(predictions[r], cmap=cmap, vmin=0, vmax=n_max, interpolation="nearest")
        for ax in axes[r]:
            ax.set_xticks([])
            ax.set_yticks([])
    for ax, name in zip(axes[0], ("RGB (B04/B03/B02)", "label (black: no data)", "prediction")):
        ax.set_title(name)
    handles = [Patch(facecolor=colours[c.value], edgecolor="k", label=f"{c.value} {c.name}") for c in legend]
    fig.legend(handles=handles, loc="lower center", ncol=2, fontsize=8, frameon=False)
    if title:
        fig.suptitle(title)
    fig.tight_layout(rect=(0, 0.22 / max(n, 1) + 0.05, 1, 1 - 0.12 / max(n, 1)))
    with atomic_output(path, overwrite=True) as tmp:
        fig.savefig(tmp, dpi=80, format="png")
    plt.close(fig)
