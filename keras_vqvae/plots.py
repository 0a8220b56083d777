"""Pictures of a run: loss curves, originals beside reconstructions and their absolute error, code-index maps, the
codebook's usage, and grids of slices. Images in grayscale without interpolation; titles carry the figures."""

from __future__ import annotations

import textwrap
from pathlib import Path

import matplotlib
import matplotlib.colors
import numpy as np
from matplotlib.figure import Figure  # not pyplot: no backend is chosen, so a notebook's inline plots keep theirs

TITLE_SIZE = 10  # points
TITLE_CHARACTERS_PER_INCH = 12  # of a TITLE_SIZE title, a little under what fits, so that no line runs off the figure
TITLE_LINE_HEIGHT = 0.2  # inches


def wrapped_title(title: str, width: float) -> str:
    """`title` broken into lines that fit a figure `width` inches wide."""
    return textwrap.fill(title, width=int(width * TITLE_CHARACTERS_PER_INCH))


def space_for_title(title: str) -> float:
    """Inches to keep free above a grid for its wrapped `title` (none without one)."""
    return 0.2 + TITLE_LINE_HEIGHT * (title.count("\n") + 1) if title else 0.0


def plot_history(history: list[dict[str, float]], path: Path) -> None:
    """One panel per tracked quantity (training and validation), epochs on the x axis; timings are left out."""
    keys = [key for key in history[0] if not key.endswith("seconds")]
    names = list(dict.fromkeys(key.removeprefix("val_") for key in keys))  # ssim, psnr... are validation-only
    columns = min(3, len(names))
    rows = -(-len(names) // columns)
    figure = Figure(figsize=(4.2 * columns, 3.0 * rows))
    axes = figure.subplots(rows, columns, squeeze=False)
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


def plot_reconstructions(originals: np.ndarray, reconstructions: np.ndarray, path: Path, title: str = "") -> None:
    """Rows: originals, reconstructions, |difference|; images (n, H, W, 1) in [0, 1]."""
    count = len(originals)
    figure = Figure(figsize=(1.9 * count, 6.1))
    axes = figure.subplots(3, count, squeeze=False)
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


def code_colours(num_embeddings: int) -> matplotlib.colors.ListedColormap:
    """One colour per code index, shuffled (seed 0) so that neighbouring regions with different codes contrast:
    indices are categories, not intensities, and index 7 is no closer to 8 than to 200."""
    colours = matplotlib.colormaps["turbo"](np.linspace(0.0, 1.0, num_embeddings))
    return matplotlib.colors.ListedColormap(colours[np.random.default_rng(0).permutation(num_embeddings)])


def plot_code_maps(originals: np.ndarray, codes: np.ndarray, num_embeddings: int, path: Path,
                   title: str = "") -> None:
    """Rows: images (n, H, W, 1) in [0, 1], and their code-index maps (n, h, w), each code in its own colour."""
    count = len(originals)
    figure = Figure(figsize=(1.9 * count, 4.2))
    axes = figure.subplots(2, count, squeeze=False)
    colours = code_colours(num_embeddings)
    for column in range(count):
        axes[0, column].imshow(originals[column, ..., 0], cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
        axes[1, column].imshow(codes[column], cmap=colours, vmin=-0.5, vmax=num_embeddings - 0.5,
                               interpolation="nearest")
    for axis in axes.flat:
        axis.set_xticks([])
        axis.set_yticks([])
    axes[0, 0].set_ylabel("original")
    axes[1, 0].set_ylabel(f"codes ({codes.shape[1]}x{codes.shape[2]})")
    if title:
        figure.suptitle(title)
    figure.tight_layout()
    figure.savefig(path, dpi=100)


def plot_codebook_usage(codes: np.ndarray, num_embeddings: int, path: Path, title: str = "") -> None:
    """How often each of the codebook's entries occurs in code maps (n, h, w): by index, and ranked by frequency
    (a flat ranked curve means an evenly used codebook; a cliff, a few codes doing all the work)."""
    counts = np.bincount(codes.ravel(), minlength=num_embeddings)
    share = counts / counts.sum()
    figure = Figure(figsize=(10.0, 3.2))
    by_index, ranked = figure.subplots(1, 2)
    by_index.bar(np.arange(num_embeddings), share, width=1.0, color="C0")
    by_index.set_xlabel("code index")
    by_index.set_ylabel("share of code positions")
    by_index.set_xlim(-0.5, num_embeddings - 0.5)
    ranked.plot(np.arange(1, num_embeddings + 1), np.sort(share)[::-1], color="C0")
    ranked.axhline(1.0 / num_embeddings, color="C1", linestyle="--", label="uniform")
    ranked.set_xlabel("rank")
    ranked.set_yscale("log")
    ranked.legend()
    for axis in (by_index, ranked):
        axis.grid(alpha=0.3)
    figure.suptitle(title or f"{np.count_nonzero(counts)} of {num_embeddings} codes used")
    figure.tight_layout()
    figure.savefig(path, dpi=100)


def plot_grid(images: np.ndarray, path: Path, columns: int, title: str = "") -> None:
    """Images (n, H, W) in [0, 255] or [0, 1] as a grid, grayscale, no interpolation."""
    rows = -(-len(images) // columns)
    title = wrapped_title(title, 1.6 * columns)
    title_height = space_for_title(title)
    height = 1.6 * rows + title_height
    figure = Figure(figsize=(1.6 * columns, height))
    axes = figure.subplots(rows, columns, squeeze=False)
    vmax = 255 if images.dtype == np.uint8 else 1.0
    for axis in axes.flat:
        axis.axis("off")
    for axis, image in zip(axes.flat, images):
        axis.imshow(image, cmap="gray", vmin=0, vmax=vmax, interpolation="nearest")
    if title:
        figure.suptitle(title, fontsize=TITLE_SIZE)
    figure.tight_layout(pad=0.3, rect=(0, 0, 1, 1 - title_height / height))
    figure.savefig(path, dpi=100)


def plot_positions(generated: np.ndarray, real: np.ndarray, num_positions: int, path: Path, title: str = "") -> None:
    """Histograms of the slice positions (n,) a position network predicts for generated and for real slices."""
    width = 8
    figure = Figure(figsize=(width, 3))
    axis = figure.subplots()
    bins = np.arange(num_positions + 1) - 0.5
    axis.hist(real, bins=bins, alpha=0.5, label=f"real ({len(real)})", color="C0")
    axis.hist(generated, bins=bins, alpha=0.5, label=f"generated ({len(generated)})", color="C1")
    axis.set_xlabel("predicted slice position")
    axis.set_ylabel("slices")
    axis.legend()
    axis.grid(alpha=0.3)
    axis.set_title(wrapped_title(title, width), fontsize=TITLE_SIZE)  # tight_layout makes room for its lines
    figure.tight_layout()
    figure.savefig(path, dpi=100)


def plot_by_position(real: list[np.ndarray | None], generated: list[np.ndarray], positions, path: Path,
                     title: str = "") -> None:
    """One row per slice position: a real slice (its first column, framed), then generated slices of that position,
    as many in every row as the row with the fewest has (a row without any says so). Each of real (H, W, 1), or
    None where no real slice has that position (the row says so), and each of generated (k, H, W, 1), in [0, 1];
    positions label the rows."""
    per_row = min([len(drawn) for drawn in generated if len(drawn)], default=1)
    columns = 1 + per_row
    title = wrapped_title(title, 1.5 * columns)
    title_height = space_for_title(title)
    height = 1.5 * len(real) + 0.25 + title_height  # 0.25 inches for the column labels
    figure = Figure(figsize=(1.5 * columns, height))
    axes = figure.subplots(len(real), columns, squeeze=False)
    for row, (position, original, drawn) in enumerate(zip(positions, real, generated)):
        for column, axis in enumerate(axes[row]):
            axis.set_xticks([])
            axis.set_yticks([])
            if column == 0:
                if original is None:
                    axis.text(0.5, 0.5, "no real slice\nof this position", ha="center", va="center", fontsize=8,
                              transform=axis.transAxes)
                else:
                    axis.imshow(original[..., 0], cmap="gray", vmin=0, vmax=1, interpolation="nearest")
                axis.set_ylabel(f"position {position}", fontsize=8)
                for spine in axis.spines.values():
                    spine.set_color("C0")
                    spine.set_linewidth(2)
            elif len(drawn):
                axis.imshow(drawn[column - 1][..., 0], cmap="gray", vmin=0, vmax=1, interpolation="nearest")
            else:
                axis.axis("off")
                if column == 1:
                    axis.text(0.5, 0.5, "none generated\nof this position", ha="center", va="center", fontsize=8,
                              transform=axis.transAxes)
    axes[0, 0].set_title("real", fontsize=8)
    for axis in axes[0, 1:]:
        axis.set_title("generated", fontsize=8)
    figure.suptitle(title, fontsize=TITLE_SIZE)
    figure.tight_layout(pad=0.3, rect=(0, 0, 1, 1 - title_height / height))
    figure.savefig(path, dpi=100)


def _overlay(axis, image: np.ndarray, anomaly: np.ndarray, vmax: float):
    """A slice (H, W) in [0, 1] in grey, its anomaly map (H, W) over it in colour, clear where the map is 0."""
    axis.imshow(image, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    shown = np.ma.masked_where(anomaly <= 0.02 * vmax, anomaly)
    return axis.imshow(shown, cmap="inferno", vmin=0, vmax=vmax, alpha=0.75, interpolation="nearest")


def plot_anomaly_overlay(image: np.ndarray, anomaly: np.ndarray, vmax: float, path: Path, title: str = "") -> None:
    """One slice (H, W) in [0, 1] with its anomaly map (H, W) in colour on the scale 0..vmax, and a colour bar."""
    title = wrapped_title(title, 4.0)
    figure = Figure(figsize=(4.0, 3.4 + space_for_title(title)))
    axis = figure.subplots()
    axis.axis("off")
    colours = _overlay(axis, image, anomaly, vmax)
    figure.colorbar(colours, ax=axis, fraction=0.046, pad=0.02, label="anomaly (mean |slice - healed|)")
    axis.set_title(title, fontsize=8)
    figure.tight_layout(pad=0.3)
    figure.savefig(path, dpi=100)


def plot_anomaly_summary(images: np.ndarray, maps: np.ndarray, scores: np.ndarray, names: list[str], vmax: float,
                         path: Path, title: str = "") -> None:
    """The slices (n, H, W) of the highest scores with their anomaly maps (n, H, W), and every slice's score."""
    shown = np.argsort(-scores, kind="stable")[:8]
    columns = 4
    rows = -(-len(shown) // columns)
    title = wrapped_title(title, 2.0 * columns)
    title_height = space_for_title(title)
    height = 2.2 * rows + 2.4 + title_height
    figure = Figure(figsize=(2.0 * columns + 0.6, height))
    grid = figure.add_gridspec(rows + 1, columns, height_ratios=[2.2] * rows + [2.0])
    colours = None
    for place, index in enumerate(shown):
        axis = figure.add_subplot(grid[place // columns, place % columns])
        axis.axis("off")
        colours = _overlay(axis, images[index], maps[index], vmax)
        axis.set_title(f"{names[index]}\nscore {scores[index]:.3g}", fontsize=7)
    if colours is not None:
        figure.colorbar(colours, ax=figure.axes, fraction=0.02, pad=0.01)
    histogram = figure.add_subplot(grid[rows, :])
    histogram.hist(scores, bins=min(40, max(5, len(scores) // 4)), color="C0")
    histogram.set_xlabel("slice score (mean of the anomaly map's top 1% inside the brain)")
    histogram.set_ylabel("slices")
    histogram.grid(alpha=0.3)
    figure.suptitle(title, fontsize=TITLE_SIZE)
    figure.savefig(path, dpi=100)
