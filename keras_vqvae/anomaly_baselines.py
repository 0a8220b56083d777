"""The simple anomaly maps that the field reports beside a model's, made the way `keras_vqvae.anomaly` makes its own
(inside the same eroded brain, smoothed by the same Gaussian), so that each comparison is of the map alone.

* `intensity_maps`: the slice itself for lesions brighter than their tissue, one minus it for darker ones. Meissen
  et al. (2021) showed that this thresholded intensity, with no training at all, beats many trained models on
  hyperintense lesions; a model of anatomy earns its keep only by beating it.
* `nll_maps`: the prior's own per-code NLL, each code's bits over the pixels it decodes to: what the likelihood
  says before any healing (Pinaya et al. 2022 report it as their first map).
* the plain reconstruction residual |x - decode(encode(x))| is the third; `AnomalyDetector.detect` makes it
  beside its maps (`residual_maps`), since it needs the models.

References:
    F. Meissen, G. Kaissis, D. Rueckert, "Challenging current semi-supervised anomaly segmentation methods for brain
    MRI", MICCAI BrainLes 2021.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from keras_vqvae.anomaly import eroded_brain, smooth

POLARITIES = ("bright", "dark")  # lesions brighter or darker than the tissue they sit in


def intensity_maps(images: np.ndarray, polarity: str, smoothing: float) -> np.ndarray:
    """The intensity baseline (n, S, S) of slices images (n, S, S, 1) in [0, 1]: each pixel's intensity ('bright')
    or one minus it ('dark'), inside the eroded brain, smoothed by a Gaussian of `smoothing` pixels."""
    if polarity not in POLARITIES:
        raise ValueError(f"polarity must be one of {POLARITIES}, got {polarity!r}")
    images = tf.convert_to_tensor(np.asarray(images, np.float32))
    intensity = images if polarity == "bright" else 1.0 - images
    return smooth(intensity * eroded_brain(images), smoothing).numpy()[..., 0]


def nll_maps(nll: np.ndarray, images: np.ndarray, smoothing: float) -> np.ndarray:
    """The likelihood baseline (n, S, S): the per-code NLL nll (n, h, w) in bits, each code's value over the
    (S / h) x (S / w) pixels it decodes to, inside the eroded brain of images (n, S, S, 1) in [0, 1], smoothed by a
    Gaussian of `smoothing` pixels."""
    images = np.asarray(images, np.float32)
    factor_rows, factor_columns = images.shape[1] // nll.shape[1], images.shape[2] // nll.shape[2]
    if (factor_rows * nll.shape[1], factor_columns * nll.shape[2]) != images.shape[1:3]:
        raise ValueError(f"code maps {nll.shape[1:]} do not tile images {images.shape[1:3]}")
    pixels = np.repeat(np.repeat(np.asarray(nll, np.float32), factor_rows, axis=1), factor_columns, axis=2)
    return smooth(pixels[..., None] * eroded_brain(images), smoothing).numpy()[..., 0]
