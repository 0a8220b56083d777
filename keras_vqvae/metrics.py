"""Image quality and codebook metrics.

Image functions take batches of images (batch, height, width, 1) with values in [0, 1] and return one value per image.
Whole-image SSIM is inflated by the black background around a brain slice: a visibly blurry model scores about 0.90
on the whole image and 0.75 inside the brain. `brain_ssim` therefore averages the same SSIM map over the brain only.
"""

from __future__ import annotations

import keras
import tensorflow as tf

SSIM_FILTER_SIZE = 11  # tf.image.ssim's Gaussian window (sigma 1.5), used for every SSIM figure here
BRAIN_THRESHOLD = 0.5 / 255  # a pixel brighter than half an 8-bit grey level is brain, not background
BRAIN_DILATION = 5  # the brain mask is dilated by a 5x5 window (2 pixels) to include the brain's edge


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


def ssim(originals: tf.Tensor, reconstructions: tf.Tensor) -> tf.Tensor:
    """Mean structural similarity of each image pair, (batch,): tf.image.ssim with an 11x11 Gaussian window."""
    return ssim_scores(originals, reconstructions)[0]


def brain_ssim(originals: tf.Tensor, reconstructions: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """SSIM map averaged over each original's brain: (values (batch,), has_brain (batch,)), see `ssim_scores`."""
    return ssim_scores(originals, reconstructions)[1:]


def psnr(originals: tf.Tensor, reconstructions: tf.Tensor) -> tf.Tensor:
    """Peak signal-to-noise ratio in dB for images in [0, 1], (batch,)."""
    return tf.image.psnr(originals, reconstructions, max_val=1.0)


def brain_mask(originals: tf.Tensor) -> tf.Tensor:
    """(batch, height, width, 1) float mask of the original's non-background pixels, slightly dilated."""
    foreground = tf.cast(originals > BRAIN_THRESHOLD, tf.float32)
    return tf.nn.max_pool2d(foreground, BRAIN_DILATION, strides=1, padding="SAME")


class _CodeHistogram(keras.metrics.Metric):
    """Counts how often each of `num_embeddings` codes is chosen over an epoch (the counts reset with the metric)."""

    def __init__(self, num_embeddings: int, name: str, **kwargs):
        super().__init__(name=name, **kwargs)
        self.num_embeddings = num_embeddings
        self.counts = self.add_variable(shape=(num_embeddings,), initializer="zeros", name="counts",
                                        aggregation="sum")

    def update_state(self, indices, sample_weight=None):
        flat = tf.reshape(tf.cast(indices, tf.int32), [-1])
        self.counts.assign_add(tf.math.bincount(flat, minlength=self.num_embeddings,
                                                maxlength=self.num_embeddings, dtype=self.dtype))

    def reset_state(self):
        self.counts.assign(tf.zeros_like(self.counts))

    def get_config(self):
        return {**super().get_config(), "num_embeddings": self.num_embeddings}


@keras.saving.register_keras_serializable(package="keras_vqvae")
class CodebookUsage(_CodeHistogram):
    """Fraction of the codebook's codes chosen at least once since the last reset."""

    def __init__(self, num_embeddings: int, name: str = "codebook_usage", **kwargs):
        super().__init__(num_embeddings, name=name, **kwargs)

    def result(self):
        return tf.reduce_mean(tf.cast(self.counts > 0, self.dtype))


@keras.saving.register_keras_serializable(package="keras_vqvae")
class Perplexity(_CodeHistogram):
    """exp(entropy) of the code distribution since the last reset: the effective number of codes in use."""

    def __init__(self, num_embeddings: int, name: str = "perplexity", **kwargs):
        super().__init__(num_embeddings, name=name, **kwargs)

    def result(self):
        probabilities = self.counts / tf.maximum(tf.reduce_sum(self.counts), 1.0)
        entropy = -tf.reduce_sum(tf.math.multiply_no_nan(tf.math.log(probabilities), probabilities))
        return tf.exp(entropy)
