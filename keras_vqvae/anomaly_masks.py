"""Binary anomaly masks from anomaly maps, at a threshold set without lesion labels, with the field's post-processing.

A user has healthy slices but no lesion labels, so the threshold on a map is set on healthy validation slices: the
map value that a chosen share of their brain pixels exceeds (`healthy_threshold`; 1% by default, as autoDDPM sets
its threshold). At that threshold about that share of healthy brain is flagged, whatever the map's scale.

The post-processing of Baur et al. (2021), also in pDDPM's code: the brain mask eroded (the maps of
`keras_vqvae.anomaly` already are), the map median-filtered (`median_filtered`), and connected components of the
mask smaller than a few pixels removed (`without_small_components`).

References:
    C. Baur, S. Denner, B. Wiestler, N. Navab, S. Albarqouni, "Autoencoders for unsupervised anomaly segmentation in
    brain MR images: a comparative study", Medical Image Analysis 69, 2021.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

HEALTHY_FLAGGED = 0.01  # the share of healthy brain pixels above the calibrated threshold
MEDIAN_BATCH = 16  # maps median-filtered at once
_NEIGHBOURS = ((-1, 0), (1, 0), (0, -1), (0, 1))  # components connect through edges (4-connectivity)


def healthy_threshold(maps: np.ndarray, brain: np.ndarray, flagged: float = HEALTHY_FLAGGED) -> float:
    """The threshold t on maps of healthy slices (n, H, W) that at most a share `flagged` of their brain pixels
    (brain (n, H, W) bool) exceeds: a pixel is flagged when its value is > t."""
    if not 0 < flagged < 1:
        raise ValueError(f"the share of healthy pixels flagged must lie in (0, 1), got {flagged}")
    values = np.asarray(maps, np.float64)[np.asarray(brain, bool)]
    if not values.size:
        raise ValueError("healthy_threshold needs at least one brain pixel")
    return float(np.quantile(values, 1.0 - flagged, method="higher"))


def median_filtered(maps: np.ndarray, size: int) -> np.ndarray:
    """Each map (n, H, W) replaced by the median of its size x size window around each pixel (size odd; zero beyond
    the edge), (n, H, W) float32."""
    if size < 1 or size % 2 == 0:
        raise ValueError(f"the median filter's size must be odd and positive, got {size}")
    maps = np.asarray(maps, np.float32)[..., None]  # (n, H, W, 1)
    middle = size * size // 2  # the median of an odd number of values is the middle one of them sorted
    filtered = []
    for start in range(0, len(maps), MEDIAN_BATCH):  # the windows take size^2 times the maps' memory
        windows = tf.image.extract_patches(maps[start:start + MEDIAN_BATCH], [1, size, size, 1], [1, 1, 1, 1],
                                           [1, 1, 1, 1], "SAME")  # (batch, H, W, size^2)
        filtered.append(tf.sort(windows, axis=-1)[..., middle].numpy())
    return np.concatenate(filtered) if filtered else np.zeros(maps.shape[:-1], np.float32)


def without_small_components(masks: np.ndarray, min_pixels: int) -> np.ndarray:
    """masks (n, H, W) bool with every connected component (4-connected) of fewer than `min_pixels` pixels
    removed."""
    masks = np.asarray(masks, bool)
    kept = np.zeros_like(masks)
    for index, mask in enumerate(masks):
        seen = np.zeros_like(mask)
        for start in zip(*np.nonzero(mask)):
            if seen[start]:
                continue
            component = _component(mask, seen, start)
            if len(component) >= min_pixels:
                kept[index][tuple(np.array(component).T)] = True
    return kept


def _component(mask: np.ndarray, seen: np.ndarray, start: tuple[int, int]) -> list[tuple[int, int]]:
    """The pixels of the component of `mask` (H, W) that holds `start`, marked in `seen` (a flood fill)."""
    seen[start] = True
    component, frontier = [start], [start]
    while frontier:
        row, column = frontier.pop()
        for step_row, step_column in _NEIGHBOURS:
            pixel = (row + step_row, column + step_column)
            if 0 <= pixel[0] < mask.shape[0] and 0 <= pixel[1] < mask.shape[1] and mask[pixel] and not seen[pixel]:
                seen[pixel] = True
                component.append(pixel)
                frontier.append(pixel)
    return component


def anomaly_masks(maps: np.ndarray, threshold: float, median_size: int = 1, min_pixels: int = 1) -> np.ndarray:
    """Binary masks (n, H, W) bool of maps (n, H, W): median-filtered (size 1: not at all), flagged above
    `threshold`, and components of fewer than `min_pixels` removed (1: none)."""
    filtered = median_filtered(maps, median_size) if median_size > 1 else np.asarray(maps, np.float32)
    masks = filtered > threshold
    return without_small_components(masks, min_pixels) if min_pixels > 1 else masks
