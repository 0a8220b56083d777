"""Pictures of a run: loss curves, and originals beside reconstructions and their absolute error."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def plot_history(history: list[dict[str, float]], path: Path) -> None:
    """One panel per tracked quantity (training and validation), epochs on the x axis; timings are left out."""
    keys = [key for key in history[0] if not key.endswith("seconds")]
    names = list(dict.fromkeys(key.removeprefix("val_") for key in keys))  # ssim, psnr... are validation-only
    columns = min(3, len(names))
    rows = -(-len(names) // columns)
    figure, axes = plt.subplots(rows, columns, figsize=(4.2 * columns, 3.0 * rows), squeeze=False)
    epochs = np.arange(1, len(history) + 1)
    for axis, name in zip(axes.flat, names):
        for key, label, colour in ((name, "train", "C0"), (f"val_{name}", "validation", "C1")):
            if key in history[0]:
                axis.plot(epochs, [row[key] for row in history], label=label, color=colour)
        axis.set_title(name)
        axis.set_xlabel("epoch")
        if "loss" in name:
            axis.set_yscale("log")
        axis.grid(alpha=0.3)
        axis.legend()
    for axis in axes.flat[len(names):]:
        axis.axis("off")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def plot_reconstructions(originals: np.ndarray, reconstructions: np.ndarray, path: Path, title: str = "") -> None:
    """Rows: originals, reconstructions, |difference|; images (n, H, W, 1) in [0, 1]."""
    count = len(originals)
    figure, axes = plt.subplots(3, count, figsize=(1.9 * count, 6.1), squeeze=False)
    rows = [("original", originals, 1.0), ("reconstruction", reconstructions, 1.0),
            ("|error| x4", np.abs(originals - reconstructions) * 4, 1.0)]
    for row, (label, images, vmax) in enumerate(rows):
        for column in range(count):
            axis = axes[row, column]
            axis.imshow(images[column, ..., 0], cmap="gray", vmin=0.0, vmax=vmax, interpolation="nearest")
            axis.set_xticks([])
            axis.set_yticks([])
        axes[row, 0].set_ylabel(label)
    if title:
        figure.suptitle(title)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def plot_grid(images: np.ndarray, path: Path, columns: int, title: str = "") -> None:
    """Images (n, H, W) in [0, 255] or [0, 1] as a grid, grayscale, no interpolation."""
    rows = -(-len(images) // columns)
    title_height = 0.4 if title else 0.0  # inches kept free above the grid for the title
    height = 1.6 * rows + title_height
    figure, axes = plt.subplots(rows, columns, figsize=(1.6 * columns, height), squeeze=False)
    vmax = 255 if images.dtype == np.uint8 else 1.0
    for axis in axes.flat:
        axis.axis("off")
    for axis, image in zip(axes.flat, images):
        axis.imshow(image, cmap="gray", vmin=0, vmax=vmax, interpolation="nearest")
    if title:
        figure.suptitle(title, fontsize=10)
    figure.tight_layout(pad=0.3, rect=(0, 0, 1, 1 - title_height / height))
    figure.savefig(path, dpi=100)
    plt.close(figure)
