"""Image quality: SSIM, brain SSIM and PSNR of reconstructions.

The functions take batches of images (batch, height, width, 1) with values in [0, 1] and return `SliceScores`: one
value per image, and whether it counts.
Whole-image SSIM is inflated by the black background around a brain slice: a visibly blurry model scores about 0.90
on the whole image and 0.75 inside the brain. `brain_ssim` therefore averages the same SSIM map over the brain only.
Blank slices (no brain pixel) count in whole-image SSIM only: brain SSIM and PSNR leave them out.
"""

from __future__ import annotations

from typing import NamedTuple

import tensorflow as tf

SSIM_FILTER_SIZE = 11  # tf.image.ssim's Gaussian window (sigma 1.5), used for every SSIM figure here
BRAIN_THRESHOLD = 0.5 / 255  # a pixel brighter than half an 8-bit grey level is brain, not background
BRAIN_DILATION = 5  # the brain mask is dilated by a 5x5 window (2 pixels) to include the brain's edge


class SliceScores(NamedTuple):
    """A figure of each slice of a batch, and whether it counts: average `values` weighted by `counted`.

    Attributes:
        values: (batch,) float32, 0 where the slice does not count.
        counted: (batch,) float32, 1 where the slice counts, 0 where it does not.
    """

    values: tf.Tensor
    counted: tf.Tensor

    def mean(self) -> float:
        """The mean of the values of the slices that count (nan when none does)."""
        total = float(tf.reduce_sum(self.counted))
        return float(tf.reduce_sum(self.values * self.counted)) / total if total else float("nan")


@tf.function(jit_compile=True)  # tf.image.ssim's 11x11 depthwise convolutions run about 3x faster under XLA on a CPU
def ssim_map(originals: tf.Tensor, reconstructions: tf.Tensor) -> tf.Tensor:
    """tf.image.ssim's local SSIM map, (batch, height - 10, width - 10): 'valid' positions of the 11x11 window."""
    return tf.image.ssim(originals, reconstructions, max_val=1.0, filter_size=SSIM_FILTER_SIZE,
                         return_index_map=True)


def ssim_scores(originals: tf.Tensor, reconstructions: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """Whole-image SSIM, brain SSIM and has_brain, each (batch,), from one SSIM map.

    Whole-image SSIM is the mean of the map, exactly what tf.image.ssim returns (Wang et al. 2004). Brain SSIM is the
    mean of the same map over the original's brain mask, cropped to the map's 'valid' positions. Images without brain
    pixels get brain SSIM 0 and has_brain 0: use has_brain as the sample weight when averaging.
    """
    index_map = ssim_map(originals, reconstructions)  # (batch, height - 10, width - 10)
    border = (SSIM_FILTER_SIZE - 1) // 2
    mask = brain_mask(originals)[:, border:-border, border:-border, 0]  # (batch, height - 10, width - 10)
    area = tf.reduce_sum(mask, axis=[1, 2])
    brain = tf.math.divide_no_nan(tf.reduce_sum(index_map * mask, axis=[1, 2]), area)
    return tf.reduce_mean(index_map, axis=[1, 2]), brain, tf.cast(area > 0, tf.float32)


def ssim(originals: tf.Tensor, reconstructions: tf.Tensor) -> SliceScores:
    """Whole-image structural similarity of each pair (tf.image.ssim with an 11x11 Gaussian window).

    Args:
        originals: (batch, H, W, 1) in [0, 1].
        reconstructions: (batch, H, W, 1) in [0, 1].

    Returns:
        `SliceScores`: values (batch,), every slice counted (a blank one too).
    """
    values = ssim_scores(originals, reconstructions)[0]
    return SliceScores(values, tf.ones_like(values))


def brain_ssim(originals: tf.Tensor, reconstructions: tf.Tensor) -> SliceScores:
    """The SSIM map averaged over each original's brain, not its background (see `ssim_scores`).

    Args:
        originals: (batch, H, W, 1) in [0, 1]; their non-background pixels, slightly dilated, are the brain.
        reconstructions: (batch, H, W, 1) in [0, 1].

    Returns:
        `SliceScores`: values (batch,), and counted 0 for a blank original (no brain pixel).
    """
    return SliceScores(*ssim_scores(originals, reconstructions)[1:])


def psnr(originals: tf.Tensor, reconstructions: tf.Tensor) -> SliceScores:
    """Peak signal-to-noise ratio in dB of images in [0, 1].

    A blank slice (no brain pixel, as for brain SSIM) is not counted: it says nothing of the brain, and its
    reconstruction is often exact, whose PSNR is infinite (an infinite mean, and `Infinity` in a JSON file, which
    strict readers refuse). Nor is any other exact reconstruction.

    Args:
        originals: (batch, H, W, 1) in [0, 1].
        reconstructions: (batch, H, W, 1) in [0, 1].

    Returns:
        `SliceScores`: values (batch,) in dB, 0 and not counted for a blank slice or an exact reconstruction.
    """
    values = tf.image.psnr(originals, reconstructions, max_val=1.0)
    has_brain = tf.reduce_any(tf.reshape(originals > BRAIN_THRESHOLD, (tf.shape(originals)[0], -1)), axis=1)
    counted = has_brain & tf.math.is_finite(values)
    return SliceScores(tf.where(counted, values, tf.zeros_like(values)), tf.cast(counted, tf.float32))


def brain_mask(originals: tf.Tensor) -> tf.Tensor:
    """(batch, height, width, 1) float mask of the original's non-background pixels, slightly dilated."""
    foreground = tf.cast(originals > BRAIN_THRESHOLD, tf.float32)
    return tf.nn.max_pool2d(foreground, BRAIN_DILATION, strides=1, padding="SAME")
